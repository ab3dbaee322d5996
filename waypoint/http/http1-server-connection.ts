/**
 * The fast HTTP/1.1 path for callers: one tunnel's requests parsed and answered without node:http's
 * per-request objects. It serves the common, unambiguous subset (see parseRequestHead) one request
 * at a time; the first request outside it hands the connection, from that request's first byte, to
 * node:http (the ConnectionManager's fallback), which keeps it from then on. That covers chunked
 * uploads, Expect: 100-continue, Upgrade, HTTP/1.0, repeated fields, oversized heads and every
 * malformed or smuggling-shaped message, so framing attacks still meet llhttp's strict parser.
 */
import { Readable, type Duplex, type Writable } from 'node:stream';
import type { Downstream, ResponseHeadOptions } from './downstream';
import { reasonPhrase } from './downstream';
import { findHeadEnd, httpDate, parseRequestHead, serializeFields, type RequestHead } from './http1-syntax';
import type { TunnelInfo } from './filter-chain';
import type { HeaderMap, HttpLimits } from './types';

/** A request body left unread when its response ended is read and dropped up to this size; beyond it the connection closes. */
const MAX_DISCARD = 64 * 1024;

const CRLF = Buffer.from('\r\n');
/** Written by this hop itself, never copied from the response's fields. */
const HOP_FIELDS: ReadonlySet<string> = new Set(['content-length', 'transfer-encoding', 'connection']);
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

export interface Http1ServerHost {
  readonly limits: HttpLimits;
  /** Serves one parsed request. */
  handle(ds: Downstream, tunnel: TunnelInfo): void;
  /** Takes the connection over from here on (node:http); the stream is paused with unread bytes unshifted. */
  fallback(stream: Duplex, tunnel: TunnelInfo): void;
  isDraining(): boolean;
  /** The connection is gone (closed, or handed to the fallback). */
  released(conn: Http1ServerConnection): void;
  /** A request answered before it could be parsed (here: the header timeout), for telemetry. */
  rejected(tunnel: TunnelInfo, status: number, bodyBytes: number): void;
}

/** The request body as a stream; reading from it lets the connection read on. */
class RequestBodyStream extends Readable {
  constructor(private readonly conn: Http1ServerConnection) {
    super();
  }

  override _read(): void {
    this.conn.readBody();
  }
}

const enum BodyMode {
  None,
  Length,
  Chunked,
}

/** One request on a fast connection and the means to answer it. */
export class Http1Exchange implements Downstream {
  readonly protocol = 'http1' as const;
  readonly method: string;
  readonly rawPath: string;
  readonly authority: string;
  readonly ambiguousAuthority = false;
  readonly headers: HeaderMap;
  readonly headerCount: number;
  readonly body: RequestBodyStream | Buffer | null;
  /** The body as a stream, when it did not all arrive with the head. */
  readonly bodyStream: RequestBodyStream | null;
  readonly expectContinue = false;
  headersSent = false;
  aborted = false;
  bytesSent = 0;
  finished = false;
  private pendingHead: Buffer | null = null;
  private mode = BodyMode.None;
  private declared = 0;
  private abortCbs: Array<() => void> | null = null;
  private closeCbs: Array<() => void> | null = null;

  constructor(
    private readonly conn: Http1ServerConnection,
    head: RequestHead,
    /** The caller asked to close after this exchange (or the waypoint decided so). */
    public closeAfter: boolean,
    /** The whole body, when it came with the head. */
    whole: Buffer | null,
  ) {
    this.method = head.method;
    this.rawPath = head.target;
    this.headers = head.headers;
    this.authority = head.authority;
    this.headerCount = head.count;
    this.bodyStream = whole === null && head.contentLength > 0 ? new RequestBodyStream(conn) : null;
    this.body = whole ?? this.bodyStream;
  }

  get sink(): Writable {
    return this.conn.stream;
  }

