import path from 'node:path';
import { DEFAULT_CNI_SOCKET } from '../../lib/api/cni-protocol';
import { CniError, CniErrorCode } from './errors';
import { isLogLevel, LogLevel, LOG_LEVELS } from './log';
import { requireSupported } from './version';

/**
 * The network configuration on stdin. The well-known fields are checked; Ambit's own fields:
 *   agentSocket     unix socket of `ambit cni-agent` (default DEFAULT_CNI_SOCKET)
 *   agentTimeoutMs  how long to wait for the agent's answer (default 10000)
 *   logLevel        error | warn | info | debug (default info), logs go to stderr
 * Anything else (runtimeConfig, args, capabilities, ...) is the runtime's business and ignored.
 */
export interface PluginConfig {
  cniVersion: string;
  name: string;
  type: string;
  agentSocket: string;
  agentTimeoutMs: number;
  logLevel: LogLevel;
  /** The primary plugin's result, present when chained (required on ADD and CHECK). */
  prevResult?: unknown;
}

export const DEFAULT_AGENT_TIMEOUT_MS = 10_000;
const MAX_AGENT_TIMEOUT_MS = 120_000;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** The cniVersion to put in an error when the config could not be read far enough. */
export function bestEffortVersion(stdin: string, fallback: string): string {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === 'string' && v !== '' ? v : fallback;
  } catch {
    return fallback;
  }
}

export function parseConfig(stdin: string): PluginConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CniErrorCode.DECODE_FAILURE, 'failed to decode the network configuration on stdin: not JSON', (err as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(CniErrorCode.DECODE_FAILURE, 'failed to decode the network configuration on stdin: not a JSON object');
  }
  const c = raw as Record<string, unknown>;

  if (c.cniVersion === undefined || c.cniVersion === '') throw invalid('cniVersion is required');
  if (typeof c.cniVersion !== 'string') throw invalid(`cniVersion must be a string, got ${JSON.stringify(c.cniVersion)}`);
  requireSupported(c.cniVersion);

  if (typeof c.name !== 'string' || c.name === '') throw invalid('name is required (a string)');
  if (!NETWORK_NAME.test(c.name)) {
    throw invalid(`name "${c.name}" must start with a letter or digit, followed by letters, digits, "_", "." or "-"`);
  }
  if (typeof c.type !== 'string' || c.type === '') throw invalid('type is required (a string)');

  let agentSocket = DEFAULT_CNI_SOCKET;
  if (c.agentSocket !== undefined) {
    if (typeof c.agentSocket !== 'string' || !path.isAbsolute(c.agentSocket)) {
      throw invalid(`agentSocket must be an absolute path, got ${JSON.stringify(c.agentSocket)}`);
    }
    if (Buffer.byteLength(c.agentSocket) > MAX_SOCKET_PATH) {
      throw invalid(`agentSocket "${c.agentSocket}" is longer than a unix socket path may be (${MAX_SOCKET_PATH} bytes)`);
    }
    agentSocket = c.agentSocket;
  }

  let agentTimeoutMs = DEFAULT_AGENT_TIMEOUT_MS;
  if (c.agentTimeoutMs !== undefined) {
    const t = c.agentTimeoutMs;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > MAX_AGENT_TIMEOUT_MS) {
      throw invalid(`agentTimeoutMs must be an integer between 1 and ${MAX_AGENT_TIMEOUT_MS}, got ${JSON.stringify(t)}`);
    }
    agentTimeoutMs = t;
  }

  let logLevel: LogLevel = 'info';
  if (c.logLevel !== undefined) {
    if (!isLogLevel(c.logLevel)) throw invalid(`logLevel must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(c.logLevel)}`);
    logLevel = c.logLevel;
  }

  return { cniVersion: c.cniVersion, name: c.name, type: c.type, agentSocket, agentTimeoutMs, logLevel, prevResult: c.prevResult };
}

function invalid(msg: string): CniError {
  return new CniError(CniErrorCode.INVALID_CONFIG, `invalid network configuration: ${msg}`);
}
