/**
 * The body side of one mirrored (shadow) request. It receives the caller's body as it arrives,
 * holds it while the mirror's upstream exchange is being opened, then streams it on. A mirror
 * never slows the real request: the caller's body is not paused for it, and a mirror that falls
 * more than MIRROR_BACKLOG_BYTES behind is abandoned instead.
 */
import type { BodySink, UpstreamExchange } from '../upstream/exchange';
import type { BodyTee } from './request-body';

const MIRROR_BACKLOG_BYTES = 1024 * 1024;

export class MirrorRequest implements BodyTee {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  private sink: BodySink | null = null;
  private exchange: UpstreamExchange | null = null;
  /** The sink asked to wait: bytes written to it since, unacknowledged by a 'drain'. */
  private waiting = false;
  private backlog = 0;
  aborted = false;

  write(chunk: Buffer): void {
    if (this.aborted) return;
    if (this.sink === null) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes > MIRROR_BACKLOG_BYTES) this.abort();
      return;
    }
    this.send(this.sink, chunk);
  }

  end(): void {
    if (this.aborted || this.ended) return;
    this.ended = true;
    this.sink?.end();
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.pending = [];
    this.exchange?.abort();
  }

  /** The mirror's exchange is open: what was held goes first, the rest as it comes. */
  start(exchange: UpstreamExchange, hasBody: boolean): void {
    if (this.aborted) {
      exchange.abort();
      return;
    }
    this.exchange = exchange;
    if (!hasBody) return;
    const sink = exchange.requestBody;
    this.sink = sink;
    const held = this.pending;
    this.pending = [];
    for (const c of held) this.send(sink, c);
    if (this.ended && !this.aborted) sink.end();
  }

  private send(sink: BodySink, chunk: Buffer): void {
    if (this.waiting) {
      this.backlog += chunk.length;
      if (this.backlog > MIRROR_BACKLOG_BYTES) {
        this.abort();
        return;
      }
    }
    if (!sink.write(chunk) && !this.waiting) {
      this.waiting = true;
      sink.once('drain', () => {
        this.waiting = false;
        this.backlog = 0;
      });
    }
  }
}
