import path from 'node:path';
import { ambitBin, ClusterPaths } from './paths';
import { childPath, inNetns } from './sh';
import type { ProcSpec } from './supervisor-protocol';
import { GRPC_PORT, HostSpec, MONITORING_PORT, ZTUNNEL_ADMIN_PORT, ZTUNNEL_METRICS_PORT } from './topology';
import type { ClusterState } from './state';

/**
 * What the supervisor runs for the cluster itself: the command lines of the control
 * plane (and the unix-socket forwarder to it) in the control plane's netns, and of each
 * host's cni agent and ztunnel inside that host's netns, with per-host sockets and state.
 */
export const COMPONENTS = ['controlplane', 'cp-proxy', 'cni-agent', 'ztunnel'] as const;
export type ComponentName = (typeof COMPONENTS)[number];

export function componentId(component: ComponentName, host?: string): string {
  return component === 'controlplane' || component === 'cp-proxy' ? component : `${host}/${component}`;
}

export function componentLog(paths: ClusterPaths, component: ComponentName, host?: string): string {
  return paths.componentLog(componentId(component, host).replace('/', '-'));
}

/** The environment components run with: the caller's, minus what would confuse them. */
export function componentEnv(logLevel: string, extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (k === 'AMBIT_CONFIG' || k === 'AMBIT_BOOTSTRAP_TOKEN' || k === 'NODE_NAME' || k.startsWith('AMBIT_DEV_') || k.startsWith('NODE_TEST') || k.startsWith('CNI_')) continue;
    env[k] = v;
  }
  return { ...env, PATH: childPath(), AMBIT_LOG_LEVEL: logLevel, ...extra };
}

function ambit(args: string[]): string[] {
  return [process.execPath, ambitBin(), ...args];
}

export function controlPlaneProc(paths: ClusterPaths, s: ClusterState): ProcSpec {
  return {
    id: componentId('controlplane'),
    argv: inNetns(s.controlPlane.netns, ambit([
      'controlplane', '--data-dir', paths.controlPlaneDir, '--grpc-addr', `0.0.0.0:${GRPC_PORT}`, '--monitoring-addr', `0.0.0.0:${MONITORING_PORT}`,
      '--san', s.controlPlane.ip, '--log-level', s.logLevel,
    ])),
    env: componentEnv(s.logLevel),
    cwd: paths.dir,
    log: componentLog(paths, 'controlplane'),
    restart: 'always',
    stopGraceMs: 5000,
  };
}

export function controlPlaneProxyProc(paths: ClusterPaths, s: ClusterState): ProcSpec {
  return {
    id: componentId('cp-proxy'),
    argv: inNetns(s.controlPlane.netns, [process.execPath, path.join(__dirname, 'uds-proxy.js'), paths.controlPlaneSocket, '127.0.0.1', String(GRPC_PORT)]),
    env: componentEnv(s.logLevel),
    cwd: paths.dir,
    log: componentLog(paths, 'cp-proxy'),
    restart: 'always',
    stopGraceMs: 2000,
  };
}

/** The bootstrap token is only needed (and only used) on the first start, when node.yaml does not exist yet. */
export function agentProc(paths: ClusterPaths, s: ClusterState, h: HostSpec, token: string): ProcSpec {
  return {
    id: componentId('cni-agent', h.name),
    argv: inNetns(h.netns, ambit([
      'cni-agent', '--node', h.name, '--state-dir', paths.hostStateDir(h.name), '--cni-socket', paths.cniSocket(h.name),
      '--ztunnel-socket', paths.ztunnelSocket(h.name), '--server', s.controlPlane.grpcAddress, '--ca-cert', paths.rootCertFile, '--log-level', s.logLevel,
    ])),
    env: componentEnv(s.logLevel, { AMBIT_BOOTSTRAP_TOKEN: token }),
    cwd: paths.dir,
    log: componentLog(paths, 'cni-agent', h.name),
    restart: 'always',
    stopGraceMs: 5000,
  };
}

export function ztunnelProc(paths: ClusterPaths, s: ClusterState, h: HostSpec): ProcSpec {
  return {
    id: componentId('ztunnel', h.name),
    argv: inNetns(h.netns, ambit([
      'ztunnel', '--node', h.name, '--credential', paths.hostCredential(h.name), '--agent-socket', paths.ztunnelSocket(h.name),
      '--admin-addr', `127.0.0.1:${ZTUNNEL_ADMIN_PORT}`, '--metrics-addr', `0.0.0.0:${ZTUNNEL_METRICS_PORT}`, '--log-level', s.logLevel,
    ])),
    env: componentEnv(s.logLevel),
    cwd: paths.dir,
    log: componentLog(paths, 'ztunnel', h.name),
    restart: 'always',
    stopGraceMs: 8000,
  };
}

/** The local cluster's deployment controller for waypoints: runs in the root netns, as the CLI's pod commands do. */
export function waypointControllerProc(paths: ClusterPaths, s: ClusterState): ProcSpec {
  return {
    id: 'waypoint-controller',
    argv: ambit(['dev', 'waypoint-controller', '--dir', paths.dir]),
    env: componentEnv(s.logLevel),
    cwd: paths.dir,
    log: paths.componentLog('waypoint-controller'),
    restart: 'always',
    stopGraceMs: 5000,
  };
}
