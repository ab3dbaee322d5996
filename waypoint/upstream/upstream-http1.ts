/**
 * HTTP/1.1 to endpoints, over streams from the UpstreamConnector. One keep-alive agent per endpoint
 * reuses connections; the agent's maxSockets is the DestinationRule's tcp.maxConnections, and
 * maxRequestsPerConnection retires a connection once it has carried that many requests.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { HeaderMap } from '../http/types';
import type { UpstreamConnector, UpstreamTarget } from './connector';
import { asSocketLike, bufferStringWrites, connectError, UpstreamError, type UpstreamExchange, type UpstreamRequestHead, type UpstreamResponse } from './exchange';

export interface Http1PoolOptions {
  connectTimeoutMs: number;
  /** 0 = unlimited. */
  maxConnections: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Idle keep-alive connections are closed after this long (below typical server keep-alive timeouts, to avoid reuse races). */
  idleTimeoutMs: number;
}

const requestsOnSocket = new WeakMap<Duplex, number>();

class ConnectorAgent extends http.Agent {
  /** traceparent of the request that caused the current connect, for the HBONE CONNECT. */
  nextTraceparent: string | undefined;
  /** Replaced (config change or endpoint gone): in-flight requests finish, no connection is kept afterwards. */
  private retired = false;

  retire(): void {
    this.retired = true;
    for (const list of Object.values(this.freeSockets)) for (const s of list ?? []) s.destroy();
  }

  constructor(
    private readonly target: UpstreamTarget,
    private readonly connector: UpstreamConnector,
    private readonly opts: Http1PoolOptions,
  ) {
    super({ keepAlive: true, maxSockets: opts.maxConnections || Infinity, maxFreeSockets: 256, timeout: opts.idleTimeoutMs, scheduling: 'lifo' });
  }

  override createConnection(_o: unknown, cb?: (err: Error | null, s: Duplex) => void): undefined {
    this.connector.connect(this.target, { timeoutMs: this.opts.connectTimeoutMs, traceparent: this.nextTraceparent }).then(
      (s) => {
        bufferStringWrites(s);
        cb?.(null, asSocketLike(s));
      },
      (e: unknown) => cb?.(connectError(e), undefined as unknown as Duplex),
    );
    return undefined;
  }

  override keepSocketAlive(socket: Duplex): boolean {
    if (this.retired) return false;
    const n = (requestsOnSocket.get(socket) ?? 0) + 1;
    requestsOnSocket.set(socket, n);
    if (this.opts.maxRequestsPerConnection > 0 && n >= this.opts.maxRequestsPerConnection) return false;
    // The base class reports its verdict through the return value even though the typings say void.
    return (super.keepSocketAlive(socket) as unknown as boolean | undefined) !== false;
  }
}

function toHeaderMap(h: http.IncomingHttpHeaders | NodeJS.Dict<string>): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = v;
  return out;
}

export class Http1Pool {
  private readonly agents = new Map<string, ConnectorAgent>();

  constructor(
    private readonly connector: UpstreamConnector,
    private opts: Http1PoolOptions,
  ) {}

  /** New settings apply to connections opened from now on. */
  configure(opts: Http1PoolOptions): void {
    if (JSON.stringify(opts) === JSON.stringify(this.opts)) return;
    this.opts = opts;
    for (const a of this.agents.values()) a.retire();
    this.agents.clear();
  }

  private agentFor(id: string, target: UpstreamTarget): ConnectorAgent {
    let a = this.agents.get(id);
    if (!a) {
      a = new ConnectorAgent(target, this.connector, this.opts);
      this.agents.set(id, a);
    }
    return a;
  }

  private clientRequest(id: string, target: UpstreamTarget, head: UpstreamRequestHead, extra: HeaderMap = {}): http.ClientRequest {
    const agent = this.agentFor(id, target);
    agent.nextTraceparent = head.traceparent;
    const headers: HeaderMap = { ...head.headers, ...extra, host: head.authority };
    // A request that had no body must not grow a chunked one; one with a body of unknown length is chunked by node.
    if (!head.hasBody && head.headers['content-length'] === undefined && !['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE'].includes(head.method)) {
      headers['content-length'] = '0';
    }
    return http.request({ agent, method: head.method, path: head.path, headers, setHost: false, insecureHTTPParser: false });
  }

  request(id: string, target: UpstreamTarget, head: UpstreamRequestHead): UpstreamExchange {
    const req = this.clientRequest(id, target, head);
    let settled = false;
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      req.once('response', (res: http.IncomingMessage) => {
        settled = true;
        resolve({
          status: res.statusCode ?? 502,
          headers: toHeaderMap(res.headers),
          endStream: false,
          body: res,
          trailers: () => (res.complete ? toHeaderMap(res.trailers) : undefined),
        });
      });
      req.once('error', (e: Error) => {
        if (settled) return;
        settled = true;
        reject(e instanceof UpstreamError ? e : new UpstreamError('Reset', `upstream reset: ${e.message}`, req.reusedSocket));
      });
      // node can end a request with neither 'response' nor 'error': an unsolicited 101 (node takes it
      // as an upgrade nobody asked for and destroys the socket). Without this the attempt, and the
      // pool slot, balancer count and retry-budget share it holds, would wait forever.
      req.once('close', () => {
        if (settled) return;
        settled = true;
        reject(new UpstreamError('Reset', 'upstream closed the connection without a usable response'));
      });
    });
    // An error after the response started surfaces on the response body; this listener only keeps it from crashing the process.
    req.on('error', () => {});
    // The router may abandon an attempt without awaiting its response; that rejection must not crash the process.
    response.catch(() => {});
    if (!head.hasBody) req.end();
    return {
      requestBody: req,
      response,
      abort: () => {
        if (!req.destroyed) req.destroy();
      },
    };
  }

  /**
   * An Upgrade request (WebSocket): resolves with the upstream's socket after its 101, or with an
   * ordinary response when the upstream declined.
   */
  upgrade(
    id: string,
    target: UpstreamTarget,
    head: UpstreamRequestHead,
  ): { abort(): void; result: Promise<{ kind: 'upgraded'; headers: HeaderMap; socket: Duplex; head: Buffer } | { kind: 'response'; response: UpstreamResponse }> } {
    const req = this.clientRequest(id, target, head, { connection: 'upgrade' });
    req.on('error', () => {});
    const result = new Promise<{ kind: 'upgraded'; headers: HeaderMap; socket: Duplex; head: Buffer } | { kind: 'response'; response: UpstreamResponse }>((resolve, reject) => {
      req.once('upgrade', (res: http.IncomingMessage, socket: Duplex, upHead: Buffer) => resolve({ kind: 'upgraded', headers: toHeaderMap(res.headers), socket, head: upHead }));
      req.once('response', (res: http.IncomingMessage) =>
        resolve({ kind: 'response', response: { status: res.statusCode ?? 502, headers: toHeaderMap(res.headers), endStream: false, body: res, trailers: () => undefined } }),
      );
      req.once('error', (e: Error) => reject(e instanceof UpstreamError ? e : new UpstreamError('Reset', `upstream reset: ${e.message}`)));
    });
    req.end();
    return { result, abort: () => req.destroy() };
  }

  /** Drops connections to endpoints no longer in the cluster. */
  retain(ids: ReadonlySet<string>): void {
    for (const [id, a] of this.agents) {
      if (ids.has(id)) continue;
      a.retire();
      this.agents.delete(id);
    }
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
