/**
 * The plugin's logs: one JSON object per line on stderr. stdout carries only the CNI result,
 * so nothing here may ever write to it.
 */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface PluginLog {
  level: LogLevel;
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

export function isLogLevel(v: unknown): v is LogLevel {
  return typeof v === 'string' && (LOG_LEVELS as readonly string[]).includes(v);
}

export function createPluginLog(level: LogLevel, base: Record<string, unknown> = {}, write = (line: string) => process.stderr.write(line)): PluginLog {
  const log = { level } as PluginLog;
  for (const l of LOG_LEVELS) {
    log[l] = (msg, fields) => {
      if (LOG_LEVELS.indexOf(l) > LOG_LEVELS.indexOf(log.level)) return;
      write(JSON.stringify({ level: l, time: new Date().toISOString(), component: 'ambit-cni', ...base, msg, ...fields }) + '\n');
    };
  }
  return log;
}
