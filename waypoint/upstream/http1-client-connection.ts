/**
 * The waypoint's HTTP/1.1 client: one connection to an endpoint and the exchange it carries.
 *
 * Hand-written rather than node:http because node's per-request objects (ClientRequest, Agent
 * bookkeeping, IncomingMessage) cost more CPU than all of the waypoint's own work on a proxied
 * request; this client only has to carry one request at a time over a pooled HBONE stream, stream
 * both bodies, and report failures the way the router's retry logic needs them.
 */
import net from 'node:net';
import { EventEmitter } from 'node:events';
import { Readable, type Duplex } from 'node:stream';
import { ChunkedDecoder, connectionCloses, findHeadEnd, isFieldValue, isToken, parseResponseHead, serializeFields, type ResponseHead } from '../http/http1-syntax';
import type { HeaderMap } from '../http/types';
import { UpstreamError, type BodySink, type UpstreamExchange, type UpstreamRequestHead, type UpstreamResponse } from './exchange';

function noop(): void {}

function destroyStream(s: Duplex): void {
  s.destroy();
}

function destroyBody(body: Readable): void {
  body.destroy();
}

/** The pool a connection belongs to. */
export interface ConnectionOwner {
  /** The exchange is over and the connection may carry another request (the owner may still refuse). */
  release(conn: Http1ClientConnection): void;
  /** The connection is gone for good. */
  closed(conn: Http1ClientConnection): void;
  /** The connection is closing: it still counts, but must carry no further request. */
  closing(conn: Http1ClientConnection): void;
}

// Methods that mean nothing by a body: node:http sends them without Content-Length, so do we.
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);
const CRLF = Buffer.from('\r\n', 'latin1');
/** Written from the request head's own facts (authority, body), never copied from its fields. */
const FRAMING_FIELDS: ReadonlySet<string> = new Set(['host', 'content-length', 'transfer-encoding']);
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** The sink of a request without body: already finished, and nothing written to it goes anywhere. */
const ENDED_BODY: BodySink = { write: () => false, end: noop, once: noop, writableFinished: true };

/** Body bytes held while the exchange waits for a connection before write() asks the writer to wait for 'drain'. */
const PENDING_LIMIT = 64 * 1024;

/** Content-Length as a number, or -1 when it is not 1*DIGIT (repeated values must all agree). */
function contentLength(v: string | string[] | undefined): number {
  if (v === undefined) return -1;
  let s: string;
  if (typeof v === 'string') s = v;
  else {
    if (v.length === 0) return -1;
    s = v[0];
    for (let i = 1; i < v.length; i++) if (v[i] !== s) return -1;
  }
  // 15 digits keeps the value an exact integer.
  return /^\d{1,15}$/.test(s) ? Number(s) : -1;
}

/** RFC 9112 §6.1: a response body is chunked only when chunked is its final transfer coding. */
function endsWithChunked(te: string | string[]): boolean {
  const last = Array.isArray(te) ? te[te.length - 1] : te;
  const comma = last.lastIndexOf(',');
  return last.slice(comma + 1).trim().toLowerCase() === 'chunked';
}

function isRequestTarget(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c > 0xff || c === 0x7f) return false;
  }
  return true;
}

/** The reason the head cannot be sent as it is (it would be rejected or, worse, reframed by the endpoint), or null. */
function invalidHead(head: UpstreamRequestHead): string | null {
  if (!isToken(head.method)) return 'invalid method';
  if (!isRequestTarget(head.path)) return 'invalid request target';
  if (!isFieldValue(head.authority)) return 'invalid authority';
  const h = head.headers;
  for (const k in h) {
    if (!isToken(k)) return `invalid header name ${JSON.stringify(k)}`;
    const v = h[k];
    if (typeof v === 'string') {
      if (!isFieldValue(v)) return `invalid value in header ${k}`;
    } else for (let i = 0; i < v.length; i++) if (!isFieldValue(v[i])) return `invalid value in header ${k}`;
  }
  return null;
}

/**
 * The request body's way to the endpoint: writes go straight to the connection's stream (or wait
 * with the exchange for a connection). Not a Writable: a stream's per-write bookkeeping, callbacks
 * and ticks were a visible share of a proxied request's CPU, and the router needs only this much.
 */
class RequestBodySink extends EventEmitter implements BodySink {
  writableFinished = false;
  private ended = false;

