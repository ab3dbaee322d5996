import type net from 'node:net';
import { PORT_DNS, PORT_HBONE, PORT_INBOUND_PLAINTEXT, PORT_OUTBOUND } from '../../lib/api/node-protocol';
import { HboneClient } from '../../lib/hbone/client';
import { HboneError } from '../../lib/hbone/errors';
import { H_BAGGAGE, H_FORWARDED } from '../../lib/hbone/settings';
import type { SecretManager } from '../../lib/identity/secret-manager';
import type { Logger } from '../../lib/telemetry/log';
import { bytesToIp } from '../../lib/util/ip';
import type { ProxyState } from '../state/state';
import type { ServiceView, Snapshot, WorkloadView } from '../../lib/mesh/snapshot';
import { ConnectionRecord } from '../telemetry/connection';
import type { ZtunnelMetrics } from '../telemetry/metrics';
import type { LocalPod } from './local-pod';
import { abort, splice } from './splice';

export interface OutboundDeps {
  state: ProxyState;
  hbone: HboneClient;
  secrets: SecretManager;
  metrics: ZtunnelMetrics;
  log: Logger;
  pick?: (n: number) => number;
}

/** Where a captured connection goes. */
interface Route {
  kind: 'hbone' | 'passthrough';
  address: string;
  port: number;
  /** HBONE only: the peer's tunnel port and the identities it may present. */
  tunnelPort?: number;
  identities?: string[];
  authority?: string;
  destination?: WorkloadView;
  service?: ServiceView;
}

const OWN_PORTS = new Set([PORT_OUTBOUND, PORT_INBOUND_PLAINTEXT, PORT_HBONE, PORT_DNS]);

/** Outbound capture (15001): original destination -> service or workload -> HBONE tunnel or passthrough. */
export class Outbound {
  constructor(private readonly d: OutboundDeps) {}

  handle(pod: LocalPod, client: net.Socket): void {
    client.setNoDelay(true);
    client.on('error', () => undefined);
    let dst: { address: string; port: number };
    try {
      dst = pod.net.originalDst(client);
    } catch (err) {
      this.d.log.warn({ pod: pod.info.name, err: (err as Error).message }, 'outbound: no original destination; closing');
      abort(client);
      return;
    }
    // A connection to our own listener would loop through the proxy until fds run out.
    if (OWN_PORTS.has(dst.port) && pod.info.ips.includes(dst.address)) {
      abort(client);
      return;
    }
    const snap = this.d.state.snapshot;
    const source = pod.info.ips.map((ip) => snap.workloadsByIp.get(ip)).find((w) => w !== undefined);
    const route = this.route(snap, dst);
    const rec = new ConnectionRecord(
      {
        reporter: 'source',
        source,
        sourcePrincipal: pod.identity,
        sourceAddress: `${client.remoteAddress}:${client.remotePort}`,
        destination: route?.destination,
        destinationPrincipal: route?.identities?.[0] ?? null,
        destinationAddress: route ? `${route.address}:${route.port}` : `${dst.address}:${dst.port}`,
        destinationService: route?.service && { name: route.service.msg.name, namespace: route.service.msg.namespace, hostname: route.service.msg.hostname },
        mtls: route?.kind === 'hbone',
      },
      this.d.metrics,
      this.d.log,
    );
    if (!route) {
      rec.close('UH', `no ready endpoint (or no waypoint instance) for ${dst.address}:${dst.port}`);
      abort(client);
      return;
    }
    rec.open();
    const entry = { close: () => abort(client) };
    pod.connections.add(entry);
    const done = () => pod.connections.delete(entry);
    if (route.kind === 'passthrough') {
      const upstream = pod.net.connect(route.address, route.port);
      upstream.setNoDelay(true);
      upstream.once('connect', () => splice(client, upstream, rec, done));
      upstream.once('error', (err) => {
        if (upstream.connecting || !upstream.remoteAddress) {
          rec.close('UF', err.message);
          abort(client);
          done();
        }
      });
      return;
    }
    client.pause();
    void this.tunnel(pod, client, route)
      .then((stream) => {
        if (client.destroyed) {
          abort(stream);
          rec.close('DC');
          done();
          return;
        }
        splice(client, stream, rec, done);
        client.resume();
      })
      .catch((err: Error) => {
        const flag = err instanceof HboneError ? (err.code === 'Denied' ? 'RBAC' : err.code === 'UpstreamUnavailable' ? 'UF' : err.code === 'IdentityMismatch' || err.code === 'TlsFailed' ? 'UF,URX' : 'UF') : 'UF';
        this.d.log.warn({ pod: pod.info.name, dst: `${route.address}:${route.port}`, err: err.message }, 'outbound: tunnel failed');
        rec.close(flag, err.message);
        abort(client);
        done();
      });
  }

