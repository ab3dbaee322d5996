/**
 * The HTTP connection manager: node:http and node:http2 servers that never listen; each tunnel
 * carrying HTTP is handed to one of them with emit('connection'). Parsing stays llhttp's strict
 * parser (no insecureHTTPParser) and nghttp2, so framing attacks are refused by the same code
 * that serves node's own servers. Requests go to the filter chain.
 */
import http from 'node:http';
import http2, { constants as h2c } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../lib/telemetry/log';
import { bufferStringWrites, resetHttp2Stream } from '../upstream/exchange';
import { Http1Downstream, Http2Downstream, RawHttp1Downstream, reasonPhrase } from './downstream';
import type { FilterChain, TunnelInfo } from './filter-chain';
import { Http1ServerConnection, type Http1ServerHost } from './http1-server-connection';
import type { Downstream } from './downstream';
import type { HttpLimits } from './types';

interface H1Conn {
  tunnel: TunnelInfo;
  active: number;
  current: http.ServerResponse | null;
}

/**
 * Rapid reset (CVE-2023-44487): a peer that opens streams and cancels them before any response
 * makes us do work for free. As Envoy does, a connection whose streams are mostly reset by the
 * peer before a response, past a minimum count, is closed. nghttp2 has its own limiter; this
 * one does not depend on which nghttp2 node was built with.
 */
const PREMATURE_RESET_MIN = 200;

interface H2Counters {
  streams: number;
  premature: number;
}

// Raised from HTTP/2's 64 KiB default so a single stream is not throttled to one window per round trip.
const H2_WINDOW = 4 * 1024 * 1024;

export class ConnectionManager implements Http1ServerHost {
  private readonly h1: http.Server;
  /** HTTP/1.1 connections on the fast path (http1-server-connection.ts); the rest are node:http's. */
  private readonly fastConns = new Set<Http1ServerConnection>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly h2: http2.Http2Server;
  private readonly h1Conns = new Map<Duplex, H1Conn>();
  private readonly h2Sessions = new Map<http2.ServerHttp2Session, TunnelInfo>();
  private readonly h2Counters = new WeakMap<http2.ServerHttp2Session, H2Counters>();
  private pendingH2: TunnelInfo | null = null;
  draining = false;

