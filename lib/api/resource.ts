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
/** On a waypoint's pods: the name of the Gateway they serve (Kubernetes Gateway API convention). */
export const LABEL_GATEWAY_NAME = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_GATEWAY_CLASS = 'istio-waypoint';
