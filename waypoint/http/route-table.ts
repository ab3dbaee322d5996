/**
 * The waypoint's L7 router: compiled once per WaypointServiceConfig, then evaluated per request.
 * Pure and synchronous so it can run on the request path and be tested without sockets.
 *
 * Which API decides:
 *  - If any HTTPRoute or GRPCRoute is attached to the service, those routes alone decide and
 *    VirtualServices for the same host are ignored. The Gateway API is the mesh's primary API, and
 *    mixing two precedence models (spec-ordered vs first-match) for one service would make the
 *    outcome depend on which object a reader happens to look at.
 *  - Otherwise VirtualService http[] routes decide, first match wins.
 *  - With no route at all for the request's port, traffic goes to the service itself.
 *
 * A request that routes exist for but that none matches yields null: the caller answers 404.
 *
 * GRPCRoutes only see requests with a gRPC content-type: a GRPCRoute rule without matches means
 * "all gRPC traffic", and letting it swallow plain HTTP would break HTTPRoutes on the same service.
 * HTTPRoute/GRPCRoute `hostnames` are not consulted: for a Service parent (GAMMA) the service is
 * already the host, and the control plane only sends routes attached to it.
 */
import type {
  BackendRef,
  GRPCRouteRule,
  GRPCRouteSpec,
  HeaderModifier,
  HTTPRouteFilter,
  HTTPRouteMatch,
  HTTPRouteRule,
  HTTPRouteSpec,
  ParentRef,
} from '../../lib/api/kinds/gateway';
import type { Destination, HeaderOperations, HTTPRoute as VSHTTPRoute, StringMatch, VirtualServiceSpec } from '../../lib/api/kinds/networking';
import { parseDurationMs } from '../../lib/api/meta';
import { re2FullMatcher } from '../../lib/util/re2';
import { DestinationRuleIndex } from '../upstream/cluster';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';

// ---------------------------------------------------------------------------------------------
// Public types

export interface RouteRequest {
  method: string;
  /** Raw request target: path plus optional query string. */
  path: string;
  /** Lowercase header names; HTTP/2 pseudo-headers (":authority", ":scheme") are honoured when present. */
  headers: Readonly<Record<string, string | string[]>>;
  /** The request's authority when it is not among `headers` (HTTP/1 Host kept apart): matched as ":authority" and "host". */
  authority?: string;
  /** The service port the request was addressed to. */
  port: number;
  /** Falls back to ":scheme", then "x-forwarded-proto", then "http". */
  scheme?: string;
  /** The caller's identity, for VirtualService sourceNamespace / sourceLabels; without it such matches fail closed. */
  source?: { namespace?: string; labels?: Readonly<Record<string, string>> };
}

export type RouteKind = 'HTTPRoute' | 'GRPCRoute' | 'VirtualService' | 'Default';

export interface RouteRef {
  kind: RouteKind;
  namespace: string;
  name: string;
  ruleIndex: number;
  ruleName?: string;
}

export interface HeaderMutation {
  set: ReadonlyArray<{ name: string; value: string }>;
  add: ReadonlyArray<{ name: string; value: string }>;
  remove: readonly string[];
}

export type PathRewrite =
  | { type: 'ReplaceFullPath'; value: string }
  /** `prefix` is the prefix the request matched, which the caller swaps for `value`. */
  | { type: 'ReplacePrefixMatch'; prefix: string; value: string; /** The match ignored case (VirtualService ignoreUriCase). */ ignoreCase?: boolean };

export interface Redirect {
  scheme?: 'http' | 'https';
  hostname?: string;
  port?: number;
  /** Istio only: where the redirect's port comes from when `port` is not given. */
  derivePort?: 'FROM_PROTOCOL_DEFAULT' | 'FROM_REQUEST_PORT';
  /** Gateway API RequestRedirect: without scheme or port, the port is the listener's (the service port). */
  listenerPort?: boolean;
  path?: PathRewrite;
  statusCode: number;
}

export interface Rewrite {
  hostname?: string;
  path?: PathRewrite;
}

export interface BackendTarget {
  /** Fully qualified for in-cluster services ("reviews.default.svc.cluster.local"), as written otherwise. */
  hostname: string;
  name: string;
  /** Empty for hosts outside the cluster. */
  namespace: string;
  port: number;
  /** `labels` is null when no DestinationRule in the config defines the subset: the caller answers 503, as Istio does. */
  subset?: { name: string; labels: Readonly<Record<string, string>> | null };
}