  private async tunnel(pod: LocalPod, client: net.Socket, route: Route) {
    const svid = this.d.secrets.peek(pod.identity) ?? (await this.d.secrets.get(pod.identity));
    const t = await this.d.hbone.open({
      sourceId: pod.identity,
      sourceContext: svid.context,
      peerAddress: route.address,
      peerPort: route.tunnelPort ?? PORT_HBONE,
      expectedIdentities: route.identities ?? [],
      authority: route.authority ?? `${route.address}:${route.port}`,
      headers: {
        [H_FORWARDED]: `for=${forwardedFor(client.remoteAddress ?? '')}`,
        [H_BAGGAGE]: `k8s.namespace.name=${pod.info.namespace},k8s.pod.name=${pod.info.name}`,
      },
      dial: (host, port) => pod.net.connect(host, port),
    });
    return t.stream;
  }

  /** Service VIP -> a ready endpoint (or its waypoint); workload IP -> that workload; anything else passes through. */
  private route(snap: Snapshot, dst: { address: string; port: number }): Route | undefined {
    const svc = snap.servicesByVip.get(dst.address);
    if (svc) {
      const wp = svc.msg.waypoint;
      // Bound to a waypoint that has no instance: its L7 policy cannot be applied, so refuse rather than bypass it.
      if (wp && wp.addresses.length === 0) return undefined;
      if (wp) {
        const addr = bytesToIp(wp.addresses[this.pick(wp.addresses.length)]);
        const wpWorkload = snap.workloadsByIp.get(addr);
        return {
          kind: 'hbone', address: addr, port: dst.port, tunnelPort: wp.hbonePort || PORT_HBONE,
          identities: wpWorkload ? [wpWorkload.identity] : [],
          authority: `${dst.address}:${dst.port}`, destination: wpWorkload, service: svc,
        };
      }
      const ready = svc.endpoints.filter((e) => e.ports.has(dst.port) && e.workload.ips.length > 0);
      if (ready.length === 0) return undefined;
      const ep = ready[this.pick(ready.length)];
      const port = ep.ports.get(dst.port)!;
      return this.toWorkload(ep.workload, ep.workload.ips[0], port, svc);
    }
    const w = snap.workloadsByIp.get(dst.address);
    if (w) return this.toWorkload(w, dst.address, dst.port);
    return { kind: 'passthrough', address: dst.address, port: dst.port };
  }

  private toWorkload(w: WorkloadView, address: string, port: number, service?: ServiceView): Route | undefined {
    if (!w.hbone) return { kind: 'passthrough', address, port, destination: w, service };
    const wp = w.msg.waypoint;
    if (wp && !service) {
      // A waypoint with no instance cannot apply its policy: refuse rather than bypass it.
      if (wp.addresses.length === 0) return undefined;
      const addr = bytesToIp(wp.addresses[this.pick(wp.addresses.length)]);
      const wpWorkload = this.d.state.snapshot.workloadsByIp.get(addr);
      return { kind: 'hbone', address: addr, port, tunnelPort: wp.hbonePort || PORT_HBONE, identities: wpWorkload ? [wpWorkload.identity] : [], authority: `${address}:${port}`, destination: w };
    }
    return { kind: 'hbone', address, port, tunnelPort: PORT_HBONE, identities: [w.identity], authority: `${address}:${port}`, destination: w, service };
  }

  private pick(n: number): number {
    return this.d.pick ? this.d.pick(n) : Math.floor(Math.random() * n);
  }
}

function forwardedFor(ip: string): string {
  return ip.includes(':') ? `"[${ip}]"` : ip;
}
