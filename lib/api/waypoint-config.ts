import type { Port } from './workload-types';

/**
 * What the control plane sends a waypoint for one service bound to it (JSON in a
 * DiscoveryResource of type TYPE_WAYPOINT_SERVICE, named `l7/<namespace>/<service>`): the
 * service, and the user's L7 resources that apply to it, as written (already validated).
 */
/** One user resource as the waypoint needs it; `annotations` carry Ambit's extensions (e.g. ambit.io/local-rate-limit). */
export interface WaypointResourceRef {
  namespace: string;
  name: string;
  spec: unknown;
  annotations?: Record<string, string>;
}

export interface WaypointServiceConfig {
  service: { name: string; namespace: string; hostname: string; vips: string[]; ports: Port[] };
  waypoint: { namespace: string; name: string };
  httpRoutes: WaypointResourceRef[];
  grpcRoutes: WaypointResourceRef[];
  virtualServices: WaypointResourceRef[];
  destinationRules: WaypointResourceRef[];
  authorizationPolicies: WaypointResourceRef[];
  requestAuthentications: WaypointResourceRef[];
}
