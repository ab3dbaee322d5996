/**
 * A cluster, in Envoy's sense: the endpoints of one backend service port (narrowed to a subset
 * when a route names one), with the DestinationRule's traffic policy for it: load balancer,
 * connection-pool limits, outlier detection, and the connection pools themselves.
 */
import type { DestinationRuleSpec, TrafficPolicy } from '../../lib/api/kinds/networking';
import { parseDurationMs } from '../../lib/api/meta';
import type { Snapshot, WorkloadView } from '../../lib/mesh/snapshot';
import type { TcpKeepalive, UpstreamConnector, UpstreamTarget } from './connector';
import { createConnectionPoolLimits, type ConnectionPoolLimits } from './connection-pool-limits';
import { createLoadBalancer, type Endpoint, type LoadBalancer, type PickContext } from './load-balancer';
import { createOutlierDetector, type OutlierDetector } from './outlier-detection';
import type { RandomSource } from './weighted-pick';
import { Http1Pool } from './upstream-http1';
import { Http2Pool } from './upstream-http2';

export interface ClusterEndpoint extends Endpoint {
  readonly target: UpstreamTarget;
}

export interface ClusterStats {
  name: string;
  endpoints: number;
  requests: number;
  /** Retry attempts made. */
  retries: number;
  /** Retries the policy allowed but the retry budget refused. */
  retriesSuppressed: number;
  overflows: number;
  connectFailures: number;
  ejected: string[];
}

/**
 * Labels a workload is matched on for DestinationRule subsets: its own labels; from a control
 * plane that does not send them yet (empty map), the canonical name and revision it derives from
 * the app/version labels stand in for `app` and `version`.
 */
export function workloadLabels(w: WorkloadView): Readonly<Record<string, string>> {
  const own = w.msg.labels;
  if (own && Object.keys(own).length > 0) return own;
  const { canonicalName: name, canonicalRevision: rev } = w.msg;
  return {
    app: name,
    version: rev,
    'app.kubernetes.io/name': name,
    'app.kubernetes.io/version': rev,
    'service.istio.io/canonical-name': name,
    'service.istio.io/canonical-revision': rev,
  };
}

