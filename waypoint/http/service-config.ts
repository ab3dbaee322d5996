/**
 * Compiles one WaypointServiceConfig into what the request path evaluates: route table,
 * authorization, authentication, rate limits. Compilation either succeeds whole or throws a
 * ServiceConfigError naming the resource at fault, so a bad object never half-applies.
 */
import type { DestinationRuleSpec, TrafficPolicy } from '../../lib/api/kinds/networking';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { createConnectionPoolLimits } from '../upstream/connection-pool-limits';
import { createLoadBalancer } from '../upstream/load-balancer';
import { createOutlierDetector } from '../upstream/outlier-detection';
import { compileAuthn, type AuthnFilterOptions } from './filters/authn';
import { compileAuthz, PolicyCompileError, type CompiledAuthz } from './filters/authz';
import { annotationOf, parseRateLimit, RATE_LIMIT_ANNOTATION, type RateLimitSpec } from './filters/rate-limit';
import type { RequestAuthenticator } from './jwt-authn';
import { compileRouteTable, type RouteRef, type RouteTable } from './route-table';

export class ServiceConfigError extends Error {
  readonly code = 'BadConfig';
  constructor(
    /** "Kind/namespace/name" of the object at fault, or the service config's own name. */
    readonly resource: string,
    message: string,
  ) {
    super(message);
  }
}

export interface CompiledService {
  readonly name: string;
  readonly cfg: WaypointServiceConfig;
  /** Identity of the source config: an unchanged config is not recompiled (and keeps its JWKS cache). */
  readonly fingerprint: string;
  readonly routes: RouteTable;
  readonly authz: CompiledAuthz;
  readonly authn: RequestAuthenticator | null;
  /** By "Kind/namespace/name" of the route object. */
  readonly rateLimits: ReadonlyMap<string, RateLimitSpec>;
}

export function routeObjectKey(r: Pick<RouteRef, 'kind' | 'namespace' | 'name'>): string {
  return `${r.kind}/${r.namespace}/${r.name}`;
}

type Obj = { namespace: string; name: string; spec: unknown };

/** Regex syntax errors name no object; finding the first object whose patterns fail tells the operator where to look. */
function findBadRegex(cfg: WaypointServiceConfig): string | undefined {
  const groups: Array<[string, Obj[]]> = [
    ['HTTPRoute', cfg.httpRoutes],
    ['GRPCRoute', cfg.grpcRoutes],
    ['VirtualService', cfg.virtualServices],
  ];
  for (const [kind, objs] of groups) {
    for (const o of objs) {
      const probe: WaypointServiceConfig = { ...cfg, httpRoutes: [], grpcRoutes: [], virtualServices: [] };
      if (kind === 'HTTPRoute') probe.httpRoutes = [o];
      else if (kind === 'GRPCRoute') probe.grpcRoutes = [o];
      else probe.virtualServices = [o];
      try {
        compileRouteTable(probe);
      } catch {
        return `${kind}/${o.namespace}/${o.name}`;
      }
    }
  }
  return undefined;
}

type PolicyParts = Pick<TrafficPolicy, 'loadBalancer' | 'connectionPool' | 'outlierDetection'>;

/**
 * Builds every traffic policy of the service's DestinationRules the way its clusters will. Clusters
 * are updated only after the new config has been swapped in, so a policy that cannot be built (an
 * unparsable duration, no host) must be refused here, naming the rule, or it would throw half-way
 * through that update: NACKed, yet partly applied.
 */
function checkDestinationRules(cfg: WaypointServiceConfig): void {
  for (const dr of cfg.destinationRules) {
    const resource = `DestinationRule/${dr.namespace}/${dr.name}`;
    try {
      const spec = dr.spec as DestinationRuleSpec | null;
      if (!spec || typeof spec.host !== 'string' || spec.host === '') throw new Error('host is missing');
      for (const tp of [spec.trafficPolicy, ...(spec.subsets ?? []).map((s) => s.trafficPolicy)]) {
        if (!tp) continue;
        const parts: PolicyParts[] = [tp, ...(tp.portLevelSettings ?? [])];
        for (const p of parts) {
          createLoadBalancer(p.loadBalancer, []);
          createOutlierDetector(p.outlierDetection, []);
          createConnectionPoolLimits(p.connectionPool, { protocol: 'http1' });
        }
      }
    } catch (e) {
      throw new ServiceConfigError(resource, `${resource}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}

export function fingerprintOf(cfg: WaypointServiceConfig): string {
  return JSON.stringify(cfg);
}

export function compileService(name: string, cfg: WaypointServiceConfig, authnOpts: AuthnFilterOptions): CompiledService {
  let routes: RouteTable;
  try {
    routes = compileRouteTable(cfg);
  } catch (e) {
    const resource = findBadRegex(cfg) ?? name;
    throw new ServiceConfigError(resource, `${resource}: ${e instanceof Error ? e.message : String(e)}`);
  }
  checkDestinationRules(cfg);
  let authz: CompiledAuthz;
  try {
    authz = compileAuthz(cfg.authorizationPolicies);
  } catch (e) {
    if (e instanceof PolicyCompileError) throw new ServiceConfigError(e.resource, e.message);
    throw e;
  }
  let authn: RequestAuthenticator | null;
  try {
    authn = compileAuthn(cfg.requestAuthentications, authnOpts);
  } catch (e) {
    throw new ServiceConfigError(name, `RequestAuthentication: ${e instanceof Error ? e.message : String(e)}`);
  }
  const rateLimits = new Map<string, RateLimitSpec>();
  const kinds: Array<['HTTPRoute' | 'GRPCRoute' | 'VirtualService', Obj[]]> = [
    ['HTTPRoute', cfg.httpRoutes],
    ['GRPCRoute', cfg.grpcRoutes],
    ['VirtualService', cfg.virtualServices],
  ];
  for (const [kind, objs] of kinds) {
    for (const o of objs) {
      const text = annotationOf(o, RATE_LIMIT_ANNOTATION);
      if (text === undefined) continue;
      const resource = `${kind}/${o.namespace}/${o.name}`;
      try {
        rateLimits.set(resource, parseRateLimit(text));
      } catch (e) {
        throw new ServiceConfigError(resource, `${resource}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
  }
  return { name, cfg, fingerprint: fingerprintOf(cfg), routes, authz, authn, rateLimits };
}
