import pino from 'pino';

export type Logger = pino.Logger;

/** JSON logs on stdout; AMBIT_LOG_LEVEL or --log-level sets the level. */
export function createLogger(component: string, level = process.env.AMBIT_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { component }, timestamp: pino.stdTimeFunctions.isoTime });
}
