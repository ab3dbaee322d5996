import type { ObjectMeta } from './meta';

/** A resource as stored and served: Kubernetes-shaped. */
export interface Resource<Spec = Record<string, unknown>> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta & { name: string };
  spec?: Spec;
  status?: Record<string, unknown>;
}

export interface ResourceKey {
  kind: string;
  /** '' for cluster-scoped kinds. */
  namespace: string;
  name: string;
}

export function keyOf(r: Resource): ResourceKey {
  return { kind: r.kind, namespace: r.metadata.namespace ?? '', name: r.metadata.name };
}

export function keyString(k: ResourceKey): string {
  return `${k.kind}/${k.namespace}/${k.name}`;
}

/** `HTTPRoute default/reviews` or `Namespace prod`: how errors and logs name a resource. */
export function describeKey(k: ResourceKey): string {
  return k.namespace ? `${k.kind} ${k.namespace}/${k.name}` : `${k.kind} ${k.name}`;
}

export const DEFAULT_NAMESPACE = 'default';
export const AMBIT_API_VERSION = 'ambit.io/v1alpha1';

/** Well-known labels, the same as Istio's so existing manifests mean the same here. */
export const LABEL_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const LABEL_USE_WAYPOINT = 'istio.io/use-waypoint';
/** Names the namespace of the waypoint LABEL_USE_WAYPOINT names (default: the labelled object's). */
export const LABEL_USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
/** On a waypoint Gateway: which traffic it serves (service, workload, all, none; default service). */
export const LABEL_WAYPOINT_FOR = 'istio.io/waypoint-for';

export interface WaypointRef {
  namespace: string;
  name: string;
}

/**
 * The waypoint an object's labels name: undefined when they name none (look further, e.g. at the
 * namespace), null when they opt out (`istio.io/use-waypoint: none`).
 */
export function waypointRefOf(labels: Record<string, string> | undefined, ns: string): WaypointRef | null | undefined {
  const name = labels?.[LABEL_USE_WAYPOINT];
  if (name === undefined) return undefined;
  if (name === 'none') return null;
  return { name, namespace: labels?.[LABEL_USE_WAYPOINT_NAMESPACE] ?? ns };
}
/** On a waypoint's pods: the name of the Gateway they serve (Kubernetes Gateway API convention). */
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
