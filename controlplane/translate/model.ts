import type { Resource } from '../../lib/api/resource';

/** Everything translation reads: a consistent snapshot of the store, by kind. */
export interface Model {
  namespaces: Resource[];
  services: Resource[];
  workloads: Resource[];
  workloadEntries: Resource[];
  authorizationPolicies: Resource[];
  peerAuthentications: Resource[];
  requestAuthentications: Resource[];
  gateways: Resource[];
  httpRoutes: Resource[];
  grpcRoutes: Resource[];
  destinationRules: Resource[];
  virtualServices: Resource[];
}

export interface TranslateOptions {
  trustDomain: string;
  /** Policies here without a selector apply mesh-wide (Istio's convention: istio-system). */
  rootNamespace: string;
  clusterDomain: string;
}

export const DEFAULT_TRANSLATE_OPTIONS: TranslateOptions = {
  trustDomain: 'cluster.local',
  rootNamespace: 'istio-system',
  clusterDomain: 'cluster.local',
};

export function emptyModel(): Model {
  return {
    namespaces: [], services: [], workloads: [], workloadEntries: [], authorizationPolicies: [],
    peerAuthentications: [], requestAuthentications: [], gateways: [], httpRoutes: [], grpcRoutes: [],
    destinationRules: [], virtualServices: [],
  };
}

export interface ModelSource {
  list(kind: string): Resource[];
}

export function modelFrom(src: ModelSource): Model {
  return {
    namespaces: src.list('Namespace'),
    services: src.list('Service'),
    workloads: src.list('Workload'),
    workloadEntries: src.list('WorkloadEntry'),
    authorizationPolicies: src.list('AuthorizationPolicy'),
    peerAuthentications: src.list('PeerAuthentication'),
    requestAuthentications: src.list('RequestAuthentication'),
    gateways: src.list('Gateway'),
    httpRoutes: src.list('HTTPRoute'),
    grpcRoutes: src.list('GRPCRoute'),
    destinationRules: src.list('DestinationRule'),
    virtualServices: src.list('VirtualService'),
  };
}

export function labelsMatch(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector)) if (labels?.[k] !== v) return false;
  return true;
}
