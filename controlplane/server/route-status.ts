import { LABEL_USE_WAYPOINT, LABEL_WAYPOINT_FOR, type Resource, waypointRefOf, WAYPOINT_GATEWAY_CLASS } from '../../lib/api/resource';
import type { Store } from '../store/store';

/**
 * The status of an HTTPRoute or GRPCRoute, computed on read like a waypoint Gateway's: one entry
 * per parentRef (Gateway API RouteParentStatus) saying whether the parent exists and can carry
 * the route (Accepted), whether every backend exists (ResolvedRefs) and whether the parent
 * Service's traffic goes through a waypoint at all (ResolvedWaypoints), because a route on a
 * service without a waypoint is valid yet applies to nothing.
 */
export const ROUTE_CONTROLLER_NAME = 'ambit.io/mesh-controller';


interface ParentRef { group?: string; kind?: string; namespace?: string; name: string; port?: number; sectionName?: string }
interface BackendRef { group?: string; kind?: string; namespace?: string; name: string; port?: number }
interface Rule { backendRefs?: BackendRef[]; filters?: Array<{ requestMirror?: { backendRef?: BackendRef } }> }
interface Condition { type: string; status: 'True' | 'False'; reason: string; message: string; observedGeneration?: number; lastTransitionTime: string }

export function isRouteKind(kind: string): boolean {
  return kind === 'HTTPRoute' || kind === 'GRPCRoute';
}

export function withRouteStatus(store: Store, r: Resource): Resource {
  if (!isRouteKind(r.kind)) return r;
  const spec = (r.spec ?? {}) as { parentRefs?: ParentRef[]; rules?: Rule[] };
  const routeNs = r.metadata.namespace ?? '';
  const now = new Date().toISOString();
  const generation = typeof r.metadata.generation === 'number' ? r.metadata.generation : undefined;
  const cond = (type: string, ok: boolean, reason: string, message: string): Condition => ({
    type,
    status: ok ? 'True' : 'False',
    reason,
    message,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    lastTransitionTime: now,
  });
  const resolved = resolvedRefs(store, spec.rules ?? [], routeNs);
  const parents = (spec.parentRefs ?? []).map((p) => {
    const conditions: Condition[] = [];
    const kind = p.kind ?? 'Gateway';
    const ns = p.namespace ?? routeNs;
    if (kind !== 'Service') {
      conditions.push(cond('Accepted', false, 'NotAllowedByListeners',
        `routes are served by waypoints only when attached to a Service (parentRefs: kind Service, group ""); ${kind} ${ns}/${p.name} carries no mesh routes`));
    } else if (ns !== routeNs) {
      conditions.push(cond('Accepted', false, 'UnsupportedValue',
        `a route in namespace ${routeNs} attached to service ${ns}/${p.name} is a consumer route, which this mesh does not support: it is not applied. Put the route in namespace ${ns} (a producer route) to route all of the service's traffic`));
    } else {
      const svc = store.get({ kind: 'Service', namespace: ns, name: p.name });
      const ports = servicePorts(svc);
      if (!svc) conditions.push(cond('Accepted', false, 'NoMatchingParent', `parent service "${ns}/${p.name}" not found`));
      else if (p.port !== undefined && !ports.includes(p.port)) {
        conditions.push(cond('Accepted', false, 'NoMatchingParent', `parent service "${ns}/${p.name}" has no port ${p.port} (ports: ${ports.join(', ') || 'none'})`));
      } else conditions.push(cond('Accepted', true, 'Accepted', 'route was valid'));
      conditions.push(waypointCondition(store, cond, svc, ns, p.name));
    }
    conditions.push(resolved.length === 0
      ? cond('ResolvedRefs', true, 'ResolvedRefs', 'all references resolved')
      : cond('ResolvedRefs', false, 'BackendNotFound', resolved.join('; ')));
    return { parentRef: p, controllerName: ROUTE_CONTROLLER_NAME, conditions };
  });
  return { ...r, status: { parents } };
}

function servicePorts(svc: Resource | undefined): number[] {
  return ((svc?.spec as { ports?: Array<{ port: number }> } | undefined)?.ports ?? []).map((x) => x.port);
}

/** What is wrong with the route's backends (and mirror targets): an empty list when every one exists with its port. */
function resolvedRefs(store: Store, rules: readonly Rule[], routeNs: string): string[] {
  const problems = new Set<string>();
  const check = (b: BackendRef | undefined) => {
    if (!b || (b.kind ?? 'Service') !== 'Service') return;
    const ns = b.namespace ?? routeNs;
    const svc = store.get({ kind: 'Service', namespace: ns, name: b.name });
    if (!svc) {
      problems.add(`backend service "${ns}/${b.name}" not found (requests routed to it get 500)`);
      return;
    }
    const ports = servicePorts(svc);
    if (b.port !== undefined && !ports.includes(b.port)) problems.add(`backend service "${ns}/${b.name}" has no port ${b.port} (ports: ${ports.join(', ') || 'none'})`);
  };
  for (const rule of rules) {
    for (const b of rule.backendRefs ?? []) check(b);
    for (const f of rule.filters ?? []) check(f.requestMirror?.backendRef);
  }
  return [...problems];
}

/** Whether the parent Service's traffic is sent to a waypoint that exists and serves services, the same resolution the translation uses. */
function waypointCondition(
  store: Store,
  cond: (type: string, ok: boolean, reason: string, message: string) => Condition,
  svc: Resource | undefined,
  ns: string,
  name: string,
): Condition {
  const type = 'ResolvedWaypoints';
  if (!svc) return cond(type, false, 'NoMatchingParent', 'parent not found');
  // The same resolution the translation makes: the service's own label, else its namespace's.
  const own = waypointRefOf(svc.metadata.labels, ns);
  if (own === null) return cond(type, false, 'NoWaypoint', `service ${ns}/${name} opts out of waypoints (${LABEL_USE_WAYPOINT}: none): this route applies to nothing`);
  const ref = own ?? waypointRefOf(store.get({ kind: 'Namespace', namespace: '', name: ns })?.metadata.labels, ns);
  if (!ref) {
    return cond(type, false, 'NoWaypoint',
      `service ${ns}/${name} does not use a waypoint, so this route applies to nothing: label the service or namespace ${ns} ${LABEL_USE_WAYPOINT}=<waypoint> (ambit waypoint apply -n ${ns} --enroll-namespace)`);
  }
  const { name: wpName, namespace: wpNs } = ref;
  const gw = store.get({ kind: 'Gateway', namespace: wpNs, name: wpName });
  if (!gw || (gw.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) {
    return cond(type, false, 'WaypointNotFound', `service ${ns}/${name} names waypoint ${wpNs}/${wpName}, which does not exist (no Gateway of class ${WAYPOINT_GATEWAY_CLASS}); its traffic is refused until it does`);
  }
  const forWhat = gw.metadata.labels?.[LABEL_WAYPOINT_FOR] ?? 'service';
  if (forWhat === 'none' || forWhat === 'workload') {
    return cond(type, false, 'NoWaypoint', `waypoint ${wpNs}/${wpName} is ${LABEL_WAYPOINT_FOR}: ${forWhat}, so it does not serve service ${ns}/${name}`);
  }
  return cond(type, true, 'ResolvedWaypoints', `traffic to service ${ns}/${name} goes through waypoint ${wpNs}/${wpName}`);
}