export interface RouteBackend extends BackendTarget {
  weight: number;
  /** Per-backend header changes (Gateway API backendRef filters, Istio route[].headers). */
  requestHeaders?: HeaderMutation;
  responseHeaders?: HeaderMutation;
}

export interface Mirror {
  backend: BackendTarget;
  /** 0-100, possibly fractional. */
  percent: number;
}

export interface RouteFilters {
  requestHeaders?: HeaderMutation;
  responseHeaders?: HeaderMutation;
  redirect?: Redirect;
  rewrite?: Rewrite;
  mirrors: readonly Mirror[];
}

export interface RetryPolicy {
  attempts: number;
  perTryTimeoutMs?: number;
  retryOn: readonly string[];
  codes: readonly number[];
  backoffBaseMs?: number;
  /** Retries may go back to endpoints this request already tried (Istio retryIgnorePreviousHosts: false). */
  retryPreviousHosts?: boolean;
}

export interface FaultPolicy {
  delay?: { ms: number; percent: number };
  /** `grpcStatus` is set for gRPC aborts; `status` is then 200, the HTTP status gRPC errors travel with. */
  abort?: { status: number; grpcStatus?: number; percent: number };
}

export interface RouteMatch {
  route: RouteRef;
  backends: readonly RouteBackend[];
  filters: RouteFilters;
  /** Absent means no timeout: both APIs use "0s" to disable one. */
  timeouts: { requestMs?: number; perTryTimeoutMs?: number };
  retry?: RetryPolicy;
  fault?: FaultPolicy;
  /**
   * What to answer when no backend can be picked (none, or all weight 0): the Gateway API
   * requires 500, Istio answers 503 (no healthy upstream).
   */
  noBackendStatus: 500 | 503;
}

export interface RouteTable {
  match(req: RouteRequest): RouteMatch | null;
}

// ---------------------------------------------------------------------------------------------
// Request view, computed once per match call

interface RequestView {
  req: RouteRequest;
  path: string;
  query: ReadonlyMap<string, string>;
  header(name: string): string | undefined;
  isGrpc: boolean;
}

