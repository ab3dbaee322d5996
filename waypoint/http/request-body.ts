import type { Readable } from 'node:stream';
import type { BodySink } from '../upstream/exchange';

/** A copy of the body for someone else (a mirror): every chunk as it arrives, then the end, or abort when a copy cannot be whole. */
export interface BodyTee {
  write(chunk: Buffer): void;
  end(): void;
  abort(): void;
}

/**
 * The request body on its way upstream: streamed to the current attempt with backpressure, and
 * kept (up to a bound) so that a retry or a mirror can send it again. Once the body outgrows the
 * bound nothing more is kept and `replayable` turns false for good.
 */
export class RequestBody {
  private kept: Buffer[] = [];
  private keptBytes = 0;
  private sink: BodySink | null = null;
  private started = false;
  private waitingDrain: BodySink | null = null;
  replayable = true;
  ended = false;
  /** Bytes received from the caller. */
  bytes = 0;
  private tees: BodyTee[] = [];

  private readonly src: Readable | null;
  /** The whole body, when it came with the request head: nothing to stream or listen to. */
  private whole: Buffer | null = null;

  constructor(
    src: Readable | Buffer | null,
    private readonly limit: number,
  ) {
    if (Buffer.isBuffer(src)) {
      this.src = null;
      this.whole = src;
      this.bytes = src.length;
      this.replayable = src.length <= limit;
    } else this.src = src;
    if (this.src === null) this.ended = true;
  }

  private readonly onData = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    for (let i = 0; i < this.tees.length; i++) this.tees[i].write(chunk);
    if (this.replayable) {
      if (this.keptBytes + chunk.length <= this.limit) {
        this.kept.push(chunk);
        this.keptBytes += chunk.length;
      } else {
        this.replayable = false;
        this.kept = [];
        this.keptBytes = 0;
      }
    }
    const sink = this.sink;
    if (sink === null) {
      // Nowhere to send it yet (between attempts): stop reading rather than buffer without bound.
      // A chunk that was not kept is lost here, which is fine: without it no further attempt may start.
      this.src?.pause();
      return;
    }
    if (!sink.write(chunk)) this.waitFor(sink);
  };

  private readonly onEnd = (): void => {
    // node ends an HTTP/2 request stream that the caller reset (RST_STREAM) as if its body were
    // complete, before the downstream's abort runs. A reset body is incomplete (RFC 9113 8.1): it
    // must not be ended upstream, where it would pass for a whole request. The abort that follows
    // resets the upstream request.
    const rst = (this.src as { rstCode?: number } | null)?.rstCode;
    if (rst !== undefined && rst !== 0) {
      this.replayable = false;
      this.dispose();
      return;
    }
    this.ended = true;
    const tees = this.tees;
    this.tees = [];
    for (const t of tees) t.end();
    this.sink?.end();
  };

  private waitFor(sink: BodySink): void {
    if (this.waitingDrain === sink) return;
    this.waitingDrain = sink;
    this.src?.pause();
    sink.once('drain', () => {
      if (this.waitingDrain !== sink) return;
      this.waitingDrain = null;
      if (this.sink === sink) this.src?.resume();
    });
  }

  /**
   * Copies the body to `t` from its first byte, whatever its size (a mirror). Registered before the
   * body is read; later, only while every byte read so far was kept, else `t` is aborted at once.
   */
  tee(t: BodyTee): void {
    if (this.whole !== null) {
      t.write(this.whole);
      t.end();
      return;
    }
    if (this.src === null) {
      t.end();
      return;
    }
    if (this.started && !this.replayable) {
      t.abort();
      return;
    }
    for (const c of this.kept) t.write(c);
    if (this.ended) t.end();
    else this.tees.push(t);
  }

  /**
   * Sends the body to an attempt: what was kept first, then the rest as it arrives. Returns false
   * when the body can no longer be sent whole (it was not kept), so the attempt must not be made.
   */
  attach(sink: BodySink): boolean {
    if (this.whole !== null) {
      if (this.started && !this.replayable) return false;
      this.started = true;
      sink.end(this.whole);
      return true;
    }
    if (this.src === null) return true;
    if (this.started && !this.replayable) return false;
    this.sink = sink;
    this.waitingDrain = null;
    let ok = true;
    for (const c of this.kept) ok = sink.write(c) && ok;
    if (this.ended) {
      sink.end();
      return true;
    }
    if (!this.started) {
      this.started = true;
      this.src.on('data', this.onData);
      this.src.once('end', this.onEnd);
      // A body that ended before anyone listened never emits 'end' again: node does that for an
      // HTTP/2 request whose END_STREAM came on an empty DATA frame (what node's and Go's clients
      // send for an empty body). Waiting for it would leave the endpoint reading forever.
      if (this.src.readableEnded) {
        this.onEnd();
        return true;
      }
    }
    if (ok) this.src.resume();
    else this.waitFor(sink);
    return true;
  }

  detach(): void {
    this.sink = null;
    this.waitingDrain = null;
  }

  /** The caller went away or the request is over: stop reading and release memory. */
  dispose(): void {
    this.detach();
    this.kept = [];
    this.whole = null;
    if (this.src && this.started) {
      this.src.removeListener('data', this.onData);
      this.src.removeListener('end', this.onEnd);
    }
    // The body will not be read to its end: a copy of part of it must not pass for the request.
    const tees = this.tees;
    this.tees = [];
    for (const t of tees) t.abort();
  }
}