  constructor(private readonly ex: Http1ClientExchange) {
    super();
  }

  write(chunk: Buffer): boolean {
    if (this.ended) return true;
    return this.ex.writeBody(chunk);
  }

  end(chunk?: Buffer): this {
    if (this.ended) return this;
    if (chunk !== undefined && chunk.length > 0) this.ex.writeBody(chunk);
    this.ended = true;
    this.ex.endBody();
    return this;
  }
}

class ResponseBody extends Readable {
  constructor(private readonly conn: Http1ClientConnection) {
    super();
  }

  override _read(): void {
    this.conn.bodyRead(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.bodyDestroyed(this);
    cb(err);
  }
}

const EMPTY = Buffer.alloc(0);

class Http1Response implements UpstreamResponse {
  readonly endStream = false;
  /** Set when the body ended (chunked trailers, if any). */
  trailerFields: HeaderMap | undefined;
  private made: Readable | null = null;

  constructor(
    readonly status: number,
    readonly headers: HeaderMap,
    /** The stream the connection feeds, for a body still arriving; null when `whole` is set. */
    readonly fed: ResponseBody | null,
    readonly whole: Buffer | undefined,
  ) {}

  /** For a complete body, a stream is only made when someone asks for one (discarding, mirrors). */
  get body(): Readable {
    if (this.fed !== null) return this.fed;
    if (this.made === null) {
      const r = new Readable({ read: noop });
      if (this.whole !== undefined && this.whole.length > 0) r.push(this.whole);
      r.push(null);
      this.made = r;
    }
    return this.made;
  }

  trailers(): HeaderMap | undefined {
    return this.trailerFields;
  }
}

/** One request/response; waits for a connection, then lives on it until both sides are over. */
export class Http1ClientExchange implements UpstreamExchange {
  readonly requestBody: BodySink;
  private readonly sink: RequestBodySink | null;
  readonly response: Promise<UpstreamResponse>;
  /** The serialised head until it has been handed to the stream. */
  headBuf: Buffer | null = null;
  /** Content-Length bytes still to come; -1 for a chunked body. */
  remaining = 0;
  /** The request asked to close the connection afterwards. */
  readonly closeAfter: boolean;
  conn: Http1ClientConnection | null = null;
  /** Over (completed or failed): nothing the exchange does touches a connection any more. */
  done = false;
  settled = false;
  res: Http1Response | null = null;
  /** end() was called on the request body and its last bytes went (or are going) to the stream. */
  finalCalled = false;
  /** The stream accepted every byte of the request. */
  requestDone: boolean;
  responseComplete = false;
  // Body writes made before a connection was assigned.
  pending: Buffer[] | null = null;
  pendingBytes = 0;
  pendingEnd = false;
  /** A write returned false: the writer waits for 'drain'. */
  drainWanted = false;
  private resolveFn!: (r: UpstreamResponse) => void;
  private rejectFn!: (e: UpstreamError) => void;

  constructor(readonly head: UpstreamRequestHead) {
    this.response = new Promise<UpstreamResponse>((resolve, reject) => {
      this.resolveFn = resolve;
      this.rejectFn = reject;
    });
    // The router may abandon an attempt without awaiting its response.
    this.response.catch(noop);
    this.requestDone = !head.hasBody;
    this.sink = head.hasBody ? new RequestBodySink(this) : null;
    this.requestBody = this.sink ?? ENDED_BODY;
    this.closeAfter = head.headers.connection !== undefined && connectionCloses(head.headers.connection, false);
    const bad = invalidHead(head);
    if (bad !== null) {
      this.fail(new UpstreamError('Reset', `cannot send request upstream: ${bad}`));
      return;
    }
    this.headBuf = this.serializeHead();
  }

  private serializeHead(): Buffer {
    const head = this.head;
    const h = head.headers;
    let framing = '';
    if (head.hasBody) {
      const n = contentLength(h['content-length']);
      this.remaining = n;
      framing = n >= 0 ? `content-length: ${n}\r\n` : 'transfer-encoding: chunked\r\n';
    } else if (h['content-length'] !== undefined || !BODYLESS_METHODS.has(head.method)) {
      // Whatever length the caller claimed, nothing follows this head: the endpoint must not wait for a body.
      framing = 'content-length: 0\r\n';
    }
    const fields = serializeFields(h, FRAMING_FIELDS);
    return Buffer.from(`${head.method} ${head.path} HTTP/1.1\r\nhost: ${head.authority}\r\n${fields}${framing}\r\n`, 'latin1');
  }

