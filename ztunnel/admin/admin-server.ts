import type http from 'node:http';
import { createAdminServer as createProxyAdminServer } from '../../lib/telemetry/admin-http';
import type { Registry } from 'prom-client';
import { bytesToIp } from '../../lib/util/ip';
import type { SecretManager } from '../../lib/identity/secret-manager';
import type { ProxyState } from '../state/state';
import type { PodManager } from '../pods/pod-manager';

export interface AdminDeps {
  node: string;
  state: ProxyState;
  secrets: SecretManager;
  pods: PodManager;
  ready: () => boolean;
  quit: () => void;
}

/** JSON view of everything the ztunnel holds; certificates without keys. */
export function configDump(d: AdminDeps): object {
  const snap = d.state.snapshot;
  return {
    node: d.node,
    workloads: [...snap.workloads.values()].map((w) => ({
      name: w.msg.name, namespace: w.msg.namespace, node: w.msg.node, addresses: w.ips, identity: w.identity,
      protocol: w.hbone ? 'HBONE' : 'TCP', canonicalName: w.msg.canonicalName, canonicalRevision: w.msg.canonicalRevision,
      services: Object.keys(w.msg.services ?? {}), authorizationPolicies: w.msg.authorizationPolicies, mtlsMode: ['PERMISSIVE', 'STRICT', 'DISABLE'][w.msg.mtlsMode] ?? 'PERMISSIVE',
      waypoint: w.msg.waypoint ? `${w.msg.waypoint.namespace}/${w.msg.waypoint.name}` : undefined,
    })),
    services: [...snap.services.values()].map((s) => ({
      name: s.msg.name, namespace: s.msg.namespace, hostname: s.msg.hostname, vips: s.vips, ports: s.msg.ports, headless: s.msg.headless,
      endpoints: s.endpoints.map((e) => ({ workload: `${e.workload.msg.namespace}/${e.workload.msg.name}`, addresses: e.workload.ips, ports: Object.fromEntries(e.ports) })),
      waypoint: s.msg.waypoint ? { name: `${s.msg.waypoint.namespace}/${s.msg.waypoint.name}`, addresses: s.msg.waypoint.addresses.map(bytesToIp) } : undefined,
    })),
    policies: [...snap.authorizations.values()].map((a) => JSON.parse(JSON.stringify(a, (_k, v: unknown) => (v instanceof Uint8Array ? bytesToIp(v) : v)))),
    certificates: d.secrets.identities(),
    pods: [...d.pods.pods.values()].map((p) => ({ uid: p.info.uid, name: p.info.name, namespace: p.info.namespace, identity: p.identity, netns: p.info.netns, ips: p.info.ips, connections: p.connections.size })),
  };
}

export function createAdminServer(d: AdminDeps, metrics: Registry): http.Server {
  return createProxyAdminServer({ configDump: () => configDump(d), ready: d.ready, notReadyReason: 'waiting for configuration', quit: d.quit }, metrics);
}
