import http from 'node:http';
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
  return http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/config_dump') {
      res.setHeader('content-type', 'application/json');
      return res.end(`${JSON.stringify(configDump(d), null, 2)}\n`);
    }
    if (url === '/healthz/ready') {
      const ok = d.ready();
      res.statusCode = ok ? 200 : 503;
      return res.end(ok ? 'ready\n' : 'not ready: waiting for the identity and the first configuration\n');
    }
    if (url === '/quitquitquit' && req.method === 'POST') {
      res.end('draining\n');
      return d.quit();
    }
    if (url === '/metrics' || url === '/stats/prometheus') {
      void metrics.metrics().then((m) => {
        res.setHeader('content-type', metrics.contentType);
        res.end(m);
      });
      return;
    }
    res.statusCode = 404;
    res.end('endpoints: /config_dump /healthz/ready /metrics POST /quitquitquit\n');
  });
}