  /** false: the writer should wait for 'drain'. */
  writeBody(chunk: Buffer): boolean {
    // After the exchange is over the router may still be feeding the body; it goes nowhere.
    if (this.done) return true;
    if (this.conn === null) {
      (this.pending ??= []).push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < PENDING_LIMIT) return true;
      this.drainWanted = true;
      return false;
    }
    return this.conn.writeBody(this, chunk);
  }

  endBody(): void {
    if (this.done) return;
    if (this.conn === null) {
      this.pendingEnd = true;
      return;
    }
    this.conn.endBody(this);
  }

  /** The stream took the bytes a writer was waiting on. */
  drained(): void {
    if (!this.drainWanted) return;
    this.drainWanted = false;
    this.sink?.emit('drain');
  }

  /** Every byte of the request, and its end, went to the stream. */
  bodySent(): void {
    this.requestDone = true;
    if (this.sink !== null) this.sink.writableFinished = true;
  }

  settle(res: Http1Response): void {
    this.settled = true;
    this.res = res;
    this.resolveFn(res);
  }

  /** Ends the exchange unsuccessfully; the caller has already detached it from its connection. */
  fail(err: UpstreamError): void {
    if (this.done) return;
    this.done = true;
    this.conn = null;
    this.headBuf = null;
    if (!this.settled) {
      this.settled = true;
      this.rejectFn(err);
    } else if (this.res !== null && !this.responseComplete) {
      // 'close' without 'end' is how the router tells a truncated response from a complete one. Not
      // at once: when the failure comes with the head, 'close' (a nextTick) would fire before the
      // reader, awaiting the response promise, has attached its listeners.
      if (this.res.fed !== null) setImmediate(destroyBody, this.res.fed);
    }
    this.pending = null;
    this.pendingBytes = 0;
    this.pendingEnd = false;
  }

  abort(): void {
    if (this.done) return;
    if (this.conn !== null) this.conn.abort(this);
    else this.fail(new UpstreamError('Reset', 'upstream request aborted'));
  }
}

const enum Phase {
  Idle,
  /** Waiting for the response head (interim 1xx heads are skipped). */
  Head,
  Body,
  /** The response is complete; the request's last bytes are still draining into the stream. */
  Complete,
}

const enum BodyMode {
  Length,
  Chunked,
  UntilClose,
}

/**
 * One stream to an endpoint carrying one exchange at a time. The stream's listeners are bound once
 * per connection, so an exchange costs only its own objects.
 */
