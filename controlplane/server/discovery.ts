import type { Logger } from '../../lib/telemetry/log';
import type { ControlPlaneMetrics } from '../metrics';
import type { Store } from '../store/store';
import { modelFrom, TranslateOptions } from '../translate/model';
import { diffSnapshots, lookup, MeshSnapshot, resourcesFor, scopeOf, SnapshotDelta, Subscriber, SubscriberScope, translate, XdsResource } from '../translate/translate';

export interface DiscoveryResponse {
  nonce: string;
  resources: Array<{ name: string; version: string; type: string; body: Uint8Array }>;
  removedResources: string[];
}

export interface DiscoveryOptions {
  debounceMs: number;
  /** A stream of changes may hold a push back at most this long. */
  maxDelayMs: number;
  translate: TranslateOptions;
}

interface Inflight {
  nonce: string;
  sent: Map<string, string | null>;
  changedAt: number;
  snapshot: MeshSnapshot;
}

/** One subscriber's stream: what it has ACKed, what it refused, and at most one response in flight. */
class Subscription {
  readonly acked = new Map<string, string>();
  /** Versions the subscriber NACKed: never resent, so a bad resource cannot loop. */
  readonly nacked = new Map<string, string>();
  private inflight: Inflight | undefined;
  private dirty = false;
  private seq = 0;
  lastNack: string | undefined;
  /** Replies received: 0 until the subscriber has answered its first response. */
  replies = 0;
  /** The snapshot the ACKed state equals, when known: the next push only looks at what changed since. */
  private syncedTo: MeshSnapshot | undefined;
  private scope: SubscriberScope | undefined;

  constructor(
    readonly sub: Subscriber,
    readonly label: string,
    private readonly server: DiscoveryServer,
    private readonly send: (r: DiscoveryResponse) => void,
    initial: Record<string, string>,
  ) {
    for (const [k, v] of Object.entries(initial)) this.acked.set(k, v);
  }

  /** A response is out and not answered yet. */
  get busy(): boolean {
    return this.inflight !== undefined;
  }

  /** `force`: answer even when nothing differs, so a (re)connecting subscriber learns it is current. */
  push(changedAt: number, force = false, delta?: SnapshotDelta): void {
    if (this.inflight) {
      this.dirty = true;
      return;
    }
    this.dirty = false;
    const snap = this.server.snapshot;
    const resources: XdsResource[] = [];
    const sent = new Map<string, string | null>();
    const incremental = !force && delta !== undefined && this.syncedTo === delta.from && this.nacked.size === 0 && this.scope !== undefined &&
      (this.sub.type === 'ztunnel' ? !delta.nodes.has(this.sub.node) : !delta.waypoints);
    if (incremental) {
      // Cost proportional to the change, not to the mesh: only names that changed are looked at.
      for (const name of delta.names) {
        const r = lookup(snap, this.sub, this.scope!, name);
        if (r) {
          if (this.acked.get(name) !== r.version) {
            resources.push(r);
            sent.set(name, r.version);
          }
        } else if (this.acked.has(name)) sent.set(name, null);
      }
    } else {
      this.scope = scopeOf(snap, this.sub);
      const desired = resourcesFor(snap, this.sub);
      for (const [name, r] of desired) {
        if (this.acked.get(name) === r.version || this.nacked.get(name) === r.version) continue;
        resources.push(r);
        sent.set(name, r.version);
      }
      for (const name of this.acked.keys()) if (!desired.has(name)) sent.set(name, null);
    }
    if (sent.size === 0 && !force) {
      if (this.nacked.size === 0) this.syncedTo = snap;
      return;
    }
    const removed = [...sent].filter(([, v]) => v === null).map(([k]) => k);
    const nonce = `${this.label}-${++this.seq}`;
    this.inflight = { nonce, sent, changedAt, snapshot: snap };
    this.server.metrics.pushes.inc({ type: this.sub.type });
    this.server.metrics.pushedResources.inc({ type: this.sub.type }, sent.size);
    this.send({ nonce, resources: resources.map((r) => ({ name: r.name, version: r.version, type: r.type, body: r.body })), removedResources: removed });
  }

