/**
 * HTTP/2 (and so gRPC) to endpoints: one multiplexed session per endpoint over a connector stream,
 * opened on first use and replaced when it goes away (GOAWAY, error, idle, or after
 * maxRequestsPerConnection streams).
 */
import http2, { constants as h2c } from 'node:http2';
import type { HeaderMap } from '../http/types';
import type { TcpKeepalive, UpstreamConnector, UpstreamTarget } from './connector';
import { connectError, resetHttp2Stream, UpstreamError, type UpstreamExchange, type UpstreamRequestHead, type UpstreamResponse } from './exchange';

export interface Http2PoolOptions {
  connectTimeoutMs: number;
  maxRequestsPerConnection: number;
  idleTimeoutMs: number;
  /** Streams open at once on one session (connectionPool.http.maxConcurrentStreams); beyond it another session opens. 0 = unlimited. */
  maxConcurrentStreams?: number;
  /** connectionPool.tcp.maxConnectionDuration: a session this old takes no new stream and closes once its streams end. 0 = no limit. */
  maxConnectionDurationMs?: number;
  keepalive?: TcpKeepalive;
}

// HTTP/2's 64 KiB default windows throttle a single stream to one window per round trip.
const WINDOW = 4 * 1024 * 1024;

interface PooledSession {
  session: http2.ClientHttp2Session;
  /** Streams ever opened on it (maxRequestsPerConnection). */
  streams: number;
  /** Streams open now, counting slots taken by requests about to open one (maxConcurrentStreams). */
  active: number;
}

function fromH2Headers(h: http2.IncomingHttpHeaders): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && k.charCodeAt(0) !== 0x3a) out[k] = v;
  return out;
}

export class Http2Pool {
  /** Per endpoint id: one session, or more when maxConcurrentStreams caps each. */
  private readonly sessions = new Map<string, PooledSession[]>();
  private readonly connecting = new Map<string, Promise<PooledSession>>();

  constructor(
    private readonly connector: UpstreamConnector,
    private opts: Http2PoolOptions,
  ) {}

  configure(opts: Http2PoolOptions): void {
    if (JSON.stringify(opts) === JSON.stringify(this.opts)) return;
    this.opts = opts;
    // Graceful: in-flight streams finish on the old sessions.
    for (const list of this.sessions.values()) for (const p of list) p.session.close();
    this.sessions.clear();
  }

  private usable(p: PooledSession): boolean {
    return !p.session.closed && !p.session.destroyed;
  }

  private hasRoom(p: PooledSession): boolean {
    // As Envoy does, the peer's SETTINGS_MAX_CONCURRENT_STREAMS also caps a session: beyond it a
    // new session opens instead of nghttp2 queueing the stream behind the busy ones.
    const configured = this.opts.maxConcurrentStreams ?? 0;
    const peer = p.session.remoteSettings.maxConcurrentStreams ?? 0;
    const max = configured > 0 && (peer <= 0 || configured < peer) ? configured : peer;
    const perConnection = this.opts.maxRequestsPerConnection;
    return (max <= 0 || p.active < max) && (perConnection <= 0 || p.streams < perConnection);
  }

  private take(id: string, p: PooledSession): PooledSession {
    p.active++;
    p.streams++;
    if (this.opts.maxRequestsPerConnection > 0 && p.streams >= this.opts.maxRequestsPerConnection) {
      // This is the last stream it gets: new requests open a new session, this one closes when idle.
      this.forget(id, p);
      setImmediate(() => p.session.close());
    }
    return p;
  }

  /** A session with room for one more stream, the slot already taken (so concurrent callers cannot overfill it). */
  private async sessionFor(id: string, target: UpstreamTarget, traceparent: string | undefined): Promise<PooledSession> {
    for (;;) {
      const list = this.sessions.get(id);
      if (list !== undefined) {
        for (const p of list) {
          if (this.usable(p) && this.hasRoom(p)) return this.take(id, p);
        }
      }
      let pending = this.connecting.get(id);
      if (!pending) {
        pending = this.open(id, target, traceparent).finally(() => this.connecting.delete(id));
        this.connecting.set(id, pending);
      }
      const p = await pending;
      if (this.usable(p) && this.hasRoom(p)) return this.take(id, p);
      // Filled by the others who waited for it: look again (and open another if all are full).
    }
  }

  private forget(id: string, p: PooledSession): void {
    const list = this.sessions.get(id);
    if (list === undefined) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.sessions.delete(id);
  }