  sendHeaders(status: number, headers: HeaderMap, opts: ResponseHeadOptions): void {
    if (this.headersSent || this.finished) return;
    this.headersSent = true;
    const noBody = this.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    let s = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`;
    if (headers.date === undefined) s += `date: ${httpDate()}\r\n`;
    let cl: string | string[] | undefined = headers['content-length'];
    if (status === 204 || status < 200) cl = undefined;
    // Framing and connection management are this hop's: the router already dropped the upstream's.
    s += serializeFields(headers, HOP_FIELDS);
    if (typeof cl === 'string' && /^\d{1,15}$/.test(cl)) {
      s += `content-length: ${cl}\r\n`;
      if (!noBody) {
        this.mode = BodyMode.Length;
        this.declared = Number(cl);
      }
    } else if (!noBody) {
      if (opts.endStream) s += 'content-length: 0\r\n';
      else {
        s += 'transfer-encoding: chunked\r\n';
        this.mode = BodyMode.Chunked;
      }
    }
    if (this.closeAfter || this.conn.host.isDraining() || this.conn.leavesLargeBodyUnread(this)) {
      this.closeAfter = true;
      s += 'connection: close\r\n';
    }
    s += '\r\n';
    this.pendingHead = Buffer.from(s, 'latin1');
    if (opts.endStream || noBody) {
      this.end();
      return;
    }
    // Usually the first body chunk follows in this same turn and leaves with the head in one write.
    this.conn.flushHeadSoon(this);
  }

  /** Writes a head still waiting for its first body chunk. */
  flushHead(): void {
    if (this.pendingHead === null || this.conn.stream.destroyed) return;
    const h = this.pendingHead;
    this.pendingHead = null;
    this.conn.write(h);
  }

  write(chunk: Buffer): boolean {
    if (this.finished || chunk.length === 0) return true;
    this.bytesSent += chunk.length;
    let out: Buffer;
    if (this.mode === BodyMode.Chunked) {
      const size = Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1');
      out = this.pendingHead ? Buffer.concat([this.pendingHead, size, chunk, CRLF]) : Buffer.concat([size, chunk, CRLF]);
    } else if (this.mode === BodyMode.Length) {
      if (this.bytesSent > this.declared) {
        // More than Content-Length announced: anything past it would be read as the next response.
        this.reset();
        return true;
      }
      out = this.pendingHead ? Buffer.concat([this.pendingHead, chunk]) : chunk;
    } else {
      return true;
    }
    this.pendingHead = null;
    return this.conn.write(out);
  }

  end(trailers?: HeaderMap): void {
    if (this.finished) return;
    this.finished = true;
    let tail: Buffer | null = null;
    if (this.mode === BodyMode.Chunked) {
      tail = trailers && Object.keys(trailers).length > 0 ? Buffer.from(`0\r\n${serializeFields(trailers)}\r\n`, 'latin1') : LAST_CHUNK;
    } else if (this.mode === BodyMode.Length && this.bytesSent !== this.declared) {
      // Short of its Content-Length: the caller must see a broken response, not wait for bytes that never come.
      this.finished = false;
      this.reset();
      return;
    }
    const out = this.pendingHead ? (tail ? Buffer.concat([this.pendingHead, tail]) : this.pendingHead) : tail;
    this.pendingHead = null;
    if (out) this.conn.write(out);
    this.conn.exchangeDone(this);
    this.closed();
  }

  reset(): void {
    // After a normal end the connection may already carry the next request.
    if (this.finished) return;
    this.finished = true;
    this.pendingHead = null;
    this.conn.stream.destroy();
  }

  sendContinue(): void {}

  onAbort(cb: () => void): void {
    (this.abortCbs ??= []).push(cb);
  }

  onClose(cb: () => void): void {
    (this.closeCbs ??= []).push(cb);
  }

  closeConnectionAfter(): void {
    if (!this.headersSent) this.closeAfter = true;
  }

  /** The connection went away while this exchange was open. */
  connectionLost(): void {
    if (!this.finished) {
      this.aborted = true;
      this.finished = true;
      const cbs = this.abortCbs;
      this.abortCbs = null;
      if (cbs) for (const cb of cbs) cb();
      if (this.bodyStream && !this.bodyStream.destroyed) this.bodyStream.destroy();
    }
    this.closed();
  }

  private closed(): void {
    const cbs = this.closeCbs;
    this.closeCbs = null;
    if (cbs) for (const cb of cbs) cb();
  }
}

export class Http1ServerConnection {
  private buf: Buffer | null = null;
  private current: Http1Exchange | null = null;
  /** Request body bytes still to come for the current (or just finished) exchange. */
  private bodyLeft = 0;
  /** The body's remaining bytes are read and dropped (its exchange ended without reading them). */
  private discarding = false;
  private bodyPaused = false;
  private gone = false;
  private ending = false;
  private parseScheduled = false;
  private headToFlush: Http1Exchange | null = null;
  /** Date.now() of the last byte in or out. */
  lastActivity = Date.now();
  /** When the bytes of a not yet complete head began to arrive; 0 when none are pending. */
  headSince = 0;

  constructor(
    readonly stream: Duplex,
    readonly tunnel: TunnelInfo,
    readonly host: Http1ServerHost,
  ) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onClose);
    stream.on('error', this.onError);
    stream.resume();
  }

  private readonly onError = (): void => {
    // 'close' follows and does the cleanup.
  };

  private readonly onData = (chunk: Buffer): void => {
    this.lastActivity = Date.now();
    if (this.bodyLeft > 0) {
      const take = Math.min(this.bodyLeft, chunk.length);
      const part = take === chunk.length ? chunk : chunk.subarray(0, take);
      this.bodyLeft -= take;
      this.deliverBody(part);
      if (take === chunk.length) return;
      chunk = chunk.subarray(take);
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.current !== null) {
      // A pipelined request: it waits, unread, until this response is done.
      this.stream.pause();
      return;
    }
    this.parse();
  };

  private deliverBody(part: Buffer): void {
    const ex = this.current;
    if (this.discarding || ex === null || ex.bodyStream === null) {
      if (this.bodyLeft === 0 && this.discarding) {
        this.discarding = false;
        this.scheduleParse();
      }
      return;
    }
    const body = ex.bodyStream;
    if (!body.destroyed) {
      if (!body.push(part)) {
        this.bodyPaused = true;
        this.stream.pause();
      }
      if (this.bodyLeft === 0) body.push(null);
    }
  }

  /** The body's consumer wants more. */
  readBody(): void {
    if (this.bodyPaused) {
      this.bodyPaused = false;
      if (this.current !== null && this.buf === null) this.stream.resume();
    }
  }

  private parse(): void {
    while (this.current === null && this.buf !== null && !this.gone && !this.ending) {
      if (this.bodyLeft > 0) return;
      const limits = this.host.limits;
      const end = findHeadEnd(this.buf, 0, limits.maxHeaderSize);
      if (end === -1) {
        if (this.buf.length > limits.maxHeaderSize) return this.handOver();
        if (this.headSince === 0) this.headSince = Date.now();
        this.stream.resume();
        return;
      }
      if (end === -2) return this.handOver();
      const head = parseRequestHead(this.buf.toString('latin1', 0, end), limits.maxHeaderCount);
      if (head === null) return this.handOver();
      this.headSince = 0;
      const rest = end === this.buf.length ? null : this.buf.subarray(end);
      this.buf = null;
      const cl = head.contentLength;
      if (cl > 0 && rest !== null && rest.length >= cl) {
        // The usual case for small bodies: all of it came with the head, so no stream is needed.
        const ex = new Http1Exchange(this, head, head.close, rest.length === cl ? rest : rest.subarray(0, cl));
        this.current = ex;
        this.bodyLeft = 0;
        if (rest.length > cl) {
          this.buf = rest.subarray(cl);
          this.stream.pause();
        } else this.stream.resume();
        this.host.handle(ex, this.tunnel);
        continue;
      }
      const ex = new Http1Exchange(this, head, head.close, null);
      this.current = ex;
      this.bodyLeft = cl;
      if (rest !== null) {
        if (this.bodyLeft > 0) {
          const take = Math.min(this.bodyLeft, rest.length);
          this.bodyLeft -= take;
          this.deliverBody(take === rest.length ? rest : rest.subarray(0, take));
          if (take < rest.length) this.buf = rest.subarray(take);
        } else {
          this.buf = rest;
        }
      }
      if (this.buf !== null) this.stream.pause();
      else if (!this.bodyPaused) this.stream.resume();
      this.host.handle(ex, this.tunnel);
    }
  }

  /** Gives the connection, from the unparsed request on, to node:http. */
  private handOver(): void {
    if (this.gone) return;
    this.gone = true;
    const s = this.stream;
    s.removeListener('data', this.onData);
    s.removeListener('end', this.onEnd);
    s.removeListener('close', this.onClose);
    s.removeListener('error', this.onError);
    s.pause();
    if (this.buf !== null) s.unshift(this.buf);
    this.buf = null;
    this.host.released(this);
    this.host.fallback(s, this.tunnel);
  }

  flushHeadSoon(ex: Http1Exchange): void {
    // A microtask, not setImmediate: whoever sent the head writes the body chunks it already has
    // in the same turn (and they then leave together), and a pending immediate would cost the
    // event loop an extra turn per response.
    if (this.headToFlush === null) queueMicrotask(this.flushHeadNow);
    this.headToFlush = ex;
  }

  private readonly flushHeadNow = (): void => {
    const ex = this.headToFlush;
    this.headToFlush = null;
    ex?.flushHead();
  };

  /** A reply that will not read the rest of a large request body: the connection cannot be kept. */
  leavesLargeBodyUnread(ex: Http1Exchange): boolean {
    return this.current === ex && this.bodyLeft > MAX_DISCARD && (ex.bodyStream === null || ex.bodyStream.readableFlowing !== true);
  }

  write(b: Buffer): boolean {
    this.lastActivity = Date.now();
    return this.stream.write(b);
  }

  exchangeDone(ex: Http1Exchange): void {
    if (this.current !== ex) return;
    this.current = null;
    if (ex.closeAfter || this.ending) {
      this.close();
      return;
    }
    if (this.bodyLeft > 0) {
      if (this.bodyLeft > MAX_DISCARD) {
        this.close();
        return;
      }
      this.discarding = true;
      if (ex.bodyStream && !ex.bodyStream.destroyed) ex.bodyStream.destroy();
      this.bodyPaused = false;
      this.stream.resume();
      return;
    }
    this.scheduleParse();
  }

  private scheduleParse(): void {
    if (this.parseScheduled) return;
    this.parseScheduled = true;
    // Not from inside the previous exchange's end(): its telemetry closes first, then the next request starts.
    process.nextTick(this.parseNext);
  }

  private readonly parseNext = (): void => {
    this.parseScheduled = false;
    if (this.gone || this.current !== null) return;
    if (this.buf === null) {
      if (this.bodyLeft === 0) this.stream.resume();
      return;
    }
    this.parse();
  };

  private readonly onEnd = (): void => {
    // As node:http does (httpAllowHalfOpen off): a caller that stops sending has left; the
    // exchange in flight is aborted (DC) and the connection ends.
    this.ending = true;
    const ex = this.current;
    this.current = null;
    if (ex !== null) ex.connectionLost();
    this.close();
  };

  private readonly onClose = (): void => {
    if (this.gone) return;
    this.gone = true;
    const ex = this.current;
    this.current = null;
    this.buf = null;
    this.host.released(this);
    if (ex !== null) ex.connectionLost();
  };

  /** Ends the connection cleanly (END_STREAM on an HBONE stream, FIN on a socket). */
  close(): void {
    this.ending = true;
    if (!this.stream.destroyed) this.stream.end();
    // A peer that never closes its side must not hold the stream open forever.
    setTimeout(() => this.stream.destroy(), 5000).unref();
  }

  get idle(): boolean {
    return this.current === null;
  }

  /**
   * Called about once a second: idle keep-alive connections, heads that arrive too slowly
   * (slowloris) and exchanges with no traffic are closed, as node:http's timers do on the other path.
   */
  sweep(now: number): void {
    if (this.gone) return;
    const l = this.host.limits;
    if (this.current !== null) {
      if (now - this.lastActivity > l.idleTimeoutMs) this.stream.destroy();
      return;
    }
    if (this.headSince !== 0 && now - this.headSince > l.requestHeadersTimeoutMs) {
      this.ending = true;
      const body = reasonPhrase(408);
      this.stream.write(Buffer.from(`HTTP/1.1 408 ${body}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`, 'latin1'));
      this.host.rejected(this.tunnel, 408, body.length);
      this.close();
      return;
    }
    if (this.buf === null && now - this.lastActivity > l.keepAliveTimeoutMs) this.close();
  }

  /** Drain: idle connections close now, busy ones after their response. */
  drain(): void {
    if (this.current === null) this.close();
    else this.current.closeAfter = true;
  }
}