export class Http1ClientConnection {
  private exchange: Http1ClientExchange | null = null;
  /** Requests begun on this connection, the current one included. */
  requests = 0;
  closed = false;
  /** Older than connectionPool.tcp.maxConnectionDuration: it finishes its request and closes. */
  expired = false;
  private phase = Phase.Idle;
  private mode = BodyMode.Length;
  private remaining = 0;
  private decoder: ChunkedDecoder | null = null;
  private keepAlive = true;
  /** Bytes of a response head received so far. */
  private buf: Buffer | null = null;
  /** The stream is paused because the response body's reader is behind. */
  private paused = false;
  /** A request-body write is waiting for the stream's 'drain'. */
  private drainPending = false;
  /** That write carried the request's last bytes. */
  private finalPending = false;
  private headImmediate: NodeJS.Immediate | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly stream: Duplex,
    private readonly owner: ConnectionOwner,
    private readonly maxHeadBytes: number,
  ) {
    if (stream instanceof net.Socket) stream.setNoDelay(true);
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onClose);
    stream.on('error', this.onError);
    stream.on('drain', this.onDrain);
  }

  begin(ex: Http1ClientExchange): void {
    this.exchange = ex;
    ex.conn = this;
    this.requests++;
    this.phase = Phase.Head;
    this.buf = null;
    this.keepAlive = !ex.closeAfter;
    if (!ex.head.hasBody) {
      const head = ex.headBuf;
      ex.headBuf = null;
      if (head !== null) this.stream.write(head);
      return;
    }
    const pending = ex.pending;
    ex.pending = null;
    ex.pendingBytes = 0;
    if (pending !== null) {
      let ok = true;
      for (let i = 0; i < pending.length && this.exchange === ex; i++) ok = this.writeBody(ex, pending[i]);
      if (this.exchange !== ex) return;
      if (ok && !ex.pendingEnd) ex.drained();
    }
    if (ex.pendingEnd) {
      ex.pendingEnd = false;
      this.endBody(ex);
    } else if (ex.headBuf !== null) {
      // A slow upload must not hold the head back; a quick one shares a write with it.
      this.headImmediate = setImmediate(this.flushHead);
    }
  }

  /** Keeps an idle connection for `ms` (0: without limit). */
  park(ms: number): void {
    if (ms <= 0) return;
    // A timer that fired while the connection was busy is re-armed by refresh(), so one timer serves every idle period.
    if (this.idleTimer === null) this.idleTimer = setTimeout(this.onIdleTimeout, ms).unref();
    else this.idleTimer.refresh();
  }

  destroy(): void {
    this.close(new UpstreamError('Reset', 'upstream connection closed'));
  }

  /**
   * Closes an idle connection cleanly: END_STREAM on an HBONE stream, not RST_STREAM, since the
   * endpoint's ztunnel counts resets (nghttp2's rapid-reset guard) and past a limit would close
   * the whole HBONE connection with every other tunnel on it.
   */
  finish(): void {
    if (this.closed || this.exchange !== null) return;
    if (this.stream.destroyed || this.stream.writableEnded) {
      this.close(null);
      return;
    }
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.owner.closing(this);
    this.stream.end();
    // The pool counts the connection until its stream has closed (the peer's 'end', or 'close');
    // a peer that never ends its side must not keep it forever.
    setTimeout(destroyStream, 5000, this.stream).unref();
  }

  abort(ex: Http1ClientExchange): void {
    if (this.exchange === ex) this.close(new UpstreamError('Reset', 'upstream request aborted'));
  }

  /** false: the stream is full; the exchange's writer hears 'drain' when it has room again. */
  writeBody(ex: Http1ClientExchange, chunk: Buffer): boolean {
    let out: Buffer;
    if (ex.remaining >= 0) {
      if (chunk.length > ex.remaining) {
        this.close(new UpstreamError('Reset', 'request body longer than its content-length'));
        return true;
      }
      ex.remaining -= chunk.length;
      if (chunk.length === 0) return true;
      out = ex.headBuf === null ? chunk : Buffer.concat([ex.headBuf, chunk]);
    } else {
      // An empty chunk would be read as the end of the body.
      if (chunk.length === 0) return true;
      const size = Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1');
      out = ex.headBuf === null ? Buffer.concat([size, chunk, CRLF]) : Buffer.concat([ex.headBuf, size, chunk, CRLF]);
    }
    if (ex.headBuf !== null) this.headSent(ex);
    if (this.stream.write(out)) return true;
    ex.drainWanted = true;
    this.drainPending = true;
    return false;
  }

  endBody(ex: Http1ClientExchange): void {
    if (ex.remaining > 0) {
      this.close(new UpstreamError('Reset', 'request body shorter than its content-length'));
      return;
    }
    let out: Buffer | null = ex.remaining < 0 ? LAST_CHUNK : null;
    if (ex.headBuf !== null) {
      out = out === null ? ex.headBuf : Buffer.concat([ex.headBuf, out]);
      this.headSent(ex);
    }
    ex.finalCalled = true;
    if (out === null || this.stream.write(out)) this.requestSent(ex);
    else {
      this.drainPending = true;
      this.finalPending = true;
    }
  }

  private headSent(ex: Http1ClientExchange): void {
    ex.headBuf = null;
    if (this.headImmediate !== null) {
      clearImmediate(this.headImmediate);
      this.headImmediate = null;
    }
  }

  private readonly flushHead = (): void => {
    this.headImmediate = null;
    const ex = this.exchange;
    if (ex === null || ex.headBuf === null) return;
    const head = ex.headBuf;
    ex.headBuf = null;
    this.stream.write(head);
  };

  private requestSent(ex: Http1ClientExchange): void {
    ex.bodySent();
    if (ex.responseComplete && this.exchange === ex) this.reuse(ex);
  }

  private readonly onDrain = (): void => {
    if (!this.drainPending) return;
    this.drainPending = false;
    const ex = this.exchange;
    if (ex === null) return;
    if (this.finalPending) {
      this.finalPending = false;
      this.requestSent(ex);
    } else ex.drained();
  };

  bodyRead(body: ResponseBody): void {
    if (this.paused && this.exchange?.res?.fed === body) {
      this.paused = false;
      this.stream.resume();
    }
  }

  bodyDestroyed(body: ResponseBody): void {
    const ex = this.exchange;
    // The reader gave up on a body still arriving: nothing would read the rest, so the connection cannot continue.
    if (ex !== null && ex.res?.fed === body && !ex.responseComplete) this.close(new UpstreamError('Reset', 'response body abandoned'));
  }

  private readonly onData = (chunk: Buffer): void => {
    const ex = this.exchange;
    if (ex === null || this.phase === Phase.Complete) {
      // Nothing was asked: a server sending now is out of step with us.
      this.close(new UpstreamError('Reset', 'upstream sent data after the response'));
      return;
    }
    if (this.phase === Phase.Head) this.onHeadBytes(ex, chunk);
    else this.onBodyBytes(ex, chunk);
  };

  private onHeadBytes(ex: Http1ClientExchange, chunk: Buffer): void {
    const prev = this.buf;
    // Without a new LF the head cannot have ended.
    if (prev !== null && chunk.indexOf(0x0a) === -1) {
      const total = prev.length + chunk.length;
      if (total > this.maxHeadBytes) return this.protocolError('response head too large');
      this.buf = Buffer.concat([prev, chunk], total);
      return;
    }
    let buf = prev === null ? chunk : Buffer.concat([prev, chunk]);
    for (;;) {
      const end = findHeadEnd(buf, 0, this.maxHeadBytes);
      if (end === -1) {
        if (buf.length > this.maxHeadBytes) return this.protocolError('response head too large');
        this.buf = buf;
        return;
      }
      if (end === -2) return this.protocolError('bare LF in response head');
      const parsed = parseResponseHead(buf.toString('latin1', 0, end));
      if ('error' in parsed) return this.protocolError(parsed.error);
      buf = buf.subarray(end);
      if (parsed.status >= 200) {
        this.buf = null;
        this.startBody(ex, parsed, buf);
        return;
      }
      // This path never asks to switch protocols; upgrades go through node:http.
      if (parsed.status === 101) return this.protocolError('unexpected 101 Switching Protocols');
      if (buf.length === 0) {
        this.buf = null;
        return;
      }
    }
  }

  private startBody(ex: Http1ClientExchange, head: ResponseHead, rest: Buffer): void {
    const h = head.headers;
    const status = head.status;
    const hop = head.hop;
    if (connectionCloses(hop.connection.length === 0 ? undefined : hop.connection, head.http10)) this.keepAlive = false;
    // RFC 9112 §6.3, in its order.
    let none = false;
    if (ex.head.method === 'HEAD' || status === 204 || status === 304) none = true;
    else if (hop.transferEncoding.length > 0) {
      if (h['content-length'] !== undefined) return this.protocolError('both transfer-encoding and content-length');
      if (!endsWithChunked(hop.transferEncoding)) return this.protocolError('unsupported transfer-encoding');
      this.mode = BodyMode.Chunked;
      this.decoder = new ChunkedDecoder(this.maxHeadBytes);
      // §6.1: chunked framing in an HTTP/1.0 message is suspect; do not trust the connection afterwards.
      if (head.http10) this.keepAlive = false;
    } else if (h['content-length'] !== undefined) {
      const n = contentLength(h['content-length']);
      if (n < 0) return this.protocolError('invalid content-length');
      // Repeated identical values are one value (RFC 9110 8.6); passed on as a list they would
      // break an HTTP/2 caller's response and make an HTTP/1 one re-frame the body.
      if (Array.isArray(h['content-length'])) h['content-length'] = String(n);
      this.mode = BodyMode.Length;
      this.remaining = n;
      if (n === 0) none = true;
    } else {
      this.mode = BodyMode.UntilClose;
      this.keepAlive = false;
    }
    this.phase = Phase.Body;
    if (none || (this.mode === BodyMode.Length && rest.length >= this.remaining)) {
      // The whole body is here already (the usual case for small responses): no stream for it.
      const n = none ? 0 : this.remaining;
      this.remaining = 0;
      ex.settle(new Http1Response(status, h, null, n === 0 ? EMPTY : rest.length === n ? rest : rest.subarray(0, n)));
      this.messageComplete(ex, rest.length > n);
      return;
    }
    ex.settle(new Http1Response(status, h, new ResponseBody(this), undefined));
    if (rest.length > 0) this.onBodyBytes(ex, rest);
  }

  private onBodyBytes(ex: Http1ClientExchange, chunk: Buffer): void {
    switch (this.mode) {
      case BodyMode.Length: {
        if (chunk.length < this.remaining) {
          this.remaining -= chunk.length;
          this.pushBody(chunk);
          return;
        }
        const take = this.remaining;
        this.remaining = 0;
        if (take > 0) this.pushBody(take === chunk.length ? chunk : chunk.subarray(0, take));
        if (this.exchange === ex) this.messageComplete(ex, chunk.length > take);
        return;
      }
      case BodyMode.Chunked: {
        const dec = this.decoder;
        if (dec === null) return;
        const n = dec.feed(chunk, this.onDecoded);
        if (this.exchange !== ex) return;
        if (n < 0) return this.protocolError(dec.error);
        if (dec.done) {
          if (ex.res !== null) ex.res.trailerFields = dec.trailers;
          this.decoder = null;
          this.messageComplete(ex, n < chunk.length);
        }
        return;
      }
      case BodyMode.UntilClose:
        this.pushBody(chunk);
        return;
    }
  }

  private readonly onDecoded = (chunk: Buffer): void => {
    this.pushBody(chunk);
  };

  private pushBody(chunk: Buffer): void {
    const body = this.exchange?.res?.fed;
    if (body === undefined || body === null) return;
    if (!body.push(chunk) && !this.paused && !this.closed) {
      this.paused = true;
      this.stream.pause();
    }
  }

  private messageComplete(ex: Http1ClientExchange, extraBytes: boolean): void {
    ex.responseComplete = true;
    this.phase = Phase.Complete;
    ex.res?.fed?.push(null);
    if (extraBytes || (!ex.finalCalled && !ex.requestDone)) {
      // Extra bytes: the server is out of step. Early response: the rest of the upload would be
      // read as the next request, or never read at all.
      this.detach(ex);
      this.close(null);
    } else if (!this.keepAlive) {
      this.detach(ex);
      this.finish();
    } else if (ex.requestDone) this.reuse(ex);
    // Otherwise the request's last bytes are draining; requestSent() hands the connection back.
  }

  private detach(ex: Http1ClientExchange): void {
    ex.done = true;
    ex.conn = null;
    this.exchange = null;
    this.phase = Phase.Idle;
  }

  private reuse(ex: Http1ClientExchange): void {
    this.detach(ex);
    if (this.paused) {
      this.paused = false;
      // Reading on, so that a server closing the idle connection is noticed.
      this.stream.resume();
    }
    this.owner.release(this);
  }

  private protocolError(reason: string): void {
    this.close(new UpstreamError('Reset', `upstream sent an invalid response: ${reason}`));
  }

  private readonly onEnd = (): void => {
    const ex = this.exchange;
    if (ex !== null && this.phase === Phase.Body && this.mode === BodyMode.UntilClose) {
      this.messageComplete(ex, false);
      return;
    }
    this.close(new UpstreamError('Reset', 'upstream reset: connection closed', this.requests > 1));
  };

  private readonly onClose = (): void => {
    this.close(new UpstreamError('Reset', 'upstream reset: connection closed', this.requests > 1));
  };

  private readonly onError = (e: Error): void => {
    this.close(new UpstreamError('Reset', `upstream reset: ${e.message}`, this.requests > 1));
  };

  private readonly onIdleTimeout = (): void => {
    if (this.exchange === null) this.finish();
  };

  /** Tears the connection down; an exchange still on it fails with `err`. */
  private close(err: UpstreamError | null): void {
    if (this.closed) return;
    this.closed = true;
    const ex = this.exchange;
    if (ex !== null) {
      this.exchange = null;
      ex.fail(err ?? new UpstreamError('Reset', 'upstream connection closed'));
    }
    this.phase = Phase.Idle;
    this.buf = null;
    this.decoder = null;
    this.drainPending = false;
    this.finalPending = false;
    if (this.headImmediate !== null) clearImmediate(this.headImmediate);
    this.headImmediate = null;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.stream.destroy();
    this.owner.closed(this);
  }
}
