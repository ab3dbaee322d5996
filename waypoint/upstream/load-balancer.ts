import type { TrafficPolicy } from '../../lib/api/kinds/networking';
import type { RandomSource } from './weighted-pick';

/** A DestinationRule's trafficPolicy.loadBalancer, as validated (LEAST_CONN already renamed). */
export type LoadBalancerSettings = NonNullable<TrafficPolicy['loadBalancer']>;
type ConsistentHashSettings = NonNullable<LoadBalancerSettings['consistentHash']>;

export interface Endpoint {
  readonly id: string;
  readonly address: string;
  readonly labels?: Readonly<Record<string, string>>;
}

type MultiValue = string | readonly string[] | undefined;

export interface PickContext {
  /** Request headers keyed by lower-case name, as Node's http module gives them. */
  readonly headers: Readonly<Record<string, MultiValue>>;
  readonly sourceIp?: string;
  readonly query?: Readonly<Record<string, MultiValue>>;
  /** The request's path and query: its query is read only when a hash policy asks for a parameter. */
  readonly path?: string;
  /** A cookie value generated for this request (its cookie was absent): hashed as if the caller had sent it. */
  readonly generatedCookie?: string;
  /** Endpoints not to choose: ejected by outlier detection, or already tried by this request's earlier attempts. */
  readonly excluded?: ReadonlySet<string>;
  /** Address the client originally dialled; only PASSTHROUGH uses it. */
  readonly originalDestination?: string;
}

export type LoadBalancerKind = 'ROUND_ROBIN' | 'RANDOM' | 'LEAST_REQUEST' | 'PASSTHROUGH' | 'CONSISTENT_HASH';

export interface LoadBalancer {
  readonly kind: LoadBalancerKind;
  pick(ctx: PickContext): Endpoint | null;
  /** Call when a request is sent to ep / when it completes, so LEAST_REQUEST sees in-flight load. */
  onStart(ep: Endpoint): void;
  onEnd(ep: Endpoint): void;
  inFlight(id: string): number;
  /** Replaces the endpoint set; in-flight counts of endpoints that remain are kept. */
  setEndpoints(endpoints: readonly Endpoint[]): void;
  /** Points on the hash ring; only consistent hashing has one. */
  readonly ringSize?: number;
}

export interface LoadBalancerOptions {
  readonly random?: RandomSource;
}

export const DEFAULT_MINIMUM_RING_SIZE = 1024;
/**
 * Upper bound on ring points. Envoy's default is 8M; we stay far lower because the ring is rebuilt
 * in-process on every endpoint change and a JS sort of millions of doubles would stall the event loop.
 */
export const MAX_RING_SIZE = 1 << 20;

export function createLoadBalancer(
  policy: LoadBalancerSettings | undefined,
  endpoints: readonly Endpoint[],
  opts: LoadBalancerOptions = {},
): LoadBalancer {
  const random = opts.random ?? Math.random;
  if (policy?.consistentHash) return new ConsistentHashBalancer(policy.consistentHash, endpoints, random);
  switch (policy?.simple) {
    case 'ROUND_ROBIN':
      return new RoundRobinBalancer(endpoints, random);
    case 'RANDOM':
      return new RandomBalancer(endpoints, random);
    case 'PASSTHROUGH':
      return new PassthroughBalancer(endpoints, random);
    // Istio's default (since 1.14) is LEAST_REQUEST, for an unset policy as well as UNSPECIFIED.
    default:
      return new LeastRequestBalancer(endpoints, random);
  }
}

abstract class BaseBalancer implements LoadBalancer {
  abstract readonly kind: LoadBalancerKind;
  protected endpoints: readonly Endpoint[] = [];
  private readonly active = new Map<string, number>();
  // Starting every proxy at index 0 would send the first request of each waypoint replica to the same endpoint.
  private cursor: number;

  constructor(endpoints: readonly Endpoint[], protected readonly random: RandomSource) {
    this.cursor = Math.floor(random() * Math.max(endpoints.length, 1));
    this.setEndpoints(endpoints);
  }

