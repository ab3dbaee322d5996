import type { Port } from './workload-types';

/**
 * What the control plane sends a waypoint for one service bound to it (JSON in a
 * DiscoveryResource of type TYPE_WAYPOINT_SERVICE, named `l7/<namespace>/<service>`): the
 * service, and the user's L7 resources that apply to it, as written (already validated).
 */
export interface WaypointServiceConfig {
  service: { name: string; namespace: string; hostname: string; vips: string[]; ports: Port[] };
  waypoint: { namespace: string; name: string };
  httpRoutes: Array<{ namespace: string; name: string; spec: unknown }>;
  grpcRoutes: Array<{ namespace: string; name: string; spec: unknown }>;
  virtualServices: Array<{ namespace: string; name: string; spec: unknown }>;
  destinationRules: Array<{ namespace: string; name: string; spec: unknown }>;
  authorizationPolicies: Array<{ namespace: string; name: string; spec: unknown }>;
  requestAuthentications: Array<{ namespace: string; name: string; spec: unknown }>;
}