  private async open(id: string, target: UpstreamTarget, traceparent: string | undefined): Promise<PooledSession> {
    let stream;
    try {
      stream = await this.connector.connect(target, { timeoutMs: this.opts.connectTimeoutMs, traceparent, keepalive: this.opts.keepalive });
    } catch (e) {
      throw connectError(e);
    }
    const session = http2.connect(`http://${target.address}:${target.port}`, {
      createConnection: () => stream,
      settings: { initialWindowSize: WINDOW, enablePush: false },
    });
    const pooled: PooledSession = { session, streams: 0, active: 0 };
    const forget = () => this.forget(id, pooled);
    session.on('error', forget);
    session.on('goaway', forget);
    session.on('close', forget);
    session.setTimeout(this.opts.idleTimeoutMs, () => session.close());
    // The endpoint's SETTINGS (sent at once on connect) carry its stream limit. Until they arrive
    // nghttp2 assumes no limit, so callers waiting on this session would all pile onto it and the
    // endpoint would refuse the streams beyond its limit: wait for them, within the connect timeout.
    try {
      await remoteSettings(session, this.opts.connectTimeoutMs);
    } catch (e) {
      session.destroy();
      throw connectError(e);
    }
    try {
      session.setLocalWindowSize(WINDOW);
    } catch {
      // Only fails on a session that is already gone; the first request will find out.
    }
    const maxAge = this.opts.maxConnectionDurationMs ?? 0;
    if (maxAge > 0) {
      const timer = setTimeout(() => {
        this.forget(id, pooled);
        session.close();
      }, maxAge).unref();
      session.once('close', () => clearTimeout(timer));
    }
    const list = this.sessions.get(id);
    if (list === undefined) this.sessions.set(id, [pooled]);
    else list.push(pooled);
    return pooled;
  }

  async request(id: string, target: UpstreamTarget, head: UpstreamRequestHead): Promise<UpstreamExchange> {
    const pooled = await this.sessionFor(id, target, head.traceparent);
    let stream: http2.ClientHttp2Stream;
    try {
      stream = pooled.session.request(
        { ...head.headers, ':method': head.method, ':path': head.path, ':authority': head.authority, ':scheme': 'http' },
        { endStream: !head.hasBody },
      );
    } catch (e) {
      pooled.active--;
      this.forget(id, pooled);
      throw new UpstreamError('Reset', `upstream session unusable: ${e instanceof Error ? e.message : String(e)}`, true);
    }
    let trailers: HeaderMap | undefined;
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => {
      trailers = fromH2Headers(t);
    });
    // Failures are reported through `response` and the body's premature close.
    stream.on('error', () => {});
    const response = new Promise<UpstreamResponse>((resolve, reject) => {
      let settled = false;
      stream.once('response', (h: http2.IncomingHttpHeaders, flags: number) => {
        settled = true;
        resolve({
          status: Number(h[':status'] ?? 502),
          headers: fromH2Headers(h),
          endStream: (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0,
          body: stream,
          trailers: () => trailers,
        });
      });
      stream.once('close', () => {
        pooled.active--;
        if (settled) return;
        settled = true;
        const code = stream.rstCode;
        if (code === h2c.NGHTTP2_REFUSED_STREAM) reject(new UpstreamError('RefusedStream', 'upstream refused the stream'));
        else reject(new UpstreamError('Reset', `upstream reset the stream (code ${code ?? 'none'})`));
      });
    });
    // The router may abandon an attempt without awaiting its response; that rejection must not crash the process.
    response.catch(() => {});
    return {
      requestBody: stream,
      response,
      // A reset, never a graceful close: the endpoint must not see a half-sent request body as complete.
      abort: () => resetHttp2Stream(stream, 'upstream attempt abandoned'),
    };
  }

  retain(ids: ReadonlySet<string>): void {
    for (const [id, list] of this.sessions) {
      if (ids.has(id)) continue;
      for (const p of list) p.session.close();
      this.sessions.delete(id);
    }
  }

  close(): void {
    for (const list of this.sessions.values()) for (const p of list) p.session.destroy();
    this.sessions.clear();
  }
}

function remoteSettings(session: http2.ClientHttp2Session, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      session.off('remoteSettings', onSettings);
      session.off('error', onError);
      session.off('close', onClose);
      if (err) reject(err);
      else resolve();
    };
    const onSettings = () => done();
    const onError = (e: Error) => done(e);
    const onClose = () => done(new Error('the endpoint closed the HTTP/2 connection before its SETTINGS'));
    const timer = setTimeout(() => done(new Error(`no HTTP/2 SETTINGS from the endpoint within ${timeoutMs} ms (is the port really HTTP/2?)`)), timeoutMs);
    session.on('remoteSettings', onSettings);
    session.on('error', onError);
    session.on('close', onClose);
  });
}
