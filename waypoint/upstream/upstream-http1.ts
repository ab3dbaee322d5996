/**
 * HTTP/1.1 to endpoints, over streams from the UpstreamConnector. Requests go through a pool per
 * endpoint of Http1ClientConnections (one request at a time each, idle ones reused last-in first-out);
 * tcp.maxConnections caps a pool's connections, with requests beyond it waiting in turn, and
 * maxRequestsPerConnection retires a connection once it has carried that many requests. WebSocket
 * upgrades, rare and long-lived, use node:http through a keep-alive agent per endpoint.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { HeaderMap } from '../http/types';
import type { TcpKeepalive, UpstreamConnector, UpstreamTarget } from './connector';
import { asSocketLike, bufferStringWrites, connectError, UpstreamError, type UpstreamExchange, type UpstreamRequestHead, type UpstreamResponse } from './exchange';
import { Http1ClientConnection, Http1ClientExchange, type ConnectionOwner } from './http1-client-connection';

export interface Http1PoolOptions {
  connectTimeoutMs: number;
  /** 0 = unlimited. */
  maxConnections: number;
  /** 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Idle keep-alive connections are closed after this long (below typical server keep-alive timeouts, to avoid reuse races). */
  idleTimeoutMs: number;
  /** Longest response head (and chunked trailer section) accepted; 60 KiB by default. */
  maxResponseHeadBytes?: number;
  keepalive?: TcpKeepalive;
  /** connectionPool.tcp.maxConnectionDuration: a connection this old takes no new request. 0 = no limit. */
  maxConnectionDurationMs?: number;
}

const DEFAULT_MAX_RESPONSE_HEAD_BYTES = 60 * 1024;

/** The connections to one endpoint. */
class EndpointPool implements ConnectionOwner {
  /** Idle connections; the most recently used is reused first, so the others can time out. */
  private readonly free: Http1ClientConnection[] = [];
  /** Requests waiting for a connection while the pool is at maxConnections, first come first served. */
  private readonly waiting: Http1ClientExchange[] = [];
  private readonly all = new Set<Http1ClientConnection>();
  /** Connections open or being opened. */
  private open = 0;
  /** Replaced (config change or endpoint gone): in-flight requests finish, no connection is kept afterwards. */
  private retired = false;
  private destroyed = false;
  private readonly maxHeadBytes: number;

  constructor(
    private readonly target: UpstreamTarget,
    private readonly connector: UpstreamConnector,
    private readonly opts: Http1PoolOptions,
  ) {
    this.maxHeadBytes = opts.maxResponseHeadBytes ?? DEFAULT_MAX_RESPONSE_HEAD_BYTES;
  }

  dispatch(ex: Http1ClientExchange): void {
    const conn = this.free.pop();
    if (conn !== undefined) conn.begin(ex);
    else if (this.opts.maxConnections > 0 && this.open >= this.opts.maxConnections) this.waiting.push(ex);
    else this.connect(ex);
  }

  /** Opens a connection for `ex`, which keeps waiting for it even if another connection frees up meanwhile. */
  private connect(ex: Http1ClientExchange): void {
    this.open++;
    this.connector.connect(this.target, { timeoutMs: this.opts.connectTimeoutMs, traceparent: ex.head.traceparent, keepalive: this.opts.keepalive }).then(
      (stream) => this.connected(stream, ex),
      (e: unknown) => {
        this.open--;
        ex.fail(connectError(e));
        this.serveWaiting();
      },
    );
  }

  private connected(stream: Duplex, ex: Http1ClientExchange): void {
    if (this.destroyed || stream.destroyed) {
      stream.destroy();
      this.open--;
      ex.fail(this.destroyed ? new UpstreamError('Reset', 'connection pool closed') : connectError(new Error('stream closed at once')));
      this.serveWaiting();
      return;
    }
    const conn = new Http1ClientConnection(stream, this, this.maxHeadBytes);
    this.all.add(conn);
    const maxAge = this.opts.maxConnectionDurationMs ?? 0;
    if (maxAge > 0) {
      // Rare (only with the setting), so a timer per connection: an idle one closes when it expires,
      // a busy one when its request ends.
      const timer = setTimeout(() => {
        conn.expired = true;
        const i = this.free.lastIndexOf(conn);
        if (i !== -1) {
          this.free.splice(i, 1);
          conn.finish();
        }
      }, maxAge).unref();
      stream.once('close', () => clearTimeout(timer));
    }
    // Aborted while connecting: the connection serves whoever is next.
    if (ex.done) this.release(conn);
    else conn.begin(ex);
  }

  /** Slots freed by closed connections go to waiting requests. */
  private serveWaiting(): void {
    while (this.waiting.length > 0 && (this.opts.maxConnections <= 0 || this.open < this.opts.maxConnections)) {
      const ex = this.waiting.shift()!;
      if (!ex.done) this.connect(ex);
    }
  }

  release(conn: Http1ClientConnection): void {
    const max = this.opts.maxRequestsPerConnection;
    if (this.destroyed) {
      conn.destroy();
      return;
    }
    if (this.retired || conn.expired || (max > 0 && conn.requests >= max)) {
      conn.finish();
      return;
    }
    while (this.waiting.length > 0) {
      const ex = this.waiting.shift()!;
      if (!ex.done) {
        conn.begin(ex);
        return;
      }
    }
    this.free.push(conn);
    conn.park(this.opts.idleTimeoutMs);
  }

  closing(conn: Http1ClientConnection): void {
    const i = this.free.lastIndexOf(conn);
    if (i !== -1) this.free.splice(i, 1);
  }

  closed(conn: Http1ClientConnection): void {
    if (!this.all.delete(conn)) return;
    this.open--;
    const i = this.free.lastIndexOf(conn);
    if (i !== -1) this.free.splice(i, 1);
    if (!this.destroyed) this.serveWaiting();
  }

  retire(): void {
    this.retired = true;
    for (const c of this.free.splice(0)) c.finish();
  }

  destroy(): void {
    this.destroyed = true;
    const err = new UpstreamError('Reset', 'connection pool closed');
    for (const ex of this.waiting.splice(0)) ex.fail(err);
    for (const c of [...this.all]) c.destroy();
  }
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
    this.connector.connect(this.target, { timeoutMs: this.opts.connectTimeoutMs, traceparent: this.nextTraceparent, keepalive: this.opts.keepalive }).then(
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
  private readonly pools = new Map<string, EndpointPool>();
  /** Upgrade requests only. */
  private readonly agents = new Map<string, ConnectorAgent>();

  constructor(
    private readonly connector: UpstreamConnector,
    private opts: Http1PoolOptions,
  ) {}

  /** New settings apply to connections opened from now on. */
  configure(opts: Http1PoolOptions): void {
    if (JSON.stringify(opts) === JSON.stringify(this.opts)) return;
    this.opts = opts;
    for (const p of this.pools.values()) p.retire();
    this.pools.clear();
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
    const ex = new Http1ClientExchange(head);
    // A head that cannot be sent has already failed the exchange.
    if (ex.done) return ex;
    let pool = this.pools.get(id);
    if (pool === undefined) {
      pool = new EndpointPool(target, this.connector, this.opts);
      this.pools.set(id, pool);
    }
    pool.dispatch(ex);
    return ex;
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
    for (const [id, p] of this.pools) {
      if (ids.has(id)) continue;
      p.retire();
      this.pools.delete(id);
    }
    for (const [id, a] of this.agents) {
      if (ids.has(id)) continue;
      a.retire();
      this.agents.delete(id);
    }
  }

  close(): void {
    for (const p of this.pools.values()) p.destroy();
    this.pools.clear();
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}
