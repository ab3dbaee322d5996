/**
 * One caller's request and the means to answer it, the same shape for HTTP/1.1 (node:http),
 * HTTP/2 (node:http2 streams) and raw HTTP/1 sockets (after node hands over an Upgrade request):
 * the router never looks at which one it has.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { constants as h2c, type IncomingHttpHeaders as H2Headers, type ServerHttp2Stream } from 'node:http2';
import type { Duplex, Readable, Writable } from 'node:stream';
import { resetHttp2Stream } from '../upstream/exchange';
import { copyHeaders } from './headers';
import type { HeaderMap } from './types';

export interface ResponseHeadOptions {
  /** No body follows (HEAD, 204/304, gRPC trailers-only). */
  endStream: boolean;
  /** The upstream may send trailers (gRPC, or an HTTP/2 upstream); HTTP/2 must announce that up front. */
  trailers: boolean;
}

export interface Downstream {
  readonly protocol: 'http1' | 'http2';
  readonly method: string;
  /** Request target as received (origin form). */
  readonly rawPath: string;
  readonly authority: string;
  /**
   * The request names its authority more than once: two Host lines (node keeps the first and drops
   * the rest), or an HTTP/2 Host that differs from :authority. RFC 9112 §3.2 / RFC 9113 §8.3.1: 400.
   */
  readonly ambiguousAuthority: boolean;
  /** A private copy: filters mutate it. */
  readonly headers: HeaderMap;
  readonly headerCount: number;
  /** null: the request has no body; a Buffer: all of it arrived with the head. */
  readonly body: Readable | Buffer | null;
  readonly expectContinue: boolean;
  readonly headersSent: boolean;
  /** The caller went away (or the stream was reset) before the response finished. */
  readonly aborted: boolean;
  /** Bytes of response body written so far. */
  readonly bytesSent: number;
  sendHeaders(status: number, headers: HeaderMap, opts: ResponseHeadOptions): void;
  write(chunk: Buffer): boolean;
  /** Emits 'drain' when write() returned false and the caller may write again. */
  readonly sink: Writable;
  end(trailers?: HeaderMap): void;
  /** Abandons the response mid-way: RST_STREAM on HTTP/2, connection close on HTTP/1. */
  reset(): void;
  /** Lets a caller that sent Expect: 100-continue send its body. */
  sendContinue(): void;
  /** Called once if the caller aborts; not after a normal finish. */
  onAbort(cb: () => void): void;
  /** Called once when the exchange is over either way. */
  onClose(cb: () => void): void;
  /** Marks the connection to close after this response (drain). */
  closeConnectionAfter(): void;
}

function countBody(h: HeaderMap): boolean {
  return h['content-length'] !== undefined ? h['content-length'] !== '0' : h['transfer-encoding'] !== undefined;
}

/** Host field lines as received: node's parsed headers keep only the first. */
function hostLines(raw: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') n++;
  return n;
}