  abstract pick(ctx: PickContext): Endpoint | null;

  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.endpoints = [...endpoints];
    const keep = new Set(endpoints.map((e) => e.id));
    for (const id of this.active.keys()) if (!keep.has(id)) this.active.delete(id);
    this.rebuild();
  }

  protected rebuild(): void {}

  onStart(ep: Endpoint): void {
    this.active.set(ep.id, (this.active.get(ep.id) ?? 0) + 1);
  }

  onEnd(ep: Endpoint): void {
    const n = this.active.get(ep.id) ?? 0;
    if (n <= 1) this.active.delete(ep.id);
    else this.active.set(ep.id, n - 1);
  }

  inFlight(id: string): number {
    return this.active.get(id) ?? 0;
  }

  protected roundRobin(excluded: ReadonlySet<string> | undefined): Endpoint | null {
    const n = this.endpoints.length;
    for (let i = 0; i < n; i++) {
      const ep = this.endpoints[(this.cursor + i) % n];
      if (excluded?.has(ep.id)) continue;
      this.cursor = (this.cursor + i + 1) % n;
      return ep;
    }
    return null;
  }

  protected candidates(excluded: ReadonlySet<string> | undefined): readonly Endpoint[] {
    return excluded && excluded.size > 0 ? this.endpoints.filter((e) => !excluded.has(e.id)) : this.endpoints;
  }
}

class RoundRobinBalancer extends BaseBalancer {
  readonly kind = 'ROUND_ROBIN';
  pick(ctx: PickContext): Endpoint | null {
    return this.roundRobin(ctx.excluded);
  }
}

class RandomBalancer extends BaseBalancer {
  readonly kind = 'RANDOM';
  pick(ctx: PickContext): Endpoint | null {
    const c = this.candidates(ctx.excluded);
    return c.length === 0 ? null : c[Math.floor(this.random() * c.length)];
  }
}

/**
 * Power of two choices, as Envoy does for equal weights: comparing two random endpoints avoids both
 * the herd effect of always choosing the global minimum (every proxy piles onto the same idle host)
 * and the cost of scanning all endpoints.
 */
class LeastRequestBalancer extends BaseBalancer {
  readonly kind = 'LEAST_REQUEST';
  pick(ctx: PickContext): Endpoint | null {
    const c = this.candidates(ctx.excluded);
    if (c.length <= 1) return c[0] ?? null;
    const i = Math.floor(this.random() * c.length);
    // Drawing the second from the remaining n-1 guarantees two distinct choices.
    let j = Math.floor(this.random() * (c.length - 1));
    if (j >= i) j++;
    const a = c[i];
    const b = c[j];
    return this.inFlight(b.id) < this.inFlight(a.id) ? b : a;
  }
}

/**
 * Envoy's ORIGINAL_DST: the connection goes where the client aimed, even to an address the mesh
 * doesn't list, because that is what PASSTHROUGH promises. Without an original destination there is
 * nothing to pass through to.
 */
class PassthroughBalancer extends BaseBalancer {
  readonly kind = 'PASSTHROUGH';
  pick(ctx: PickContext): Endpoint | null {
    const addr = ctx.originalDestination;
    if (addr === undefined) return null;
    const known = this.endpoints.find((e) => e.address === addr);
    const ep = known ?? { id: addr, address: addr };
    return ctx.excluded?.has(ep.id) ? null : ep;
  }
}

/**
 * Ring hash (Envoy RING_HASH / Istio consistentHash).
 *
 * Unlike Envoy, which spreads a fixed-size ring across all hosts (so every host's share of points
 * shrinks when one is added, moving ~2/N of the keys), each host here gets minimumRingSize points of
 * its own, derived only from its id. A host's points therefore don't depend on its peers, and adding
 * one host moves only the keys that land on the newcomer's points: ~1/(N+1). The ring is still at
 * least minimumRingSize points. Past MAX_RING_SIZE total points the per-host count has to shrink with N,
 * and disruption degrades to Envoy's.
 */
