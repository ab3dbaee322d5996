import fs from 'node:fs';
import path from 'node:path';
import { CNI_ARG_LABELS, CNI_ARG_SERVICE_ACCOUNT } from '../../lib/api/cni-protocol';
import { writeFileAtomic } from '../../lib/util/fs-atomic';
import { ambitCniBin, ClusterPaths, referencePluginDir } from './paths';
import { childPath, CommandError, inNetns, runAsync } from './sh';
import { CNI_NETWORK_NAME, CNI_VERSION, HostSpec, POD_BRIDGE } from './topology';

/**
 * The container runtime's CNI side, per the CNI spec's network configuration list rules:
 * ADD runs the plugins in order, each given the previous plugin's result as prevResult;
 * DEL runs them in reverse with the cached result; a failed ADD is undone by a DEL of the
 * whole list. The plugins run inside the host's netns with CNI_NETNS naming the pod's.
 *
 * The chain per host: the reference `bridge` plugin (cni0, gateway, host-local IPAM on the
 * host's pod CIDR), then Ambit's `ambit-cni`, which hands the pod to the host's agent.
 */
export interface PluginConf {
  type: string;
  [key: string]: unknown;
}

export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

export interface PodNetworkArgs {
  hostNetns: string;
  containerId: string;
  /** Path of the pod's netns (/var/run/netns/NAME). */
  netnsPath: string;
  ifName: string;
  podName: string;
  podNamespace: string;
  podUid: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

export class CniPluginError extends Error {
  constructor(
    readonly plugin: string,
    readonly command: string,
    readonly code: number | undefined,
    readonly msg: string,
    readonly details?: string,
  ) {
    super(`CNI ${command} failed in plugin ${plugin}${code !== undefined ? ` (code ${code})` : ''}: ${msg}${details ? ` (${details})` : ''}`);
    this.name = 'CniPluginError';
  }
}

export function hostConflist(paths: ClusterPaths, host: HostSpec, logLevel = 'info'): Conflist {
  return {
    cniVersion: CNI_VERSION,
    name: CNI_NETWORK_NAME,
    plugins: [
      {
        type: 'bridge',
        bridge: POD_BRIDGE,
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: host.podCidr, gateway: host.podGateway }]],
          routes: [{ dst: '0.0.0.0/0' }],
          dataDir: paths.cniIpamDir(host.name),
        },
      },
      { type: 'ambit-cni', agentSocket: paths.cniSocket(host.name), logLevel: ['error', 'warn', 'info', 'debug'].includes(logLevel) ? logLevel : 'info' },
    ],
  };
}

/** Writes each host's conflist (the runtime reads it back for every pod) and the CNI_PATH directory. */
export function installCni(paths: ClusterPaths, hosts: HostSpec[], logLevel: string): void {
  const ref = referencePluginDir();
  for (const p of ['bridge', 'host-local']) {
    if (!fs.existsSync(path.join(ref, p))) {
      throw new Error(`the reference CNI plugin ${path.join(ref, p)} is missing: apt-get install containernetworking-plugins (or set AMBIT_CNI_PLUGIN_DIR)`);
    }
  }
  fs.mkdirSync(paths.cniBinDir, { recursive: true, mode: 0o755 });
  const link = (target: string, name: string) => {
    const at = path.join(paths.cniBinDir, name);
    fs.rmSync(at, { force: true });
    fs.symlinkSync(target, at);
  };
  for (const p of fs.readdirSync(ref)) link(path.join(ref, p), p);
  link(ambitCniBin(), 'ambit-cni');
  for (const h of hosts) {
    fs.mkdirSync(paths.cniIpamDir(h.name), { recursive: true, mode: 0o700 });
    writeFileAtomic(paths.cniConflist(h.name), JSON.stringify(hostConflist(paths, h, logLevel), null, 2), 0o644);
  }
}

export function readConflist(paths: ClusterPaths, host: string): Conflist {
  return JSON.parse(fs.readFileSync(paths.cniConflist(host), 'utf8')) as Conflist;
}

/** Labels as lib/api/cni-protocol.ts documents AMBIT_POD_LABELS: k=v pairs, comma-separated, each k and v URI-encoded. */
export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join(',');
}