function viewOf(req: RouteRequest): RequestView {
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  const query = new Map<string, string>();
  if (q >= 0) {
    for (const part of req.path.slice(q + 1).split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      const k = decode(eq < 0 ? part : part.slice(0, eq));
      // The Gateway API leaves repeated parameters undefined; the first one is what Envoy matches.
      if (!query.has(k)) query.set(k, decode(eq < 0 ? '' : part.slice(eq + 1)));
    }
  }
  const header = (name: string): string | undefined => {
    const n = name.toLowerCase();
    if (req.authority !== undefined && (n === ':authority' || n === 'host')) return req.authority;
    const v = req.headers[n];
    // Repeated headers are matched as one comma-joined value, as Envoy does.
    return v === undefined ? undefined : Array.isArray(v) ? v.join(',') : v;
  };
  const ct = header('content-type');
  return { req, path, query, header, isGrpc: ct !== undefined && ct.toLowerCase().startsWith('application/grpc') };
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    // A malformed escape is the client's problem; matching it literally is the least surprising answer.
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// Shared compilation helpers

type Test = (r: RequestView) => boolean;

/** Regexes in both APIs are full matches with RE2 semantics (linear time: see lib/util/re2.ts). */
function fullMatch(pattern: string, ignoreCase = false): (v: string) => boolean {
  return re2FullMatcher(pattern, ignoreCase);
}

/** Element-wise prefix: "/foo" matches "/foo" and "/foo/bar" but not "/foobar"; a trailing "/" on the prefix is ignored. */
function pathPrefixTest(prefix: string): (p: string) => boolean {
  const p = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (p === '/') return () => true;
  return (path) => path === p || path.startsWith(`${p}/`);
}

function headerMutation(m: { set?: ReadonlyArray<{ name: string; value: string }>; add?: ReadonlyArray<{ name: string; value: string }>; remove?: readonly string[] }): HeaderMutation {
  // Lowercase names so the caller can apply them directly to Node's lowercase header objects.
  const pairs = (l?: ReadonlyArray<{ name: string; value: string }>) => (l ?? []).map((h) => ({ name: h.name.toLowerCase(), value: h.value }));
  return { set: pairs(m.set), add: pairs(m.add), remove: (m.remove ?? []).map((n) => n.toLowerCase()) };
}

function fromGatewayModifier(m: HeaderModifier | undefined): HeaderMutation | undefined {
  return m ? headerMutation(m) : undefined;
}

function fromIstioOperations(m: HeaderOperations | undefined): HeaderMutation | undefined {
  if (!m) return undefined;
  const pairs = (r?: Record<string, string>) => Object.entries(r ?? {}).map(([name, value]) => ({ name, value }));
  return headerMutation({ set: pairs(m.set), add: pairs(m.add), remove: m.remove });
}

/** Milliseconds, with "0s" meaning "no timeout" in both APIs. */
function timeoutMs(d: string | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = parseDurationMs(d);
  return ms === 0 ? undefined : ms;
}

// Istio's default retry conditions; the Gateway API leaves defaults to the implementation, and
// behaving like Istio keeps migrated configurations retrying the same way.
const DEFAULT_RETRY_ON = ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'] as const;
const DEFAULT_RETRY_CODES = [503] as const;
const DEFAULT_RETRY_ATTEMPTS = 2;

/**
 * Istio's retry policy for a route that configures none (a VirtualService route without
 * `retries`, an HTTPRoute rule without `retry`, a GRPCRoute, the service's default route): two
 * retries on connect failure, refused stream, gRPC unavailable/cancelled and 503. The retry budget
 * still bounds it, and a body that was not kept is never resent.
 */
const ISTIO_DEFAULT_RETRY: RetryPolicy = { attempts: DEFAULT_RETRY_ATTEMPTS, retryOn: DEFAULT_RETRY_ON, codes: DEFAULT_RETRY_CODES };

const GRPC_STATUS_CODES: Readonly<Record<string, number>> = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

/** A backend whose port is not known until the request arrives (Istio destinations without a port). */
interface PendingTarget extends Omit<BackendTarget, 'port'> {
  port?: number;
}
interface PendingBackend extends Omit<RouteBackend, 'port'> {
  port?: number;
}

/** A match template: everything except ports that follow the request. */
interface Compiled {
  route: RouteRef;
  backends: readonly PendingBackend[];
  filters: Omit<RouteFilters, 'mirrors'> & { mirrors: ReadonlyArray<{ backend: PendingTarget; percent: number }> };
  timeouts: RouteMatch['timeouts'];
  retry?: RetryPolicy;
  fault?: FaultPolicy;
  noBackendStatus: 500 | 503;
}

interface Entry {
  /** null: every port. */
  ports: ReadonlySet<number> | null;
  grpcOnly: boolean;
  test: Test;
  result: Compiled;
}

function resolve(c: Compiled, port: number): RouteMatch {
  const fix = <T extends { port?: number }>(t: T): T & { port: number } => ({ ...t, port: t.port ?? port });
  return {
    route: c.route,
    backends: c.backends.map(fix),
    filters: { ...c.filters, mirrors: c.filters.mirrors.map((m) => ({ backend: fix(m.backend), percent: m.percent })) },
    timeouts: c.timeouts,
    retry: c.retry,
    fault: c.fault,
    noBackendStatus: c.noBackendStatus,
  };
}

/** Names relative to the cluster: derived from the service's own hostname so a custom cluster domain just works. */
class Hosts {
  readonly domain: string;
  constructor(svc: WaypointServiceConfig['service']) {
    const prefix = `${svc.name}.${svc.namespace}.svc.`;
    this.domain = svc.hostname.startsWith(prefix) ? svc.hostname.slice(prefix.length) : 'cluster.local';
  }

  /** Istio's short-name rules, as the control plane applies them when choosing which objects apply. */
  resolve(host: string, ns: string): { hostname: string; name: string; namespace: string } {
    const labels = host.split('.');
    if (labels.length === 1) return this.service(host, ns);
    if (labels.length === 2) return this.service(labels[0], labels[1]);
    const suffix = `.svc.${this.domain}`;
    if (host.endsWith(suffix) && labels.length === 3 + this.domain.split('.').length) return this.service(labels[0], labels[1]);
    return { hostname: host, name: host, namespace: '' };
  }

  service(name: string, namespace: string): { hostname: string; name: string; namespace: string } {
    return { hostname: `${name}.${namespace}.svc.${this.domain}`, name, namespace };
  }
}

// ---------------------------------------------------------------------------------------------
// Gateway API: HTTPRoute and GRPCRoute

interface GatewayRouteObj {
  namespace: string;
  name: string;
}

/** The Gateway API breaks ties by creation time, then "{namespace}/{name}"; the config carries no timestamps, so the name decides. */
function byName(a: GatewayRouteObj, b: GatewayRouteObj): number {
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * Only a route in the Service's own namespace (a GAMMA producer route) routes its traffic. A route
 * in another namespace is a consumer route, meant for that namespace's callers only; this mesh
 * does not implement those, and applying one to every caller would let any namespace re-route
 * another's service. The control plane does not send them; this guards the waypoint too.
 */
function producerRoute(obj: { namespace: string }, cfg: WaypointServiceConfig): boolean {
  return obj.namespace === cfg.service.namespace;
}

/** A parentRef with a port narrows the route to that service port (GAMMA); one without opens all ports. */
function routePorts(parentRefs: readonly ParentRef[] | undefined, routeNs: string, svc: WaypointServiceConfig['service']): ReadonlySet<number> | null {
  const mine = (parentRefs ?? []).filter((p) => p.kind === 'Service' && p.name === svc.name && (p.namespace ?? routeNs) === svc.namespace);
  if (mine.length === 0 || mine.some((p) => p.port === undefined)) return null;
  return new Set(mine.map((p) => p.port as number));
}

function gatewayBackend(ref: BackendRef, routeNs: string, hosts: Hosts): RouteBackend {
  const svc = hosts.service(ref.name, ref.namespace ?? routeNs);
  const filters = ref.filters ?? [];
  return {
    ...svc,
    // Validation guarantees a port on Service backends.
    port: ref.port as number,
    weight: ref.weight,
    requestHeaders: fromGatewayModifier(filters.find((f) => f.type === 'RequestHeaderModifier')?.requestHeaderModifier),
    responseHeaders: fromGatewayModifier(filters.find((f) => f.type === 'ResponseHeaderModifier')?.responseHeaderModifier),
  };
}

function gatewayFilters(filters: readonly HTTPRouteFilter[] | undefined, matchedPrefix: string | undefined, routeNs: string, hosts: Hosts): Compiled['filters'] {
  const out: Compiled['filters'] & { mirrors: Array<{ backend: PendingTarget; percent: number }> } = { mirrors: [] };
  const pathMod = (p: { type: 'ReplaceFullPath' | 'ReplacePrefixMatch'; replaceFullPath?: string; replacePrefixMatch?: string } | undefined): PathRewrite | undefined => {
    if (!p) return undefined;
    if (p.type === 'ReplaceFullPath') return { type: 'ReplaceFullPath', value: p.replaceFullPath ?? '/' };
    // Validation allows ReplacePrefixMatch only on a rule with exactly one PathPrefix match, so the prefix is known here.
    return { type: 'ReplacePrefixMatch', prefix: matchedPrefix ?? '/', value: p.replacePrefixMatch ?? '/' };
  };
  for (const f of filters ?? []) {
    switch (f.type) {
      case 'RequestHeaderModifier':
        out.requestHeaders = fromGatewayModifier(f.requestHeaderModifier);
        break;
      case 'ResponseHeaderModifier':
        out.responseHeaders = fromGatewayModifier(f.responseHeaderModifier);
        break;
      case 'RequestRedirect': {
        const r = f.requestRedirect;
        if (r) out.redirect = { scheme: r.scheme, hostname: r.hostname, port: r.port, path: pathMod(r.path), statusCode: r.statusCode, listenerPort: true };
        break;
      }
      case 'URLRewrite': {
        const r = f.urlRewrite;
        if (r) out.rewrite = { hostname: r.hostname, path: pathMod(r.path) };
        break;
      }
      case 'RequestMirror': {
        const m = f.requestMirror;
        if (!m) break;
        const percent = m.percent ?? (m.fraction ? (m.fraction.numerator / m.fraction.denominator) * 100 : 100);
        const svc = hosts.service(m.backendRef.name, m.backendRef.namespace ?? routeNs);
        out.mirrors.push({ backend: { ...svc, port: m.backendRef.port }, percent });
        break;
      }
    }
  }
  return out;
}

function gatewayRetry(r: HTTPRouteRule['retry'], perTryTimeoutMs: number | undefined): RetryPolicy | undefined {
  if (!r) return perTryTimeoutMs === undefined ? ISTIO_DEFAULT_RETRY : { ...ISTIO_DEFAULT_RETRY, perTryTimeoutMs };
  const attempts = r.attempts ?? DEFAULT_RETRY_ATTEMPTS;
  if (attempts === 0) return undefined;
  return {
    attempts,
    perTryTimeoutMs,
    retryOn: [...DEFAULT_RETRY_ON],
    codes: r.codes && r.codes.length > 0 ? [...r.codes] : [...DEFAULT_RETRY_CODES],
    backoffBaseMs: r.backoff !== undefined ? parseDurationMs(r.backoff) : undefined,
  };
}

function headerTests(hs: HTTPRouteMatch['headers']): Test[] {
  return (hs ?? []).map((h) => {
    const ok = h.type === 'RegularExpression' ? fullMatch(h.value) : (v: string) => v === h.value;
    return (r: RequestView) => {
      const v = r.header(h.name);
      return v !== undefined && ok(v);
    };
  });
}

/** Sort key for Gateway API precedence; compared element by element, larger wins. */
type Rank = readonly number[];

function compareRank(a: Rank, b: Rank): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (b[i] ?? 0) - (a[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

interface Ranked {
  rank: Rank;
  obj: GatewayRouteObj;
  ruleIndex: number;
  matchIndex: number;
  entry: Entry;
}

function byPrecedence(a: Ranked, b: Ranked): number {
  return compareRank(a.rank, b.rank) || byName(a.obj, b.obj) || a.ruleIndex - b.ruleIndex || a.matchIndex - b.matchIndex;
}

// Exact > PathPrefix > RegularExpression: the Gateway API leaves regex precedence to implementations, and Istio ranks it last.
const PATH_RANK = { Exact: 3, PathPrefix: 2, RegularExpression: 1 } as const;

function compileHTTPRoutes(cfg: WaypointServiceConfig, hosts: Hosts): Ranked[] {
  const out: Ranked[] = [];
  for (const obj of cfg.httpRoutes) {
    if (!producerRoute(obj, cfg)) continue;
    // The control plane only forwards validated specs, with defaults applied.
    const spec = obj.spec as HTTPRouteSpec;
    const ports = routePorts(spec.parentRefs, obj.namespace, cfg.service);
    spec.rules.forEach((rule, ruleIndex) => {
      const backends = (rule.backendRefs ?? []).map((b) => gatewayBackend(b, obj.namespace, hosts));
      const requestMs = timeoutMs(rule.timeouts?.request);
      const perTryTimeoutMs = timeoutMs(rule.timeouts?.backendRequest);
      const singlePrefix = rule.matches.length === 1 && rule.matches[0].path.type === 'PathPrefix' ? rule.matches[0].path.value : undefined;
      const result: Compiled = {
        route: { kind: 'HTTPRoute', namespace: obj.namespace, name: obj.name, ruleIndex, ruleName: rule.name },
        backends,
        filters: gatewayFilters(rule.filters, singlePrefix, obj.namespace, hosts),
        timeouts: { requestMs, perTryTimeoutMs },
        retry: gatewayRetry(rule.retry, perTryTimeoutMs),
        noBackendStatus: 500,
      };
      rule.matches.forEach((m, matchIndex) => {
        const p = m.path;
        const pathTest =
          p.type === 'Exact' ? (s: string) => s === p.value : p.type === 'PathPrefix' ? pathPrefixTest(p.value) : fullMatch(p.value);
        const tests: Test[] = [(r) => pathTest(r.path)];
        if (m.method) tests.push((r) => r.req.method === m.method);
        tests.push(...headerTests(m.headers));
        for (const q of m.queryParams ?? []) {
          const ok = q.type === 'RegularExpression' ? fullMatch(q.value) : (v: string) => v === q.value;
          tests.push((r) => {
            const v = r.query.get(q.name);
            return v !== undefined && ok(v);
          });
        }
        // "/foo/" and "/foo" are the same prefix, so they must rank the same.
        const pathLen = p.type === 'PathPrefix' && p.value.length > 1 && p.value.endsWith('/') ? p.value.length - 1 : p.value.length;
        out.push({
          rank: [PATH_RANK[p.type], pathLen, m.method ? 1 : 0, m.headers?.length ?? 0, m.queryParams?.length ?? 0],
          obj,
          ruleIndex,
          matchIndex,
          entry: { ports, grpcOnly: false, test: (r) => tests.every((t) => t(r)), result },
        });
      });
    });
  }
  return out.sort(byPrecedence);
}

type GRPCMatch = NonNullable<GRPCRouteRule['matches']>[number];

function compileGRPCRoutes(cfg: WaypointServiceConfig, hosts: Hosts): Ranked[] {
  const out: Ranked[] = [];
  for (const obj of cfg.grpcRoutes) {
    if (!producerRoute(obj, cfg)) continue;
    const spec = obj.spec as GRPCRouteSpec;
    const ports = routePorts(spec.parentRefs, obj.namespace, cfg.service);
    (spec.rules ?? [{}]).forEach((rule: GRPCRouteRule, ruleIndex) => {
      const result: Compiled = {
        route: { kind: 'GRPCRoute', namespace: obj.namespace, name: obj.name, ruleIndex, ruleName: rule.name },
        backends: (rule.backendRefs ?? []).map((b) => gatewayBackend(b, obj.namespace, hosts)),
        filters: gatewayFilters(rule.filters, undefined, obj.namespace, hosts),
        timeouts: {},
        retry: ISTIO_DEFAULT_RETRY,
        // The GRPCRoute spec: traffic with no valid backend gets UNAVAILABLE, which 503 maps to.
        noBackendStatus: 503,
      };
      // A rule without matches matches every gRPC request.
      const matches: GRPCMatch[] = rule.matches && rule.matches.length > 0 ? rule.matches : [{}];
      matches.forEach((m, matchIndex) => {
        const tests: Test[] = [];
        const mm = m.method;
        // Rank per the GRPCRoute spec (service characters, then method characters, then headers), with
        // exact names above regexes so a literal name is never shadowed by a pattern of the same length.
        const part = (v: string | undefined): [number, number] => (v === undefined ? [0, 0] : [mm?.type === 'RegularExpression' ? 1 : 2, v.length]);
        if (mm) {
          const svcOk = mm.service === undefined ? () => true : mm.type === 'RegularExpression' ? fullMatch(mm.service) : (v: string) => v === mm.service;
          const methodOk = mm.method === undefined ? () => true : mm.type === 'RegularExpression' ? fullMatch(mm.method) : (v: string) => v === mm.method;
          tests.push((r) => {
            const g = /^\/([^/]+)\/([^/]+)$/.exec(r.path);
            return g !== null && svcOk(g[1]) && methodOk(g[2]);
          });
        }
        tests.push(...headerTests(m.headers));
        out.push({
          rank: [...part(mm?.service), ...part(mm?.method), m.headers?.length ?? 0],
          obj,
          ruleIndex,
          matchIndex,
          entry: { ports, grpcOnly: true, test: (r) => tests.every((t) => t(r)), result },
        });
      });
    });
  }
  return out.sort(byPrecedence);
}

// ---------------------------------------------------------------------------------------------
// Istio: VirtualService

type VSMatch = NonNullable<VSHTTPRoute['match']>[number];

/** `{}` (no field set) tests presence: Istio's way of saying "header is present". */
function istioStringTest(m: StringMatch, ignoreCase = false): (v: string | undefined) => boolean {
  const fold = (s: string) => (ignoreCase ? s.toLowerCase() : s);
  if (m.exact !== undefined) {
    const want = fold(m.exact);
    return (v) => v !== undefined && fold(v) === want;
  }
  if (m.prefix !== undefined) {
    const want = fold(m.prefix);
    return (v) => v !== undefined && fold(v).startsWith(want);
  }
  if (m.regex !== undefined) {
    // Istio: ignoreUriCase applies to exact and prefix matches only; a regex says (?i) itself.
    const ok = fullMatch(m.regex);
    return (v) => v !== undefined && ok(v);
  }
  return (v) => v !== undefined;
}

function vsMatchTest(m: VSMatch): Test {
  const tests: Test[] = [];
  if (m.uri) {
    const ok = istioStringTest(m.uri, m.ignoreUriCase === true);
    tests.push((r) => ok(r.path));
  }
  if (m.scheme) {
    const ok = istioStringTest(m.scheme);
    tests.push((r) => ok(r.req.scheme ?? r.header(':scheme') ?? r.header('x-forwarded-proto') ?? 'http'));
  }
  if (m.method) {
    const ok = istioStringTest(m.method);
    tests.push((r) => ok(r.req.method));
  }
  if (m.authority) {
    const ok = istioStringTest(m.authority);
    tests.push((r) => ok(r.header(':authority') ?? r.header('host')));
  }
  for (const [name, sm] of Object.entries(m.headers ?? {})) {
    const ok = istioStringTest(sm);
    tests.push((r) => ok(r.header(name)));
  }
  for (const [name, sm] of Object.entries(m.withoutHeaders ?? {})) {
    const ok = istioStringTest(sm);
    tests.push((r) => !ok(r.header(name)));
  }
  for (const [name, sm] of Object.entries(m.queryParams ?? {})) {
    const ok = istioStringTest(sm);
    tests.push((r) => ok(r.query.get(name)));
  }
  if (m.port !== undefined) {
    const port = m.port;
    tests.push((r) => r.req.port === port);
  }
  if (m.sourceNamespace !== undefined) {
    const ns = m.sourceNamespace;
    tests.push((r) => r.req.source?.namespace === ns);
  }
  if (m.sourceLabels !== undefined) {
    const want = Object.entries(m.sourceLabels);
    tests.push((r) => {
      const have = r.req.source?.labels;
      return have !== undefined && want.every(([k, v]) => have[k] === v);
    });
  }
  return (r) => tests.every((t) => t(r));
}

/**
 * Subset labels by host, read from the same merged DestinationRules the clusters use (upstream/
 * cluster.ts), so a route and its cluster never disagree on whether a subset exists.
 */
class Subsets {
  private readonly index: DestinationRuleIndex;

  constructor(cfg: WaypointServiceConfig, hosts: Hosts) {
    this.index = new DestinationRuleIndex(cfg.destinationRules, hosts.domain);
  }

  /** null when no DestinationRule for the host defines the subset. */
  labels(hostname: string, subset: string): Readonly<Record<string, string>> | null {
    const s = this.index.find(hostname)?.subsets?.find((x) => x.name === subset);
    return s ? (s.labels ?? {}) : null;
  }
}

function vsTarget(d: Destination, vsNs: string, hosts: Hosts, subsets: Subsets): PendingTarget {
  const h = hosts.resolve(d.host, vsNs);
  return {
    ...h,
    // Without a port Istio uses the destination's only port; the router cannot see other services'
    // ports, so it keeps the port the request arrived on, which is right for the common same-port case.
    port: d.port?.number,
    subset: d.subset !== undefined ? { name: d.subset, labels: subsets.labels(h.hostname, d.subset) } : undefined,
  };
}

function vsRetry(r: VSHTTPRoute['retries']): RetryPolicy | undefined {
  if (!r) return ISTIO_DEFAULT_RETRY;
  // As in Istio, a retries block without attempts (or with 0) turns retries off.
  const attempts = r.attempts ?? 0;
  if (attempts === 0) return undefined;
  let retryOn: string[] = [...DEFAULT_RETRY_ON];
  let codes: number[] = [...DEFAULT_RETRY_CODES];
  if (r.retryOn !== undefined) {
    const items = r.retryOn.split(',').map((s) => s.trim()).filter((s) => s !== '');
    codes = items.filter((s) => /^[0-9]{3}$/.test(s)).map(Number);
    retryOn = items.filter((s) => !/^[0-9]{3}$/.test(s));
    // Istio turns bare status codes into retriable-status-codes; without it the codes would be ignored.
    if (codes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
  }
  return {
    attempts,
    perTryTimeoutMs: timeoutMs(r.perTryTimeout),
    retryOn,
    codes,
    ...(r.backoff !== undefined ? { backoffBaseMs: parseDurationMs(r.backoff) } : {}),
    ...(r.retryIgnorePreviousHosts === false ? { retryPreviousHosts: true } : {}),
  };
}

function vsFault(f: VSHTTPRoute['fault']): FaultPolicy | undefined {
  if (!f) return undefined;
  const out: FaultPolicy = {};
  // Istio applies a fault to every request when no percentage is given.
  if (f.delay) out.delay = { ms: parseDurationMs(f.delay.fixedDelay), percent: f.delay.percentage?.value ?? 100 };
  if (f.abort) {
    const percent = f.abort.percentage?.value ?? 100;
    out.abort =
      f.abort.grpcStatus !== undefined
        ? { status: 200, grpcStatus: GRPC_STATUS_CODES[f.abort.grpcStatus], percent }
        : { status: f.abort.httpStatus ?? 500, percent };
  }
  return out;
}

function compileVirtualServices(cfg: WaypointServiceConfig, hosts: Hosts): Entry[] {
  const subsets = new Subsets(cfg, hosts);
  const out: Entry[] = [];
  // Istio merges several VirtualServices for one host in creation order; lacking timestamps, name order keeps it deterministic.
  for (const obj of [...cfg.virtualServices].sort(byName)) {
    const spec = obj.spec as VirtualServiceSpec;
    (spec.http ?? []).forEach((h, ruleIndex) => {
      const dests = h.route ?? [];
      const allUnset = dests.every((d) => d.weight === undefined);
      const backends: PendingBackend[] = dests.map((d) => ({
        ...vsTarget(d.destination, obj.namespace, hosts, subsets),
        // A lone destination takes all traffic whatever its weight; a split with no weights at all is read as even.
        weight: dests.length === 1 ? 1 : allUnset ? 1 : (d.weight ?? 0),
        requestHeaders: fromIstioOperations(d.headers?.request),
        responseHeaders: fromIstioOperations(d.headers?.response),
      }));
      const mirrors: Array<{ backend: PendingTarget; percent: number }> = [];
      if (h.mirror) mirrors.push({ backend: vsTarget(h.mirror, obj.namespace, hosts, subsets), percent: h.mirrorPercentage?.value ?? 100 });
      for (const m of h.mirrors ?? []) mirrors.push({ backend: vsTarget(m.destination, obj.namespace, hosts, subsets), percent: m.percentage?.value ?? 100 });
      const retry = vsRetry(h.retries);
      const base = {
        route: { kind: 'VirtualService' as const, namespace: obj.namespace, name: obj.name, ruleIndex, ruleName: h.name },
        backends,
        timeouts: { requestMs: timeoutMs(h.timeout), perTryTimeoutMs: retry?.perTryTimeoutMs },
        retry,
        fault: vsFault(h.fault),
        noBackendStatus: 503 as const,
      };
      const matches: Array<VSMatch | undefined> = h.match && h.match.length > 0 ? h.match : [undefined];
      for (const m of matches) {
        // Istio's rewrite replaces the matched prefix when the match was a prefix (an absent uri is prefix "/"), the whole path otherwise.
        const uri = m?.uri;
        const rewritePath: PathRewrite | undefined =
          h.rewrite?.uri === undefined
            ? undefined
            : uri?.exact !== undefined || uri?.regex !== undefined
              ? { type: 'ReplaceFullPath', value: h.rewrite.uri }
              : { type: 'ReplacePrefixMatch', prefix: uri?.prefix ?? '/', value: h.rewrite.uri, ...(m?.ignoreUriCase ? { ignoreCase: true } : {}) };
        const rd = h.redirect;
        const filters: Compiled['filters'] = {
          requestHeaders: fromIstioOperations(h.headers?.request),
          responseHeaders: fromIstioOperations(h.headers?.response),
          redirect: rd
            ? {
                scheme: rd.scheme,
                hostname: rd.authority,
                port: rd.port,
                derivePort: rd.derivePort,
                path: rd.uri !== undefined ? { type: 'ReplaceFullPath', value: rd.uri } : undefined,
                statusCode: rd.redirectCode ?? 301,
              }
            : undefined,
          rewrite: h.rewrite ? { hostname: h.rewrite.authority, path: rewritePath } : undefined,
          mirrors,
        };
        out.push({ ports: m?.port !== undefined ? new Set([m.port]) : null, grpcOnly: false, test: m ? vsMatchTest(m) : () => true, result: { ...base, filters } });
      }
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

export function compileRouteTable(cfg: WaypointServiceConfig): RouteTable {
  const hosts = new Hosts(cfg.service);
  const gatewayApi = cfg.httpRoutes.length > 0 || cfg.grpcRoutes.length > 0;
  // gRPC routes come first for gRPC requests: they are the more specific API for that traffic.
  const entries: Entry[] = gatewayApi
    ? [...compileGRPCRoutes(cfg, hosts).map((r) => r.entry), ...compileHTTPRoutes(cfg, hosts).map((r) => r.entry)]
    : compileVirtualServices(cfg, hosts);

  const servicePorts = cfg.service.ports.map((p) => p.servicePort);
  const byPort = new Map<number, Entry[]>();
  const entriesFor = (port: number): Entry[] => {
    let e = byPort.get(port);
    if (!e) {
      e = entries.filter((x) => x.ports === null || x.ports.has(port));
      // Bounded by the service's ports in practice; the cap keeps a port scan from growing the cache.
      if (byPort.size < 256) byPort.set(port, e);
    }
    return e;
  };

  // One per port, built on first use: read-only for the router, so every request can share it.
  const defaults = new Map<number, RouteMatch>();
  const defaultRoute = (port: number): RouteMatch => {
    let m = defaults.get(port);
    if (m === undefined) defaults.set(port, (m = buildDefaultRoute(port)));
    return m;
  };
  const buildDefaultRoute = (port: number): RouteMatch => ({
    route: { kind: 'Default', namespace: cfg.service.namespace, name: cfg.service.name, ruleIndex: 0 },
    backends: [
      {
        hostname: cfg.service.hostname,
        name: cfg.service.name,
        namespace: cfg.service.namespace,
        port: servicePorts.includes(port) || servicePorts.length === 0 ? port : servicePorts[0],
        weight: 1,
      },
    ],
    filters: { mirrors: [] },
    timeouts: {},
    retry: ISTIO_DEFAULT_RETRY,
    noBackendStatus: 503,
  });

  return {
    match(req: RouteRequest): RouteMatch | null {
      const candidates = entriesFor(req.port);
      if (candidates.length === 0) return defaultRoute(req.port);
      const view = viewOf(req);
      for (const e of candidates) {
        if (e.grpcOnly && !view.isGrpc) continue;
        if (e.test(view)) return resolve(e.result, req.port);
      }
      return null;
    },
  };
}
