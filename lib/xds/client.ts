import * as grpc from '@grpc/grpc-js';
import type { AmbitClient } from '../api/client';
import { decodeBody } from './codec';

export interface DeltaUpdate {
  nonce: string;
  /** Decoded resources, by name. */
  changed: Map<string, { type: string; version: string; value: unknown }>;
  removed: string[];
}

export interface XdsClientOptions {
  subscriber: { type: 'ztunnel' | 'waypoint'; name: string };
  /**
   * Validates and applies one response as a whole; throwing NACKs it with the message,
   * and the state keeps what it had (the handler must not have applied anything then).
   */
  onUpdate: (u: DeltaUpdate) => void | Promise<void>;
  onConnected?: () => void;
  onError?: (err: Error) => void;
  backoffMs?: { initial: number; max: number };
}

/**
 * Config transport only: subscribe, apply incremental updates, ACK/NACK, reconnect with
 * backoff announcing what it already has. Consumers keep their own state.
 */
export class XdsClient {
  /** Versions of what the consumer holds (acked), by name. */
  readonly versions = new Map<string, string>();
  private call: grpc.ClientDuplexStream<object, RawResponse> | undefined;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly client: AmbitClient, private readonly opts: XdsClientOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private connect(): void {
    const stub = this.client.discovery as unknown as { Subscribe: () => grpc.ClientDuplexStream<object, RawResponse> };
    const call = stub.Subscribe();
    this.call = call;
    call.write({ subscriber: this.opts.subscriber, initialResourceVersions: Object.fromEntries(this.versions) });
    let chain = Promise.resolve();
    call.on('data', (r: RawResponse) => {
      this.attempt = 0;
      chain = chain.then(() => this.handle(call, r));
    });
    call.on('error', (err: Error) => {
      if (!this.stopped) this.opts.onError?.(err);
    });
    call.on('close', () => this.reconnect(call));
    call.on('end', () => this.reconnect(call));
    this.opts.onConnected?.();
  }

  private reconnect(call: grpc.ClientDuplexStream<object, RawResponse>): void {
    if (this.stopped || this.call !== call) return;
    this.call = undefined;
    const b = this.opts.backoffMs ?? { initial: 200, max: 15_000 };
    const delay = Math.min(b.max, b.initial * 2 ** this.attempt++) * (0.5 + Math.random() / 2);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  private async handle(call: grpc.ClientDuplexStream<object, RawResponse>, r: RawResponse): Promise<void> {
    const changed = new Map<string, { type: string; version: string; value: unknown }>();
    let error = '';
    try {
      for (const res of r.resources) changed.set(res.name, { type: res.type, version: res.version, value: decodeBody(res.type, res.body) });
      await this.opts.onUpdate({ nonce: r.nonce, changed, removed: r.removedResources });
      for (const [name, v] of changed) this.versions.set(name, v.version);
      for (const name of r.removedResources) this.versions.delete(name);
    } catch (err) {
      error = (err as Error).message || String(err);
    }
    if (this.call === call) call.write({ responseNonce: r.nonce, errorDetail: error });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.call?.cancel();
    this.call = undefined;
  }
}

interface RawResponse {
  nonce: string;
  resources: Array<{ name: string; version: string; type: string; body: Buffer }>;
  removedResources: string[];
}