function labelsMatch(have: Readonly<Record<string, string>>, want: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

export interface ClusterKey {
  hostname: string;
  port: number;
  subset?: string;
}

export function clusterName(k: ClusterKey): string {
  return `outbound|${k.port}|${k.subset ?? ''}|${k.hostname}`;
}

/** DestinationRules by host, with Istio's precedence: exact host, then the longest wildcard. */
export class DestinationRuleIndex {
  private readonly exact = new Map<string, DestinationRuleSpec>();
  private readonly wildcard: Array<{ suffix: string; spec: DestinationRuleSpec }> = [];

  constructor(rules: ReadonlyArray<{ namespace: string; name: string; spec: unknown }>, clusterDomain: string) {
    // A rule in its service's own namespace first (Istio looks there before other namespaces), then
    // by name, so duplicates resolve the same way on every waypoint replica.
    const own = (r: { namespace: string; spec: unknown }) => {
      const host = resolveHost((r.spec as DestinationRuleSpec).host, r.namespace, clusterDomain);
      return host.split('.')[1] === r.namespace ? 1 : 0;
    };
    const sorted = [...rules].sort((a, b) => own(b) - own(a) || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    for (const r of sorted) {
      const spec = r.spec as DestinationRuleSpec;
      if (spec.host.startsWith('*')) {
        const suffix = spec.host.slice(1);
        const i = this.wildcard.findIndex((w) => w.suffix === suffix);
        if (i < 0) this.wildcard.push({ suffix, spec });
        else this.wildcard[i] = { suffix, spec: mergeRules(this.wildcard[i].spec, spec) };
      } else {
        const host = resolveHost(spec.host, r.namespace, clusterDomain);
        const prev = this.exact.get(host);
        this.exact.set(host, prev ? mergeRules(prev, spec) : spec);
      }
    }
    this.wildcard.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  find(hostname: string): DestinationRuleSpec | undefined {
    return this.exact.get(hostname) ?? this.wildcard.find((w) => hostname.endsWith(w.suffix))?.spec;
  }
}

/**
 * Several DestinationRules for one host are merged as Istio merges them: the subsets of all (the
 * first by name wins a repeated subset name), and the top-level traffic policy of the first rule
 * that has one. Keeping only one rule would leave subsets the routes name undefined here.
 */
function mergeRules(first: DestinationRuleSpec, next: DestinationRuleSpec): DestinationRuleSpec {
  const subsets = [...(first.subsets ?? [])];
  for (const s of next.subsets ?? []) if (!subsets.some((x) => x.name === s.name)) subsets.push(s);
  const trafficPolicy = first.trafficPolicy ?? next.trafficPolicy;
  return { ...first, ...(subsets.length > 0 ? { subsets } : {}), ...(trafficPolicy !== undefined ? { trafficPolicy } : {}) };
}

export function resolveHost(host: string, ns: string, domain: string): string {
  const labels = host.split('.');
  if (labels.length === 1) return `${host}.${ns}.svc.${domain}`;
  if (labels.length === 2) return `${labels[0]}.${labels[1]}.svc.${domain}`;
  return host;
}

/** The waypoint's settings where a DestinationRule sets none. */
export interface ClusterDefaults {
  connectTimeoutMs: number;
  tcpIdleTimeoutMs: number;
}

/** Node timers overflow past 2^31-1 ms (and then fire after 1 ms): longer durations mean "about never". */
const MAX_TIMER_MS = 2_147_483_647;

function durationMs(d: string | undefined): number | undefined {
  return d === undefined ? undefined : Math.min(parseDurationMs(d), MAX_TIMER_MS);
}

/** The kernel counts keepalive in whole seconds (at most 32767); sub-second durations round up to 1 s. */
function keepaliveOf(k: { time?: string; interval?: string; probes?: number } | undefined): TcpKeepalive | undefined {
  if (k === undefined) return undefined;
  const secs = (d: string | undefined) => (d === undefined ? undefined : Math.min(32_767, Math.max(1, Math.ceil(parseDurationMs(d) / 1000))));
  return { idleSeconds: secs(k.time), intervalSeconds: secs(k.interval), probes: k.probes === undefined ? undefined : Math.min(127, k.probes) };
}

type PolicyFields = Pick<TrafficPolicy, 'loadBalancer' | 'connectionPool' | 'outlierDetection'>;

function overlay(base: PolicyFields, tp: TrafficPolicy | undefined, port: number): PolicyFields {
  if (!tp) return base;
  const out: PolicyFields = {
    loadBalancer: tp.loadBalancer ?? base.loadBalancer,
    connectionPool: tp.connectionPool ?? base.connectionPool,
    outlierDetection: tp.outlierDetection ?? base.outlierDetection,
  };
  const pl = tp.portLevelSettings?.find((p) => p.port.number === port);
  if (!pl) return out;
  return {
    loadBalancer: pl.loadBalancer ?? out.loadBalancer,
    connectionPool: pl.connectionPool ?? out.connectionPool,
    outlierDetection: pl.outlierDetection ?? out.outlierDetection,
  };
}

/** Istio's merge order: rule, its port-level settings, the subset's, the subset's port-level settings. */
export function effectivePolicy(dr: DestinationRuleSpec | undefined, port: number, subset: string | undefined): { policy: PolicyFields; subsetLabels: Readonly<Record<string, string>> | null } {
  let policy = overlay({}, dr?.trafficPolicy, port);
  if (subset === undefined) return { policy, subsetLabels: {} };
  const s = dr?.subsets?.find((x) => x.name === subset);
  if (!s) return { policy, subsetLabels: null };
  policy = overlay(policy, s.trafficPolicy, port);
  return { policy, subsetLabels: s.labels ?? {} };
}

export class Cluster {
  readonly name: string;
  private endpointsById = new Map<string, ClusterEndpoint>();
  private lb: LoadBalancer;
  private outlier: OutlierDetector;
  private limits: { http1: ConnectionPoolLimits; http2: ConnectionPoolLimits; tcp: ConnectionPoolLimits };
  private policyJson = '';
  private tickTimer: NodeJS.Timeout | null = null;
  readonly http1: Http1Pool;
  readonly http2: Http2Pool;
  /** The subset is not defined by any DestinationRule: Envoy has no such cluster (503 NC). */
  undefinedSubset = false;
  /** No such service in the mesh, or it has no such port: a route naming it is an invalid reference. */
  unknownBackend = false;
  /**
   * consistentHash.httpCookie with a ttl: a request without the cookie gets one generated, so that a
   * new client becomes sticky (Istio: "a cookie with the TTL will be generated if the cookie is not
   * present"; ttl 0 makes it a session cookie).
   */
  stickyCookie: { name: string; path: string; maxAgeSec: number | null } | undefined;
  /** The backend port's application protocol, when the Service declares one: it decides the upstream protocol. */
  upstreamProtocol: 'http1' | 'http2' | undefined;
  readonly counters = { requests: 0, retries: 0, retriesSuppressed: 0, overflows: 0, connectFailures: 0 };
  /** Opening a stream to an endpoint: connectionPool.tcp.connectTimeout, else the waypoint's default. */
  connectTimeoutMs: number;
  /** Opaque TCP with no bytes either way for this long is closed: connectionPool.tcp.idleTimeout, else 1 h as in Istio. */
  tcpIdleTimeoutMs: number;
  /** Retries in flight at once to this cluster (connectionPool.http.maxRetries); 0 = only the retry budget limits them. */
  maxConcurrentRetries = 0;
  /** connectionPool.http.h2UpgradePolicy UPGRADE: HTTP/1.1 requests go to the endpoints as HTTP/2. */
  h2Upgrade = false;
  /** connectionPool.tcp.tcpKeepalive, for the connections this cluster opens. */
  keepalive: TcpKeepalive | undefined;
  /** connectionPool.tcp.maxConnectionDuration: connections (pooled and opaque TCP) live at most this long; 0 = no limit. */
  maxConnectionDurationMs = 0;
  /** connectionPool.http.useClientProtocol: endpoints are spoken to in the caller's protocol, whatever the port declares. */
  useClientProtocol = false;

  constructor(
    readonly key: ClusterKey,
    connector: UpstreamConnector,
    private readonly random: RandomSource,
    private readonly now: () => number,
    private readonly defaults: ClusterDefaults,
  ) {
    this.name = clusterName(key);
    this.connectTimeoutMs = defaults.connectTimeoutMs;
    this.tcpIdleTimeoutMs = defaults.tcpIdleTimeoutMs;
    this.lb = createLoadBalancer(undefined, [], { random });
    this.outlier = createOutlierDetector(undefined, [], { now });
    this.limits = this.makeLimits(undefined);
    this.http1 = new Http1Pool(connector, this.http1Options(undefined));
    this.http2 = new Http2Pool(connector, this.http2Options(undefined));
  }

  private makeLimits(p: PolicyFields['connectionPool']) {
    return {
      http1: createConnectionPoolLimits(p, { protocol: 'http1' }),
      http2: createConnectionPoolLimits(p, { protocol: 'http2' }),
      tcp: createConnectionPoolLimits({ tcp: p?.tcp }, { protocol: 'http2' }),
    };
  }

  // Both read the fields update() derived from the same policy just before.
  private http1Options(p: PolicyFields['connectionPool']) {
    return {
      connectTimeoutMs: this.connectTimeoutMs,
      maxConnections: p?.tcp?.maxConnections ?? 0,
      maxRequestsPerConnection: p?.http?.maxRequestsPerConnection ?? 0,
      // Istio's default is 1 h; without one set, 4 s stays below common servers' keep-alive timeouts
      // (Node's is 5 s) so a pooled connection is not reused just as the server closes it.
      idleTimeoutMs: durationMs(p?.http?.idleTimeout) ?? 4_000,
      keepalive: this.keepalive,
      maxConnectionDurationMs: this.maxConnectionDurationMs,
    };
  }

  private http2Options(p: PolicyFields['connectionPool']) {
    return {
      connectTimeoutMs: this.connectTimeoutMs,
      maxRequestsPerConnection: p?.http?.maxRequestsPerConnection ?? 0,
      idleTimeoutMs: durationMs(p?.http?.idleTimeout) ?? 60_000,
      maxConcurrentStreams: p?.http?.maxConcurrentStreams ?? 0,
      keepalive: this.keepalive,
      maxConnectionDurationMs: this.maxConnectionDurationMs,
    };
  }

  /** The protocol spoken to the endpoints for a request that came in as `caller`. */
  protocolFor(caller: 'http1' | 'http2'): 'http1' | 'http2' {
    // As in Istio, useClientProtocol makes h2UpgradePolicy ineffective.
    if (this.useClientProtocol) return caller;
    if (this.h2Upgrade) return 'http2';
    // The backend port's declared protocol wins (an HTTP/2 caller to an HTTP/1.1-only app works); else the caller's.
    return this.upstreamProtocol ?? caller;
  }

  /**
   * Applies a new snapshot / DestinationRule. Balancer and detector state survive when the policy
   * is unchanged (only endpoints move), so a config push does not forget ejections or in-flight counts.
   */
  update(mesh: Snapshot, dr: DestinationRuleSpec | undefined): void {
    const { policy, subsetLabels } = effectivePolicy(dr, this.key.port, this.key.subset);
    this.undefinedSubset = subsetLabels === null;
    const eps: ClusterEndpoint[] = [];
    const svc = mesh.servicesByHost.get(this.key.hostname);
    const svcPort = svc?.msg.ports.find((p) => p.servicePort === this.key.port);
    this.unknownBackend = svcPort === undefined;
    const app = svcPort?.appProtocol;
    this.upstreamProtocol = app === 'http' ? 'http1' : app === 'http2' ? 'http2' : undefined;
    for (const e of svc?.endpoints ?? []) {
      if (subsetLabels === null || !labelsMatch(workloadLabels(e.workload), subsetLabels)) continue;
      const address = e.workload.ips[0];
      if (address === undefined) continue;
      const targetPort = e.ports.get(this.key.port) ?? this.key.port;
      eps.push({ id: `${e.workload.key}:${targetPort}`, address, target: { workload: e.workload, address, port: targetPort } });
    }
    this.endpointsById = new Map(eps.map((e) => [e.id, e]));
    const json = JSON.stringify(policy);
    if (json !== this.policyJson) {
      this.lb = createLoadBalancer(policy.loadBalancer, eps, { random: this.random });
      const cookie = policy.loadBalancer?.consistentHash?.httpCookie;
      const ttlMs = durationMs(cookie?.ttl);
      this.stickyCookie = cookie && ttlMs !== undefined ? { name: cookie.name, path: cookie.path ?? '/', maxAgeSec: ttlMs === 0 ? null : Math.max(1, Math.round(ttlMs / 1000)) } : undefined;
      this.outlier = createOutlierDetector(policy.outlierDetection, eps.map((e) => e.id), { now: this.now });
      // Recorded only once the policy was built: one that threw must not pass for applied next time.
      this.policyJson = json;
      this.limits = this.makeLimits(policy.connectionPool);
      const pool = policy.connectionPool;
      this.connectTimeoutMs = durationMs(pool?.tcp?.connectTimeout) ?? this.defaults.connectTimeoutMs;
      this.tcpIdleTimeoutMs = durationMs(pool?.tcp?.idleTimeout) ?? this.defaults.tcpIdleTimeoutMs;
      this.maxConcurrentRetries = pool?.http?.maxRetries ?? 0;
      this.h2Upgrade = pool?.http?.h2UpgradePolicy === 'UPGRADE';
      this.keepalive = keepaliveOf(pool?.tcp?.tcpKeepalive);
      this.maxConnectionDurationMs = durationMs(pool?.tcp?.maxConnectionDuration) ?? 0;
      this.useClientProtocol = pool?.http?.useClientProtocol === true;
      this.http1.configure(this.http1Options(policy.connectionPool));
      this.http2.configure(this.http2Options(policy.connectionPool));
      if (this.tickTimer) clearInterval(this.tickTimer);
      this.tickTimer = null;
      if (policy.outlierDetection) {
        const od = this.outlier;
        this.tickTimer = setInterval(() => od.tick(), od.intervalMs).unref();
      }
    } else {
      this.lb.setEndpoints(eps);
      this.outlier.setEndpoints(eps.map((e) => e.id));
    }
    const ids = new Set(this.endpointsById.keys());
    this.http1.retain(ids);
    this.http2.retain(ids);
  }

  get size(): number {
    return this.endpointsById.size;
  }

  /** Picks a healthy endpoint, avoiding those this request already tried when there is any other. */
  pick(ctx: Omit<PickContext, 'excluded'>, tried: ReadonlySet<string>): ClusterEndpoint | null {
    const ejected = this.outlier.ejected();
    if (ejected.length === 0 && tried.size === 0) {
      const only = this.lb.pick(ctx);
      return only === null ? null : (this.endpointsById.get(only.id) ?? null);
    }
    const excluded = new Set<string>(ejected);
    for (const t of tried) excluded.add(t);
    let ep = this.lb.pick({ ...ctx, excluded });
    if (ep === null && tried.size > 0) ep = this.lb.pick({ ...ctx, excluded: new Set(ejected) });
    return ep === null ? null : (this.endpointsById.get(ep.id) ?? null);
  }

  admit(protocol: 'http1' | 'http2' | 'tcp') {
    const a = this.limits[protocol].tryStart();
    if (!a.ok) this.counters.overflows++;
    return a;
  }

  onStart(ep: ClusterEndpoint): void {
    this.lb.onStart(ep);
  }

  onEnd(ep: ClusterEndpoint): void {
    this.lb.onEnd(ep);
  }

  /** Feeds passive health checking with one attempt's result. */
  report(ep: ClusterEndpoint, r: { status?: number; connectFailure?: boolean }): void {
    if (r.connectFailure) this.counters.connectFailures++;
    this.outlier.onResult(ep.id, r);
  }

  stats(): ClusterStats {
    return { name: this.name, endpoints: this.size, ...this.counters, ejected: this.outlier.ejected() };
  }

  /** Dropped from the manager: stops its timer; pools were emptied by update() and drain on their own. */
  retire(): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.tickTimer = null;
  }

  close(): void {
    this.retire();
    this.http1.close();
    this.http2.close();
  }
}

export class ClusterManager {
  private readonly clusters = new Map<string, Cluster>();
  private mesh: Snapshot;
  private drs: DestinationRuleIndex;

  constructor(
    private readonly connector: UpstreamConnector,
    private readonly random: RandomSource,
    private readonly now: () => number,
    private readonly defaults: ClusterDefaults,
    mesh: Snapshot,
  ) {
    this.mesh = mesh;
    this.drs = new DestinationRuleIndex([], 'cluster.local');
  }

  update(mesh: Snapshot, drs: DestinationRuleIndex): void {
    this.mesh = mesh;
    this.drs = drs;
    for (const [name, c] of this.clusters) {
      c.update(mesh, drs.find(c.key.hostname));
      // The service is gone: forget its cluster (and its outlier timer), or every service that ever
      // existed would stay in memory. update() above already emptied it, so its pools only finish
      // what is in flight; a request still holding it completes, and get() builds a fresh one if
      // the service comes back.
      if (!mesh.servicesByHost.has(c.key.hostname)) {
        c.retire();
        this.clusters.delete(name);
      }
    }
  }

  get(key: ClusterKey): Cluster {
    const name = clusterName(key);
    let c = this.clusters.get(name);
    if (!c) {
      c = new Cluster(key, this.connector, this.random, this.now, this.defaults);
      c.update(this.mesh, this.drs.find(key.hostname));
      this.clusters.set(name, c);
    }
    return c;
  }

  stats(): ClusterStats[] {
    return [...this.clusters.values()].map((c) => c.stats());
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
    this.clusters.clear();
  }
}
