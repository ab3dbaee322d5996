import net from 'node:net';
import type { CniPodRequest, CniPodResponse } from '../../lib/api/cni-protocol';

/**
 * One request/response exchange with `ambit cni-agent` over its unix socket: one JSON line
 * each way (lib/api/cni-protocol.ts). The whole exchange (connect, write, answer) is bounded
 * by timeoutMs.
 */
/** unreachable, timeout and closed are transient (CNI code 11); protocol means a malformed answer. */
export type AgentFailureKind = 'unreachable' | 'timeout' | 'closed' | 'protocol';

export class AgentError extends Error {
  constructor(
    readonly kind: AgentFailureKind,
    msg: string,
  ) {
    super(msg);
    this.name = 'AgentError';
  }
}

const MAX_RESPONSE_BYTES = 1 << 20;

export function askAgent(socketPath: string, req: CniPodRequest, timeoutMs: number): Promise<CniPodResponse> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let connected = false;
    let buf = '';
    const sock = net.createConnection({ path: socketPath });
    const finish = (err: AgentError | undefined, res?: CniPodResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(res as CniPodResponse);
    };
    const timer = setTimeout(() => {
      finish(
        new AgentError(
          'timeout',
          connected
            ? `ambit cni-agent at ${socketPath} did not answer within ${timeoutMs} ms`
            : `ambit cni-agent is not reachable at ${socketPath}: no connection within ${timeoutMs} ms; is the agent running on this node?`,
        ),
      );
    }, timeoutMs);

    sock.setEncoding('utf8');
    sock.on('connect', () => {
      connected = true;
      sock.write(JSON.stringify(req) + '\n');
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        finish(...decode(socketPath, buf.slice(0, nl)));
      } else if (buf.length > MAX_RESPONSE_BYTES) {
        finish(new AgentError('protocol', `ambit cni-agent at ${socketPath} sent more than ${MAX_RESPONSE_BYTES} bytes without a newline`));
      }
    });
    sock.on('end', () => {
      // A last line without its "\n" is still an answer; nothing at all is not.
      if (buf.trim() !== '') finish(...decode(socketPath, buf));
      else finish(new AgentError('closed', `ambit cni-agent at ${socketPath} closed the connection without answering`));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        finish(new AgentError('unreachable', `ambit cni-agent is not reachable at ${socketPath}: ${err.code ?? err.message}; is the agent running on this node?`));
      } else {
        finish(new AgentError('closed', `connection to ambit cni-agent at ${socketPath} failed before it answered: ${err.code ?? err.message}`));
      }
    });
  });
}

function decode(socketPath: string, line: string): [AgentError | undefined, CniPodResponse?] {
  const bad = (why: string): [AgentError] => [new AgentError('protocol', `ambit cni-agent at ${socketPath} sent an invalid response: ${why}`)];
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return bad('not JSON');
  }
  if (typeof v !== 'object' || v === null) return bad('not a JSON object');
  const r = v as Record<string, unknown>;
  if (r.ok === true) {
    if (typeof r.enrolled !== 'boolean') return bad('"enrolled" must be a boolean');
    return [undefined, { ok: true, enrolled: r.enrolled }];
  }
  if (r.ok === false) {
    if (typeof r.msg !== 'string') return bad('"msg" must be a string');
    const code = typeof r.code === 'number' && Number.isInteger(r.code) && r.code > 0 ? r.code : 11;
    const res: CniPodResponse = { ok: false, code, msg: r.msg };
    if (typeof r.details === 'string' && r.details !== '') res.details = r.details;
    return [undefined, res];
  }
  return bad('"ok" must be true or false');
}
