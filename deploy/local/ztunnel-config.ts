import { ClusterOptions, clusterPaths } from './cluster';
import { httpGet } from './netns-http';
import { readCluster } from './state';
import { table } from '../../lib/util/table';
import { ZTUNNEL_ADMIN_PORT } from './topology';

/**
 * `ambit ztunnel-config`: what one ztunnel holds, from its admin /config_dump (see
 * ztunnel/admin/admin-server.ts configDump), as tables in the style of
 * `istioctl ztunnel-config` or as JSON. On a local cluster the admin endpoint is
 * 127.0.0.1:15000 inside the host's netns; elsewhere an address can be given.
 */
export const CONFIG_KINDS = ['workloads', 'services', 'policies', 'certificates', 'pods', 'all'] as const;
export type ConfigKind = (typeof CONFIG_KINDS)[number];

const ALIASES: Record<string, ConfigKind> = {
  workload: 'workloads', workloads: 'workloads', w: 'workloads',
  service: 'services', services: 'services', svc: 'services', s: 'services',
  policy: 'policies', policies: 'policies', authorization: 'policies', authorizations: 'policies', p: 'policies',
  certificate: 'certificates', certificates: 'certificates', certs: 'certificates', cert: 'certificates', secret: 'certificates', secrets: 'certificates',
  pod: 'pods', pods: 'pods',
  all: 'all',
};

export function resolveConfigKind(s: string): ConfigKind | undefined {
  return ALIASES[s.toLowerCase()];
}

export interface ZtunnelConfigOptions extends ClusterOptions {
  /** A host of the local cluster (default node1 when a cluster exists). */
  node?: string;
  /** host:port of an admin endpoint in this process's own netns (instead of a local-cluster host). */
  adminAddr?: string;
}

type Dump = {
  node?: string;
  workloads?: Array<Record<string, unknown>>;
  services?: Array<Record<string, unknown>>;
  policies?: Array<Record<string, unknown>>;
  certificates?: Array<Record<string, unknown>>;
  pods?: Array<Record<string, unknown>>;
};

export async function fetchConfigDump(o: ZtunnelConfigOptions): Promise<Dump> {
  const addr = o.adminAddr ?? `127.0.0.1:${ZTUNNEL_ADMIN_PORT}`;
  let netns: string | undefined;
  if (o.node || !o.adminAddr) {
    const state = readCluster(clusterPaths(o));
    if (state) {
      const node = o.node ?? 'node1';
      const h = state.hosts.find((x) => x.name === node);
      if (!h) throw new Error(`no host "${node}" in the local cluster (hosts: ${state.hosts.map((x) => x.name).join(', ')})`);
      netns = h.netns;
    } else if (o.node) {
      throw new Error(`no local cluster in ${clusterPaths(o).dir} to find host ${o.node} in (set AMBIT_DEV_DIR, or give --admin-addr)`);
    }
  }
  const r = await httpGet(netns, `http://${addr}/config_dump`, 5000);
  if (r.status !== 200) throw new Error(`ztunnel admin ${addr}${netns ? ` (netns ${netns})` : ''} answered ${r.status}: ${r.body.trim().slice(0, 200)}`);
  return JSON.parse(r.body) as Dump;
}

const ACTIONS = ['ALLOW', 'DENY', 'AUDIT'];
const SCOPES = ['Global', 'Namespace', 'WorkloadSelector'];

function str(v: unknown): string {
  if (v === undefined || v === null || v === '') return 'None';
  if (Array.isArray(v)) return v.length === 0 ? 'None' : v.map(String).join(',');
  return String(v);
}

export function renderConfig(d: Dump, kind: ConfigKind): string {
  const parts: string[] = [];
  const want = (k: ConfigKind) => kind === k || kind === 'all';
  if (want('workloads')) {
    parts.push(table([
      ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL'],
      ...(d.workloads ?? []).map((w) => [str(w.namespace), str(w.name), str(w.addresses), str(w.node), str(w.waypoint), str(w.protocol)]),
    ]));
  }
  if (want('services')) {
    parts.push(table([
      ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS'],
      ...(d.services ?? []).map((s) => [str(s.namespace), str(s.name), str(s.vips), str((s.waypoint as { name?: string } | undefined)?.name), String(((s.endpoints as unknown[]) ?? []).length)]),
    ]));
  }
  if (want('policies')) {
    parts.push(table([
      ['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'],
      ...(d.policies ?? []).map((p) => [
        str(p.namespace), str(p.name),
        typeof p.action === 'number' ? ACTIONS[p.action] ?? String(p.action) : str(p.action),
        typeof p.scope === 'number' ? SCOPES[p.scope] ?? String(p.scope) : str(p.scope),
      ]),
    ]));
  }
  if (want('certificates')) {
    parts.push(table([
      ['CERTIFICATE NAME', 'STATUS', 'NOT AFTER', 'REFS', 'FAILURES'],
      ...(d.certificates ?? []).map((c) => {
        const notAfter = typeof c.notAfter === 'string' ? c.notAfter : undefined;
        const status = !notAfter ? 'Unavailable' : Date.parse(notAfter) > Date.now() ? 'Available' : 'Expired';
        return [str(c.id), status, notAfter ?? 'None', str(c.refs), str(c.failures)];
      }),
    ]));
  }
  if (want('pods')) {
    parts.push(table([
      ['NAMESPACE', 'POD NAME', 'IP', 'IDENTITY', 'CONNECTIONS'],
      ...(d.pods ?? []).map((p) => [str(p.namespace), str(p.name), str(p.ips), str(p.identity), str(p.connections)]),
    ]));
  }
  return parts.join('\n');
}

export function configJson(d: Dump, kind: ConfigKind): unknown {
  return kind === 'all' ? d : (d[kind] ?? []);
}

