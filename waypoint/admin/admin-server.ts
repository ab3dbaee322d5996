import type http from 'node:http';
import { createAdminServer } from '../../lib/telemetry/admin-http';
import type { Registry } from 'prom-client';
import { bytesToIp } from '../../lib/util/ip';
import type { WaypointView } from '../state/waypoint-state';

export interface WaypointAdminDeps {
  gateway: { namespace: string; name: string };
  identity: () => { id: string; expiresAt: string } | undefined;
  view: () => WaypointView;
  ready: () => boolean;
  lastConfigError: () => string | undefined;
  quit: () => void;
}

/** What the waypoint serves and with which identity (no keys). */
export function configDump(d: WaypointAdminDeps): object {
  const v = d.view();
  return {
    gateway: `${d.gateway.namespace}/${d.gateway.name}`,
    identity: d.identity(),
    lastConfigError: d.lastConfigError(),
    services: [...v.services.entries()].map(([name, c]) => ({
      resource: name,
      service: `${c.service.namespace}/${c.service.name}`,
      hostname: c.service.hostname,
      vips: c.service.vips,
      ports: c.service.ports,
      httpRoutes: c.httpRoutes.map((r) => `${r.namespace}/${r.name}`),
      grpcRoutes: c.grpcRoutes.map((r) => `${r.namespace}/${r.name}`),
      virtualServices: c.virtualServices.map((r) => `${r.namespace}/${r.name}`),
      destinationRules: c.destinationRules.map((r) => `${r.namespace}/${r.name}`),
      authorizationPolicies: c.authorizationPolicies.map((r) => `${r.namespace}/${r.name}`),
      requestAuthentications: c.requestAuthentications.map((r) => `${r.namespace}/${r.name}`),
      endpoints: (v.mesh.servicesByHost.get(c.service.hostname)?.endpoints ?? []).map((e) => ({
        workload: `${e.workload.msg.namespace}/${e.workload.msg.name}`, addresses: e.workload.ips, identity: e.workload.identity, labels: e.workload.msg.labels,
      })),
    })),
    workloads: v.mesh.workloads.size,
    meshServices: [...v.mesh.services.values()].map((s) => ({ name: `${s.msg.namespace}/${s.msg.name}`, vips: s.msg.vips.map(bytesToIp) })),
  };
}

export function createWaypointAdmin(d: WaypointAdminDeps, metrics: Registry): http.Server {
  return createAdminServer({ configDump: () => configDump(d), ready: d.ready, notReadyReason: 'waiting for the identity and the first configuration', quit: d.quit }, metrics);
}
