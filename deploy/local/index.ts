/**
 * deploy/local: a multi-host Ambit cluster on one Linux machine, built from network
 * namespaces (ARCHITECTURE.md section 6). This module plays nodes, kubelet and container
 * runtime; `ambit dev ...` (cli/dev.ts) is its command line, and tests use it directly:
 *
 *   const c = await up({ dir, name: 'ambit-t1', nodes: 2 });
 *   const srv = await podRun({ dir, name: 'srv', node: 'node2', command: ['node', '-e', '...'] });
 *   const r = await podExec({ dir, name: 'cli', command: ['node', '-e', 'fetch(...)'] });
 *   await down({ dir });
 *
 * See README.md in this directory for the topology, the files and the supervisor.
 */
export { up, down, status, openCluster, clusterPaths, ztunnelReady } from './cluster';
export type { ClusterOptions, UpOptions, UpResult, DownResult, ClusterStatus, HostStatus, ComponentStatus } from './cluster';
export { podRun, podDelete, podList, podGet, podExec, podLogPath } from './pods';
export type { PodRef, PodRunOptions, PodInfo, ExecOptions, ExecResult } from './pods';
export { logPath, readLog, follow } from './logs';
export type { LogsOptions } from './logs';
export { fetchConfigDump, renderConfig, configJson, resolveConfigKind, CONFIG_KINDS } from './ztunnel-config';
export type { ConfigKind, ZtunnelConfigOptions } from './ztunnel-config';
export { ensureNamespace, withAdmin } from './admin';
export { httpGet } from './netns-http';
export { ClusterPaths, DEFAULT_DEV_DIR, resolveDevDir } from './paths';
export { listNetns, netnsExists } from './netns';
export {
  DEFAULT_CLUSTER_NAME, CONTROLPLANE_IP, GRPC_PORT, MONITORING_PORT, ZTUNNEL_ADMIN_PORT, ZTUNNEL_METRICS_PORT, podNameserver,
  clusterNetnsPattern, hostSpec, hostSpecs, podNetns,
} from './topology';
export type { HostSpec } from './topology';
export type { ClusterState, PodRecord } from './state';
// Entry points run as their own processes (compiled alongside): the supervisor and the control plane socket forwarder.
export { runSupervisor } from './supervisor';
export { runUdsProxy } from './uds-proxy';
export { runWaypointController, reconcileWaypoints, waypointPodName } from './waypoints';