/** CNI_ARGS as Kubernetes runtimes pass them, plus Ambit's service account and labels. */
export function cniArgs(a: PodNetworkArgs): string {
  // The reference plugins reject a value holding "=", so the labels (k=v,...) are URI-encoded once more.
  const labels = encodeURIComponent(formatLabels(a.labels));
  return [
    'IgnoreUnknown=1',
    `K8S_POD_NAMESPACE=${a.podNamespace}`,
    `K8S_POD_NAME=${a.podName}`,
    `K8S_POD_INFRA_CONTAINER_ID=${a.containerId}`,
    `K8S_POD_UID=${a.podUid}`,
    `${CNI_ARG_SERVICE_ACCOUNT}=${a.serviceAccount}`,
    `${CNI_ARG_LABELS}=${labels}`,
  ].join(';');
}

async function invoke(paths: ClusterPaths, command: 'ADD' | 'DEL' | 'CHECK', list: Conflist, plugin: PluginConf, a: PodNetworkArgs, prevResult?: unknown): Promise<unknown> {
  const conf = { ...plugin, cniVersion: list.cniVersion, name: list.name, ...(prevResult !== undefined ? { prevResult } : {}) };
  const env: NodeJS.ProcessEnv = {
    PATH: childPath(),
    CNI_COMMAND: command,
    CNI_CONTAINERID: a.containerId,
    CNI_NETNS: a.netnsPath,
    CNI_IFNAME: a.ifName,
    CNI_ARGS: cniArgs(a),
    CNI_PATH: paths.cniBinDir,
  };
  const exe = path.join(paths.cniBinDir, plugin.type);
  let out: { code: number | null; stdout: string; stderr: string };
  try {
    out = await runAsync(inNetns(a.hostNetns, [exe]), { input: JSON.stringify(conf), env, timeoutMs: 60_000, allowFail: true });
  } catch (err) {
    throw new CniPluginError(plugin.type, command, undefined, (err as CommandError).message);
  }
  if (out.code !== 0) {
    let e: { code?: number; msg?: string; details?: string } = {};
    try {
      e = JSON.parse(out.stdout) as typeof e;
    } catch {
      // not a CNI error object
    }
    throw new CniPluginError(plugin.type, command, e.code, e.msg ?? (out.stderr.trim() || out.stdout.trim() || `exit ${out.code}`), e.details);
  }
  if (command !== 'ADD') return undefined;
  try {
    return JSON.parse(out.stdout) as unknown;
  } catch {
    throw new CniPluginError(plugin.type, command, undefined, `the result on stdout is not JSON: ${out.stdout.slice(0, 200)}`);
  }
}

/**
 * ADD through the whole list. On failure the list is DELeted in reverse (the spec's
 * cleanup) and the first error is thrown, with any cleanup problems appended.
 */
export async function cniAdd(paths: ClusterPaths, list: Conflist, a: PodNetworkArgs): Promise<{ result: unknown; added: string[] }> {
  let prev: unknown;
  const added: string[] = [];
  for (const plugin of list.plugins) {
    try {
      prev = await invoke(paths, 'ADD', list, plugin, a, prev);
      added.push(plugin.type);
    } catch (err) {
      const problems = await cniDel(paths, list, a, prev);
      if (problems.length > 0 && err instanceof Error) err.message += `\n(cleanup after the failed ADD: ${problems.join('; ')})`;
      throw err;
    }
  }
  return { result: prev, added };
}

/** DEL through the whole list in reverse. Every plugin is tried; the problems are returned. */
export async function cniDel(paths: ClusterPaths, list: Conflist, a: PodNetworkArgs, cachedResult?: unknown): Promise<string[]> {
  const problems: string[] = [];
  for (const plugin of [...list.plugins].reverse()) {
    try {
      await invoke(paths, 'DEL', list, plugin, a, cachedResult);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return problems;
}

/** The pod's IPv4 addresses from a CNI result (ips[].address without the prefix length). */
export function resultIps(result: unknown): string[] {
  const ips = (result as { ips?: Array<{ address?: string }> } | undefined)?.ips ?? [];
  return ips.map((i) => (i.address ?? '').split('/')[0]).filter((s) => s !== '');
}