function flatten(h: HeaderMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

function setHeaders(res: ServerResponse, headers: HeaderMap): void {
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
}

export class Http1Downstream implements Downstream {
  readonly protocol = 'http1' as const;
  readonly method: string;
  readonly rawPath: string;
  readonly authority: string;
  readonly ambiguousAuthority: boolean;
  readonly headers: HeaderMap;
  readonly headerCount: number;
  readonly body: Readable | null;
  readonly expectContinue: boolean;
  aborted = false;
  bytesSent = 0;
  private finished = false;
  private readonly abortCbs: Array<() => void> = [];
  private readonly closeCbs: Array<() => void> = [];

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    expectContinue: boolean,
  ) {
    this.method = req.method ?? 'GET';
    this.headers = copyHeaders(req.headers);
    const abs = absoluteForm(req.url);
    this.rawPath = abs?.path ?? req.url ?? '/';
    this.authority = abs?.authority ?? (typeof this.headers.host === 'string' ? this.headers.host : '');
    this.ambiguousAuthority = abs === null && hostLines(req.rawHeaders) > 1;
    delete this.headers.host;
    this.headerCount = req.rawHeaders.length / 2;
    this.body = countBody(this.headers) ? req : null;
    this.expectContinue = expectContinue;
    delete this.headers.expect;
    res.once('close', () => {
      if (!res.writableFinished && !this.finished) {
        this.aborted = true;
        for (const cb of this.abortCbs.splice(0)) cb();
      }
      for (const cb of this.closeCbs.splice(0)) cb();
    });
    if (!this.body) req.resume();
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  get sink(): Writable {
    return this.res;
  }

  sendHeaders(status: number, headers: HeaderMap, opts: ResponseHeadOptions): void {
    setHeaders(this.res, headers);
    this.res.writeHead(status);
    if (opts.endStream) this.end();
  }

  write(chunk: Buffer): boolean {
    this.bytesSent += chunk.length;
    return this.res.write(chunk);
  }

  end(trailers?: HeaderMap): void {
    if (this.finished) return;
    this.finished = true;
    // node sends trailers only with chunked encoding and drops them otherwise, as HTTP/1.1 requires.
    if (trailers && Object.keys(trailers).length > 0) this.res.addTrailers(flatten(trailers));
    this.res.end();
  }

  reset(): void {
    this.finished = true;
    this.res.destroy();
  }

  private continued = false;

  sendContinue(): void {
    if (this.expectContinue && !this.continued && !this.res.headersSent) {
      this.continued = true;
      this.res.writeContinue();
    }
  }

  onAbort(cb: () => void): void {
    this.abortCbs.push(cb);
  }

  onClose(cb: () => void): void {
    this.closeCbs.push(cb);
  }

  closeConnectionAfter(): void {
    if (!this.res.headersSent) this.res.shouldKeepAlive = false;
  }
}

export class Http2Downstream implements Downstream {
  readonly protocol = 'http2' as const;
  readonly method: string;
  readonly rawPath: string;
  readonly authority: string;
  readonly ambiguousAuthority: boolean;
  readonly headers: HeaderMap;
  readonly headerCount: number;
  readonly body: Readable | null;
  readonly expectContinue = false;
  aborted = false;
  bytesSent = 0;
  private trailers: HeaderMap | undefined;
  private wantsTrailers = false;
  private finished = false;
  private readonly abortCbs: Array<() => void> = [];
  private readonly closeCbs: Array<() => void> = [];

  constructor(
    private readonly stream: ServerHttp2Stream,
    h: H2Headers,
    rawCount: number,
    endStream: boolean,
  ) {
    this.method = String(h[':method'] ?? 'GET');
    this.rawPath = String(h[':path'] ?? '/');
    this.authority = String(h[':authority'] ?? h.host ?? '');
    this.ambiguousAuthority = h[':authority'] !== undefined && h.host !== undefined && String(h.host).toLowerCase() !== this.authority.toLowerCase();
    this.headers = copyHeaders(h);
    delete this.headers.host;
    this.headerCount = rawCount;
    this.body = endStream ? null : stream;
    if (endStream) stream.resume();
    stream.once('close', () => {
      // Aborted: closed before we ended the response, or reset by the peer before it was all sent.
      const resetByPeer = stream.rstCode !== undefined && stream.rstCode !== h2c.NGHTTP2_NO_ERROR && !stream.writableFinished;
      if (!this.finished || resetByPeer) {
        this.aborted = true;
        for (const cb of this.abortCbs.splice(0)) cb();
      }
      for (const cb of this.closeCbs.splice(0)) cb();
    });
    stream.on('wantTrailers', () => {
      try {
        this.stream.sendTrailers(this.trailers ?? {});
      } catch {
        this.stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get sink(): Writable {
    return this.stream;
  }

  sendHeaders(status: number, headers: HeaderMap, opts: ResponseHeadOptions): void {
    if (this.stream.destroyed || this.stream.closed) return;
    this.wantsTrailers = opts.trailers && !opts.endStream;
    this.stream.respond({ ...headers, ':status': status }, { endStream: opts.endStream, waitForTrailers: this.wantsTrailers });
    if (opts.endStream) this.finished = true;
  }

  write(chunk: Buffer): boolean {
    this.bytesSent += chunk.length;
    return this.stream.write(chunk);
  }

  end(trailers?: HeaderMap): void {
    if (this.finished) return;
    this.finished = true;
    this.trailers = trailers;
    if (!this.stream.destroyed) this.stream.end();
  }

  reset(): void {
    this.finished = true;
    // RST_STREAM without END_STREAM first, so the caller sees a broken response, not a short one.
    resetHttp2Stream(this.stream, 'response abandoned');
  }

  sendContinue(): void {}

  onAbort(cb: () => void): void {
    this.abortCbs.push(cb);
  }

  onClose(cb: () => void): void {
    this.closeCbs.push(cb);
  }

  closeConnectionAfter(): void {
    // HTTP/2 drains with GOAWAY on the session, not per response.
  }
}

export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Unknown';
}

/**
 * An HTTP/1 request that node handed over as an 'upgrade' (the parser has let go of the socket):
 * answers are written by hand, always with Connection: close, and a 101 turns the socket into a tunnel.
 */
export class RawHttp1Downstream implements Downstream {
  readonly protocol = 'http1' as const;
  readonly method: string;
  readonly rawPath: string;
  readonly authority: string;
  readonly ambiguousAuthority: boolean;
  readonly headers: HeaderMap;
  readonly headerCount: number;
  readonly body: Readable | null = null;
  readonly expectContinue = false;
  headersSent = false;
  aborted = false;
  bytesSent = 0;
  private finished = false;
  private chunked = false;
  private readonly abortCbs: Array<() => void> = [];
  private readonly closeCbs: Array<() => void> = [];

  constructor(
    req: IncomingMessage,
    readonly socket: Duplex,
  ) {
    this.method = req.method ?? 'GET';
    this.headers = copyHeaders(req.headers);
    const abs = absoluteForm(req.url);
    this.rawPath = abs?.path ?? req.url ?? '/';
    this.authority = abs?.authority ?? (typeof this.headers.host === 'string' ? this.headers.host : '');
    this.ambiguousAuthority = abs === null && hostLines(req.rawHeaders) > 1;
    delete this.headers.host;
    this.headerCount = req.rawHeaders.length / 2;
    socket.once('close', () => {
      if (!this.finished) {
        this.aborted = true;
        for (const cb of this.abortCbs.splice(0)) cb();
      }
      for (const cb of this.closeCbs.splice(0)) cb();
    });
  }

  get sink(): Writable {
    return this.socket;
  }

  private head(status: number, headers: HeaderMap): string {
    let s = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
    for (const [k, v] of Object.entries(headers)) {
      for (const one of Array.isArray(v) ? v : [v]) s += `${k}: ${one}\r\n`;
    }
    return s;
  }

  /** Writes the 101 and hands the socket over: from here bytes are the application's. */
  sendSwitchingProtocols(headers: HeaderMap): void {
    this.headersSent = true;
    this.finished = true;
    this.socket.write(`${this.head(101, headers)}\r\n`);
  }

  sendHeaders(status: number, headers: HeaderMap, opts: ResponseHeadOptions): void {
    this.headersSent = true;
    const h = { ...headers };
    delete h.connection;
    delete h['transfer-encoding'];
    this.chunked = !opts.endStream && h['content-length'] === undefined;
    let s = this.head(status, h);
    if (this.chunked) s += 'transfer-encoding: chunked\r\n';
    s += 'connection: close\r\n\r\n';
    this.socket.write(s);
    if (opts.endStream) this.end();
  }

  write(chunk: Buffer): boolean {
    this.bytesSent += chunk.length;
    if (!this.chunked) return this.socket.write(chunk);
    if (chunk.length === 0) return true;
    this.socket.write(`${chunk.length.toString(16)}\r\n`);
    this.socket.write(chunk);
    return this.socket.write('\r\n');
  }

  end(): void {
    if (this.finished) return;
    this.finished = true;
    this.socket.end(this.chunked ? '0\r\n\r\n' : undefined);
  }

  reset(): void {
    this.finished = true;
    this.socket.destroy();
  }

  sendContinue(): void {}

  onAbort(cb: () => void): void {
    this.abortCbs.push(cb);
  }

  onClose(cb: () => void): void {
    this.closeCbs.push(cb);
  }

  closeConnectionAfter(): void {}
}

/**
 * RFC 9112 section 3.2.2: a server MUST accept an absolute-form target ("GET http://web/x"), take
 * the authority from it and ignore Host, as Envoy does. The rest of the chain then sees the usual
 * origin-form path and one authority. Null for any other form.
 */
export function absoluteForm(url: string | undefined): { authority: string; path: string } | null {
  if (url === undefined) return null;
  const m = /^https?:\/\/([^/?#]*)(.*)$/i.exec(url);
  if (m === null) return null;
  const rest = m[2];
  return { authority: m[1], path: rest === '' || rest[0] !== '/' ? `/${rest}` : rest };
}