  constructor(
    private readonly chain: FilterChain,
    readonly limits: HttpLimits,
    private readonly log: Logger,
  ) {
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const c of this.fastConns) c.sweep(now);
    }, Math.min(1000, limits.requestHeadersTimeoutMs));
    this.sweeper.unref();
    this.h1 = http.createServer({
      maxHeaderSize: limits.maxHeaderSize,
      insecureHTTPParser: false,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      headersTimeout: limits.requestHeadersTimeoutMs,
      // Bodies may stream for as long as the application wants (uploads, long polls); idle time is bounded instead.
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(1000, limits.requestHeadersTimeoutMs),
    });
    this.h1.timeout = limits.idleTimeoutMs;
    this.h1.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res, false));
    this.h1.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => this.onRequest(req, res, true));
    this.h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.h1.on('connect', (req: http.IncomingMessage, socket: Duplex) => this.onConnect(req, socket));
    this.h1.on('clientError', (err: Error & { code?: string }, socket: Duplex) => this.onClientError(err, socket));
    // node starts the header-timeout checker on 'listening'; this server never listens, so start it here.
    this.h1.emit('listening');

    this.h2 = http2.createServer({
      settings: {
        maxConcurrentStreams: limits.maxConcurrentStreams,
        maxHeaderListSize: limits.maxHeaderSize,
        initialWindowSize: H2_WINDOW,
        enablePush: false,
      },
      // Pseudo-headers count here too.
      maxHeaderListPairs: limits.maxHeaderCount + 8,
      maxSessionMemory: 32,
    });
    this.h2.on('session', (s: http2.ServerHttp2Session) => this.onSession(s));
    this.h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) =>
      this.onStream(stream, headers, flags, raw),
    );
    this.h2.on('sessionError', (err: Error) => this.log.debug({ err }, 'http2 session error'));
  }

  /** Connections (HTTP/1) and sessions (HTTP/2) still open. */
  get openCount(): number {
    return this.h1Conns.size + this.h2Sessions.size + this.fastConns.size;
  }

  serveHttp1(stream: Duplex, tunnel: TunnelInfo): void {
    const conn = new Http1ServerConnection(stream, tunnel, this);
    this.fastConns.add(conn);
    if (this.draining) conn.drain();
  }

  // Http1ServerHost
  handle(ds: Downstream, tunnel: TunnelInfo): void {
    this.chain.handle(ds, tunnel);
  }

  fallback(stream: Duplex, tunnel: TunnelInfo): void {
    this.serveHttp1Node(stream, tunnel);
  }

  released(conn: Http1ServerConnection): void {
    this.fastConns.delete(conn);
  }

  rejected(tunnel: TunnelInfo, status: number, bodyBytes: number): void {
    this.chain.rejected(tunnel, status, bodyBytes);
  }

  isDraining(): boolean {
    return this.draining;
  }

  /** HTTP/1 on node:http: requests the fast path does not take (see http1-server-connection.ts). */
  private serveHttp1Node(stream: Duplex, tunnel: TunnelInfo): void {
    bufferStringWrites(stream);
    const conn: H1Conn = { tunnel, active: 0, current: null };
    this.h1Conns.set(stream, conn);
    stream.once('close', () => this.h1Conns.delete(stream));
    this.h1.emit('connection', stream);
    // Protocol detection left the stream paused; the parser's 'data' listener does not resume it by itself.
    stream.resume();
  }

  serveHttp2(stream: Duplex, tunnel: TunnelInfo): void {
    this.pendingH2 = tunnel;
    try {
      // 'session' fires synchronously inside, which is how the session learns its tunnel.
      this.h2.emit('connection', stream);
    } finally {
      this.pendingH2 = null;
    }
    // HTTP/2 has no half-close at the connection level: a caller that ends its side of the tunnel
    // has closed the connection (as node's own server and Envoy treat a FIN). A tunnel stream is
    // half-open by nature, so without this its requests would run on until the idle timeout.
    stream.once('end', () => stream.destroy());
  }

  private onSession(session: http2.ServerHttp2Session): void {
    const tunnel = this.pendingH2;
    if (tunnel === null) {
      session.destroy();
      return;
    }
    this.h2Sessions.set(session, tunnel);
    session.on('error', (err: Error) => this.log.debug({ err }, 'http2 session error'));
    session.once('close', () => this.h2Sessions.delete(session));
    session.setTimeout(this.limits.idleTimeoutMs, () => session.close());
    try {
      session.setLocalWindowSize(H2_WINDOW);
    } catch {
      // A session already torn down by a bad preface; its 'close' cleans up.
    }
    if (this.draining) this.goaway(session);
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]): void {
    stream.on('error', () => {});
    const tunnel = this.h2Sessions.get(stream.session as http2.ServerHttp2Session);
    if (!tunnel) {
      stream.close(h2c.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const session = stream.session as http2.ServerHttp2Session;
    let counters = this.h2Counters.get(session);
    if (!counters) this.h2Counters.set(session, (counters = { streams: 0, premature: 0 }));
    counters.streams++;
    const c = counters;
    stream.once('close', () => {
      if (stream.rstCode === h2c.NGHTTP2_NO_ERROR || stream.headersSent) return;
      c.premature++;
      if (c.premature >= PREMATURE_RESET_MIN && c.premature * 2 > c.streams && !session.destroyed) {
        this.log.warn({ streams: c.streams, resets: c.premature }, 'closing an HTTP/2 connection whose peer resets most streams (rapid reset)');
        try {
          session.goaway(h2c.NGHTTP2_ENHANCE_YOUR_CALM);
        } catch {
          // Already going away.
        }
        session.destroy();
      }
    });
    let count = 0;
    for (let i = 0; i < raw.length; i += 2) if (raw[i].charCodeAt(0) !== 0x3a) count++;
    // A reset, not close(): a response stalled half-way must not reach the caller as a complete one.
    stream.setTimeout(this.limits.idleTimeoutMs, () => resetHttp2Stream(stream, 'stream idle timeout'));
    const ds = new Http2Downstream(stream, headers, count, (flags & h2c.NGHTTP2_FLAG_END_STREAM) !== 0);
    this.chain.handle(ds, tunnel);
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse, expectContinue: boolean): void {
    const conn = this.h1Conns.get(req.socket);
    if (!conn) {
      req.socket.destroy();
      return;
    }
    conn.active++;
    conn.current = res;
    res.once('close', () => {
      conn.active--;
      if (conn.current === res) conn.current = null;
      if (this.draining && conn.active === 0) req.socket.end();
    });
    req.on('error', () => {});
    res.on('error', () => {});
    this.chain.handle(new Http1Downstream(req, res, expectContinue), conn.tunnel);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const conn = this.h1Conns.get(socket);
    if (!conn) {
      socket.destroy();
      return;
    }
    const ds = new RawHttp1Downstream(req, socket);
    const token = String(req.headers.upgrade ?? '').toLowerCase();
    if (token === 'websocket') {
      this.chain.handleUpgrade(ds, conn.tunnel, head);
      return;
    }
    // Other upgrades are ignored, as Envoy does, when the request has no body: it is served as plain
    // HTTP/1.1 on a connection that then closes. (An h2c offer in the common form, body or not, never
    // gets here: the fast path drops its upgrade fields and serves it, see http1-syntax.ts.)
    const hasBody = (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') || req.headers['transfer-encoding'] !== undefined;
    if (!hasBody && head.length === 0) {
      this.chain.handle(ds, conn.tunnel);
      return;
    }
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 14\r\nconnection: close\r\n\r\nupgrade_failed');
  }

  /**
   * An HTTP/1.1 CONNECT inside a tunnel: the filter chain answers it (405, counted and logged like
   * any refused request) and the connection closes, since what follows would be tunnel bytes.
   * Without this listener node:http would drop the connection without a word.
   */
  private onConnect(req: http.IncomingMessage, socket: Duplex): void {
    socket.on('error', () => socket.destroy());
    const conn = this.h1Conns.get(socket);
    if (!conn) {
      socket.destroy();
      return;
    }
    this.chain.handle(new RawHttp1Downstream(req, socket), conn.tunnel);
  }

  /**
   * Bad framing (smuggling attempts: CL+TE, duplicate CL, bad chunk sizes, bare LF), oversized
   * heads and header timeouts: answer once and close, since nothing after the error can be trusted
   * to start where the caller thinks it does.
   */
  private onClientError(err: Error & { code?: string }, socket: Duplex): void {
    const conn = this.h1Conns.get(socket);
    this.log.debug({ code: err.code, err: err.message }, 'http/1 client error');
    const started = conn?.current?.headersSent ?? false;
    if (socket.writable && !started && err.code !== 'ECONNRESET') {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = reasonPhrase(status);
      socket.end(`HTTP/1.1 ${status} ${body}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      setTimeout(() => socket.destroy(), 1000).unref();
      if (conn) this.chain.rejected(conn.tunnel, status, body.length);
    } else {
      socket.destroy();
    }
  }

  private goaway(session: http2.ServerHttp2Session): void {
    try {
      session.goaway(h2c.NGHTTP2_NO_ERROR);
    } catch {
      // Already closing.
    }
    session.close();
  }

  /** Stop taking requests: GOAWAY on HTTP/2, Connection: close on HTTP/1 (idle connections close now). */
  drain(): void {
    this.draining = true;
    for (const s of this.h2Sessions.keys()) this.goaway(s);
    for (const [socket, c] of this.h1Conns) if (c.active === 0) socket.end();
    for (const c of this.fastConns) c.drain();
  }

  close(): void {
    this.draining = true;
    for (const s of this.h2Sessions.keys()) s.destroy();
    for (const socket of this.h1Conns.keys()) socket.destroy();
    for (const c of [...this.fastConns]) c.stream.destroy();
    this.fastConns.clear();
    clearInterval(this.sweeper);
    this.h1Conns.clear();
    this.h2Sessions.clear();
    this.h1.close(() => {});
    this.h1.closeAllConnections?.();
  }
}