  onReply(nonce: string, errorDetail: string): void {
    const f = this.inflight;
    if (!f || f.nonce !== nonce) {
      this.server.log.warn({ subscriber: this.label, nonce }, 'reply for a response that is not in flight; ignored');
      return;
    }
    this.inflight = undefined;
    this.replies++;
    if (errorDetail) {
      this.lastNack = errorDetail;
      for (const [name, v] of f.sent) if (v !== null) this.nacked.set(name, v);
      this.syncedTo = undefined;
      this.server.metrics.nacks.inc({ type: this.sub.type });
      this.server.log.warn({ subscriber: this.label, nonce, reason: errorDetail }, 'subscriber rejected the configuration; it keeps its last good state');
    } else {
      this.lastNack = undefined;
      for (const [name, v] of f.sent) {
        if (v === null) this.acked.delete(name);
        else this.acked.set(name, v);
        this.nacked.delete(name);
      }
      if (this.nacked.size === 0) this.syncedTo = f.snapshot;
      this.server.metrics.pushLatency.observe({ type: this.sub.type }, (Date.now() - f.changedAt) / 1000);
    }
    if (this.dirty) this.push(f.changedAt);
  }
}

/**
 * Incremental config push. The store is the single writer; every commit marks the
 * model dirty, a debounce (bounded by maxDelayMs) coalesces bursts, then one translation
 * is shared by all subscribers and each gets only what differs from what it ACKed.
 */
export class DiscoveryServer {
  snapshot: MeshSnapshot;
  private readonly subs = new Set<Subscription>();
  private timer: NodeJS.Timeout | undefined;
  private firstChange = 0;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly store: Store,
    private readonly opts: DiscoveryOptions,
    readonly metrics: ControlPlaneMetrics,
    readonly log: Logger,
  ) {
    this.snapshot = this.translateNow();
    this.unsubscribe = store.onCommit(() => this.schedule());
  }

  private translateNow(previous?: MeshSnapshot): MeshSnapshot {
    const end = this.metrics.translateDuration.startTimer();
    try {
      return translate(modelFrom(this.store), this.opts.translate, previous);
    } finally {
      end();
    }
  }

  private schedule(): void {
    const now = Date.now();
    if (this.timer) {
      clearTimeout(this.timer);
    } else {
      this.firstChange = now;
    }
    const wait = Math.max(0, Math.min(this.opts.debounceMs, this.firstChange + this.opts.maxDelayMs - now));
    this.timer = setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = undefined;
    const changedAt = this.firstChange;
    const previous = this.snapshot;
    try {
      this.snapshot = this.translateNow(previous);
    } catch (err) {
      // Translation works on validated input; if it still fails, keep serving the last snapshot.
      this.log.error({ err }, 'translation failed; subscribers keep the previous configuration');
      return;
    }
    const delta = diffSnapshots(previous, this.snapshot);
    for (const s of this.subs) s.push(changedAt, false, delta);
  }

  /** Registers a stream; `initial` is what the subscriber already holds. */
  connect(sub: Subscriber, initial: Record<string, string>, send: (r: DiscoveryResponse) => void): { onReply: (nonce: string, error: string) => void; close: () => void; state: Subscription } {
    const label = sub.type === 'ztunnel' ? `ztunnel/${sub.node}` : `waypoint/${sub.namespace}/${sub.name}`;
    const s = new Subscription(sub, label, this, send, initial);
    this.subs.add(s);
    this.metrics.subscribers.inc({ type: sub.type });
    this.log.info({ subscriber: label, known: Object.keys(initial).length }, 'subscriber connected');
    s.push(Date.now(), true);
    let closed = false;
    return {
      state: s,
      onReply: (nonce, error) => s.onReply(nonce, error),
      close: () => {
        if (closed) return;
        closed = true;
        this.subs.delete(s);
        this.metrics.subscribers.dec({ type: sub.type });
        this.log.info({ subscriber: label }, 'subscriber disconnected');
      },
    };
  }

  /**
   * A waypoint's rollout as Gateway status shows it: how many instances are subscribed,
   * how many have applied the current configuration, and the last refusal, if any.
   */
  waypointStatus(namespace: string, name: string): { instances: number; synced: number; lastNack?: string } {
    let instances = 0;
    let synced = 0;
    let lastNack: string | undefined;
    for (const s of this.subs) {
      if (s.sub.type !== 'waypoint' || s.sub.namespace !== namespace || s.sub.name !== name) continue;
      instances++;
      if (s.replies > 0 && !s.busy && s.lastNack === undefined) synced++;
      if (s.lastNack !== undefined) lastNack = s.lastNack;
    }
    return { instances, synced, lastNack };
  }

  subscriptions(): Array<{ subscriber: string; acked: number; lastNack?: string }> {
    return [...this.subs].map((s) => ({ subscriber: s.label, acked: s.acked.size, lastNack: s.lastNack }));
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe();
  }
}
