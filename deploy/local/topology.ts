/**
 * The local cluster's addressing and naming, as pure functions of the cluster name and
 * the host index. Nothing here touches the system.
 *
 *   netns <name>-fabric   bridge br0; one veth per host (h-<host>) and one for the control plane (h-cp)
 *   netns <name>-cp       eth0 10.250.0.2/24; the control plane listens on 0.0.0.0:15012 (gRPC) and :15014
 *   netns <name>-node<i>  eth0 10.250.0.<10+i>/24; pod CIDR 10.244.<i>.0/24 on bridge cni0 (made by the
 *                         bridge CNI plugin, gateway 10.244.<i>.1); routes to the other hosts' pod CIDRs
 *   netns <name>-pod-<namespace>-<pod>   one per pod: eth0 from the bridge plugin, lo
 *
 * The default cluster name is "ambit", which gives ambit-fabric, ambit-cp, ambit-node1, ...
 * Every netns of a cluster matches clusterNetnsPattern(name), which is how `down` finds
 * what a crash left behind without any state.
 */
export const DEFAULT_CLUSTER_NAME = 'ambit';
export const FABRIC_SUBNET_PREFIX = 24;
export const CONTROLPLANE_IP = '10.250.0.2';
export const GRPC_PORT = 15012;
export const MONITORING_PORT = 15014;
export const ZTUNNEL_ADMIN_PORT = 15000;
/** A waypoint's admin port, on 127.0.0.1 inside its own pod netns. */
export const WAYPOINT_ADMIN_PORT = 15000;
export const ZTUNNEL_METRICS_PORT = 15020;
/**
 * The nameserver a pod gets in resolv.conf: its host's pod gateway (cni0). An enrolled
 * pod's port 53 is redirected to its ztunnel's DNS proxy whatever the address. For a pod
 * outside the mesh nothing listens there, so the host answers "port unreachable" and
 * lookups fail at once instead of timing out (an address nobody routes costs 5 s per
 * query, and ndots:5 makes several). It can never be a service VIP either (the control
 * plane gives 10.96.0.10, kube-dns's usual address, to the first Service).
 */
export function podNameserver(host: HostSpec): string {
  return host.podGateway;
}
export const FABRIC_BRIDGE = 'br0';
/** The bridge the `bridge` CNI plugin makes in each host netns. */
export const POD_BRIDGE = 'cni0';
/** The host's interface on the fabric (inside the host netns). */
export const HOST_FABRIC_IF = 'eth0';
/** The pod's interface (CNI_IFNAME). */
export const POD_IF = 'eth0';
export const CNI_NETWORK_NAME = 'ambit-dev';
export const CNI_VERSION = '1.0.0';
export const MAX_NODES = 64;

export interface HostSpec {
  name: string;
  index: number;
  netns: string;
  fabricIp: string;
  podCidr: string;
  podGateway: string;
  /** Name of the host's veth end inside the fabric netns (<= 15 characters). */
  fabricPort: string;
}

export interface ControlPlaneSpec {
  netns: string;
  ip: string;
  grpcAddress: string;
  monitoringAddress: string;
  fabricPort: string;
}

const CLUSTER_NAME = /^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$/;
/** DNS-1123 label, as Kubernetes requires for namespaces. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** Pod names: DNS-1123 subdomain, kept to 63 characters so paths and netns names stay short. */
const POD_NAME = /^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/;
const HOST_NAME = /^node([1-9][0-9]?)$/;

export function checkClusterName(name: string): string {
  if (!CLUSTER_NAME.test(name) || name.includes('-pod-')) {
    throw new Error(`cluster name "${name}" must be lowercase letters, digits and "-" (at most 32, starting with a letter, not containing "-pod-")`);
  }
  return name;
}

export function checkNamespace(ns: string): string {
  if (!NAMESPACE.test(ns)) throw new Error(`namespace "${ns}" must be a DNS label: lowercase letters, digits and "-", at most 63`);
  return ns;
}

export function checkPodName(name: string): string {
  if (!POD_NAME.test(name)) throw new Error(`pod name "${name}" must be lowercase letters, digits, "-" and ".", at most 63, starting and ending with a letter or digit`);
  return name;
}

export function checkNodeCount(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) throw new Error(`--nodes must be an integer from 1 to ${MAX_NODES}, got ${n}`);
  return n;
}

export function hostName(index: number): string {
  return `node${index}`;
}

/** node1 -> 1; anything else -> undefined. */
export function hostIndex(name: string): number | undefined {
  const m = HOST_NAME.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function hostSpec(cluster: string, index: number): HostSpec {
  const name = hostName(index);
  return {
    name,
    index,
    netns: `${cluster}-${name}`,
    fabricIp: `10.250.0.${10 + index}`,
    podCidr: `10.244.${index}.0/24`,
    podGateway: `10.244.${index}.1`,
    fabricPort: `h-${name}`,
  };
}

export function hostSpecs(cluster: string, nodes: number): HostSpec[] {
  return Array.from({ length: nodes }, (_, i) => hostSpec(cluster, i + 1));
}

export function controlPlaneSpec(cluster: string): ControlPlaneSpec {
  return {
    netns: `${cluster}-cp`,
    ip: CONTROLPLANE_IP,
    grpcAddress: `${CONTROLPLANE_IP}:${GRPC_PORT}`,
    monitoringAddress: `${CONTROLPLANE_IP}:${MONITORING_PORT}`,
    fabricPort: 'h-cp',
  };
}

export function fabricNetns(cluster: string): string {
  return `${cluster}-fabric`;
}

export function podNetns(cluster: string, namespace: string, name: string): string {
  return `${cluster}-pod-${namespace}-${name}`;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Every netns this cluster may have created: fabric, cp, nodeN, pod-*. */
export function clusterNetnsPattern(cluster: string): RegExp {
  return new RegExp(`^${escapeRe(cluster)}-(fabric|cp|node[0-9]+|pod-.+)$`);
}

export function podNetnsPattern(cluster: string): RegExp {
  return new RegExp(`^${escapeRe(cluster)}-pod-.+$`);
}

/** Teardown order: pods first, then hosts, the control plane, and the fabric last. */
export function teardownRank(cluster: string, netns: string): number {
  if (podNetnsPattern(cluster).test(netns)) return 0;
  if (netns === fabricNetns(cluster)) return 3;
  if (netns === `${cluster}-cp`) return 2;
  return 1;
}
