import pino from 'pino';

export type Logger = pino.Logger;

export interface LoggerOptions {
  /**
   * Batch writes to stdout (up to 8 KiB or 250 ms) instead of one write(2) per line: for a
   * proxy writing an access-log line per request, the per-line system call is a large share
   * of its CPU. Lines still buffered are written on exit; a SIGKILL can lose the last 250 ms.
   */
  buffered?: boolean;
}

/** JSON logs on stdout; AMBIT_LOG_LEVEL or --log-level sets the level. */
export function createLogger(component: string, level = process.env.AMBIT_LOG_LEVEL ?? 'info', opts: LoggerOptions = {}): Logger {
  const base = { level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime };
  if (!opts.buffered) return pino(base);
  const dest = pino.destination({ dest: 1, sync: false, minLength: 8192 });
  setInterval(() => {
    // flush() throws while the destination is still opening; the next tick retries.
    try {
      dest.flush();
    } catch {
      /* not ready yet */
    }
  }, 250).unref();
  process.once('exit', () => {
    try {
      dest.flushSync();
    } catch {
      /* stdout already gone */
    }
  });
  return pino(base, dest);
}
