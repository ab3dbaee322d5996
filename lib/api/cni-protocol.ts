/**
 * ambit-cni (the plugin the container runtime runs) <-> `ambit cni-agent` (one per host).
 * Transport: a unix stream socket (default /var/run/ambit/cni.sock); the plugin writes one
 * JSON request terminated by "\n" and reads one JSON response terminated by "\n".
 */
export const DEFAULT_CNI_SOCKET = '/var/run/ambit/cni.sock';

export interface CniPodRequest {
  command: 'ADD' | 'DEL' | 'CHECK';
  containerId: string;
  /** Path of the pod's network namespace (CNI_NETNS); may be empty on DEL. */
  netns: string;
  ifName: string;
  /** CNI_ARGS parsed: K8S_POD_NAME, K8S_POD_NAMESPACE, K8S_POD_UID, and Ambit's own (see below). */
  args: Record<string, string>;
  /** The pod's IPs from prevResult (the primary plugin's result); empty on DEL. */
  ips: string[];
}

/** CNI_ARGS keys the local cluster's runtime passes in addition to Kubernetes' own. */
export const CNI_ARG_SERVICE_ACCOUNT = 'AMBIT_POD_SERVICE_ACCOUNT';
/** Pod labels as comma-separated k=v pairs, each k and v URI-encoded. */
export const CNI_ARG_LABELS = 'AMBIT_POD_LABELS';

export type CniPodResponse = { ok: true; enrolled: boolean } | { ok: false; code: number; msg: string; details?: string };
