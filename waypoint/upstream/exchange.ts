import net from 'node:net';
import type { Http2Stream } from 'node:http2';
import type { Duplex, Readable } from 'node:stream';
import type { HeaderMap } from '../http/types';

/** What the router sends to an endpoint; `authority` is the service host the request was for, possibly rewritten. */
export interface UpstreamRequestHead {
  method: string;
  path: string;
  authority: string;
  headers: HeaderMap;
  /** False: the request ends with its headers (no body will be written). */
  hasBody: boolean;
  traceparent?: string;
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  /** The response ended with its headers (HTTP/2 END_STREAM; gRPC trailers-only). */
  endStream: boolean;
  /** Emits the body; ends normally, or closes without 'end' when the upstream reset. */
  body: Readable;
  /** The complete body, when all of it arrived with the head: `body` need not be read then. */
  readonly whole?: Buffer;
  /** Available once `body` ended. */
  trailers(): HeaderMap | undefined;
}

/**
 * Where a request body goes: the part of a Writable the router uses. An HTTP/2 stream is one; the
 * HTTP/1.1 client's is a lighter object without a stream's per-write bookkeeping.
 */
export interface BodySink {
  /** false: wait for 'drain' before writing more. */
  write(chunk: Buffer): boolean;
  end(chunk?: Buffer): unknown;
  once(event: 'drain', listener: () => void): unknown;
  /** Every byte, and the end, were handed on. */
  readonly writableFinished: boolean;
}

export interface UpstreamExchange {
  /** The request body is written here and ended; for a request without body it is already ended. */
  readonly requestBody: BodySink;
  /** Rejects with UpstreamError. */
  readonly response: Promise<UpstreamResponse>;
  /** Cancels the exchange (stream reset / connection destroyed); safe to call more than once. */
  abort(): void;
}

export type UpstreamErrorCode = 'ConnectFailed' | 'Reset' | 'RefusedStream' | 'Denied' | 'Timeout';

/** Failure of one attempt, with a stable code the retry logic maps to Envoy's retry conditions. */
export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
    /** The connection had carried earlier requests: a reset before any response may be a stale keep-alive race. */
    readonly reusedConnection = false,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Maps a connector rejection (its .code is the connector's: ConnectFailed, Denied, Timeout) to an UpstreamError. */
export function connectError(e: unknown): UpstreamError {
  if (e instanceof UpstreamError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  return new UpstreamError(code === 'Denied' ? 'Denied' : 'ConnectFailed', `connect failed: ${msg}`);
}

interface SocketLike {
  setKeepAlive?: unknown;
  setNoDelay?: unknown;
  ref?: unknown;
  unref?: unknown;
  setTimeout?: unknown;
}

/**
 * node's HTTP client calls net.Socket methods (setKeepAlive, ref, unref, setTimeout) on whatever
 * stream it is given; an HBONE stream has none of the first three, and without them the client throws.
 */
export function asSocketLike<T extends Duplex>(s: T): T {
  const o = s as T & SocketLike;
  const self = function (this: unknown) {
    return this;
  };
  if (typeof o.setKeepAlive !== 'function') o.setKeepAlive = self;
  if (typeof o.setNoDelay !== 'function') o.setNoDelay = self;
  if (typeof o.ref !== 'function') o.ref = self;
  if (typeof o.unref !== 'function') o.unref = self;
  if (typeof o.setTimeout !== 'function') o.setTimeout = self;
  return s;
}

type WriteCb = (err?: Error | null) => void;
interface WritableInternals {
  _write(chunk: unknown, encoding: BufferEncoding, cb: WriteCb): void;
  _writev?(chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, cb: WriteCb): void;
}

/**
 * node (20.x) corrupts string chunks written to an HTTP/2 stream through writev: the native side
 * sends from string storage that is freed before nghttp2 reads it, so node:http's message heads
 * (written as latin1 strings, corked with the body) arrive as garbage through an HBONE stream,
 * on the caller's side (server responses) as on the endpoint's (client requests).
 * Turning strings into Buffers before they reach the stream avoids it; a net.Socket is unaffected.
 */
export function bufferStringWrites(stream: Duplex): void {
  if (stream instanceof net.Socket) return;
  const w = stream as unknown as WritableInternals;
  const write = w._write;
  w._write = function (this: Duplex, chunk: unknown, encoding: BufferEncoding, cb: WriteCb) {
    return write.call(this, typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk, 'buffer' as BufferEncoding, cb);
  };
  const writev = w._writev;
  if (writev) {
    w._writev = function (this: Duplex, chunks: Array<{ chunk: unknown; encoding: BufferEncoding }>, cb: WriteCb) {
      const out = chunks.map((c) => (typeof c.chunk === 'string' ? { chunk: Buffer.from(c.chunk, c.encoding), encoding: 'buffer' as BufferEncoding } : c));
      // Writable marks all-Buffer batches; the stream's native writev takes a faster, different path for them.
      (out as unknown as { allBuffers: boolean }).allBuffers = true;
      return writev.call(this, out, cb);
    };
  }
}


/**
 * Abandons an HTTP/2 stream with RST_STREAM. Http2Stream.close(code) is not that: it first ends the
 * writable side, so END_STREAM goes out before the RST_STREAM and the peer takes a truncated body
 * (a response cut by a failing endpoint, an upload cut by a departing caller) for a complete one.
 * destroy(err) resets at once (code INTERNAL_ERROR); the stream's own 'error' listener absorbs err.
 */
export function resetHttp2Stream(stream: Http2Stream, reason: string): void {
  if (!stream.destroyed) stream.destroy(new Error(reason));
}