class ConsistentHashBalancer extends BaseBalancer {
  readonly kind = 'CONSISTENT_HASH';
  private ringHashes = new Float64Array(0);
  private ringOwners = new Int32Array(0);

  constructor(private readonly hash: ConsistentHashSettings, endpoints: readonly Endpoint[], random: RandomSource) {
    super(endpoints, random);
    // The base constructor's rebuild ran before this.hash was assigned; minimumRingSize may have been missed.
    this.rebuild();
  }

  get ringSize(): number {
    return this.ringHashes.length;
  }

  protected override rebuild(): void {
    const n = this.endpoints.length;
    if (n === 0 || this.hash === undefined) {
      this.ringHashes = new Float64Array(0);
      this.ringOwners = new Int32Array(0);
      return;
    }
    // Istio leaves 0 to mean "unset".
    const minimum = this.hash.minimumRingSize || DEFAULT_MINIMUM_RING_SIZE;
    const perHost = Math.max(1, Math.min(minimum, Math.floor(MAX_RING_SIZE / n)));
    const points: Array<{ h: number; owner: number; id: string }> = [];
    this.endpoints.forEach((ep, owner) => {
      for (let i = 0; i < perHost; i++) points.push({ h: hash53(`${ep.id}_${i}`), owner, id: ep.id });
    });
    // Ties are astronomically rare with 53-bit hashes, but breaking them by id keeps the ring independent of input order.
    points.sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.ringHashes = Float64Array.from(points, (p) => p.h);
    this.ringOwners = Int32Array.from(points, (p) => p.owner);
  }

  pick(ctx: PickContext): Endpoint | null {
    const key = hashKey(this.hash, ctx);
    if (key === undefined || this.ringHashes.length === 0) return this.roundRobin(ctx.excluded);
    const h = hash53(key);
    const len = this.ringHashes.length;
    let lo = 0;
    let hi = len;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ringHashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    // Walking clockwise past excluded hosts sends their keys where they would go if the host were gone,
    // so an ejection disturbs nobody else's affinity.
    const tried = new Set<number>();
    for (let step = 0; step < len && tried.size < this.endpoints.length; step++) {
      const owner = this.ringOwners[(lo + step) % len];
      if (tried.has(owner)) continue;
      tried.add(owner);
      const ep = this.endpoints[owner];
      if (!ctx.excluded?.has(ep.id)) return ep;
    }
    return null;
  }
}

function first(v: MultiValue): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.length > 0 ? v.join(',') : undefined;
}

/** The request's hash key, or undefined when the request doesn't carry it. */
export function hashKey(hash: ConsistentHashSettings, ctx: PickContext): string | undefined {
  if (hash.httpHeaderName !== undefined) return first(ctx.headers[hash.httpHeaderName.toLowerCase()]);
  if (hash.httpCookie !== undefined) return cookieValue(first(ctx.headers.cookie), hash.httpCookie.name) ?? ctx.generatedCookie;
  if (hash.useSourceIp) return ctx.sourceIp || undefined;
  if (hash.httpQueryParameterName !== undefined) {
    if (ctx.query !== undefined) return first(ctx.query[hash.httpQueryParameterName]);
    const q = ctx.path?.indexOf('?') ?? -1;
    return q < 0 ? undefined : new URLSearchParams(ctx.path!.slice(q + 1)).get(hash.httpQueryParameterName) ?? undefined;
  }
  return undefined;
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  // Node joins repeated Cookie headers with "; ", so one split covers both forms.
  for (const part of header.split(/;\s*|,\s*/)) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      // RFC 6265: a cookie-value may be wrapped in DQUOTEs, which are not part of the value.
      const v = part.slice(eq + 1).trim();
      return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
    }
  }
  return undefined;
}

/**
 * cyrb53: two interleaved 32-bit multiplicative hashes combined into 53 bits, the widest integer a
 * double holds exactly. 32 bits would make ring-point collisions likely at a few hundred hosts.
 */
export function hash53(s: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}
