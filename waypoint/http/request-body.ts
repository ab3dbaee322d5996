import type { Readable } from 'node:stream';
import type { BodySink } from '../upstream/exchange';

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
  private completeWaiters: Array<(b: Buffer | null) => void> = [];

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
    if (this.replayable) {
      if (this.keptBytes + chunk.length <= this.limit) {
        this.kept.push(chunk);
        this.keptBytes += chunk.length;
      } else {
        this.replayable = false;
        this.kept = [];
        this.keptBytes = 0;
        this.notifyComplete(null);
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
    this.ended = true;
    if (this.replayable) this.notifyComplete(Buffer.concat(this.kept));
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

  private notifyComplete(b: Buffer | null): void {
    for (const w of this.completeWaiters.splice(0)) w(b);
  }

  /** The whole body, once received, if it stayed within the bound; null otherwise. */
  whenComplete(): Promise<Buffer | null> {
    if (this.whole !== null) return Promise.resolve(this.replayable ? this.whole : null);
    if (this.src === null) return Promise.resolve(Buffer.alloc(0));
    if (!this.replayable) return Promise.resolve(null);
    if (this.ended) return Promise.resolve(Buffer.concat(this.kept));
    return new Promise((r) => this.completeWaiters.push(r));
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
    this.notifyComplete(null);
  }
}
