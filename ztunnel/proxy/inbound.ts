import type http2 from 'node:http2';
import type net from 'node:net';
import { MtlsMode } from '../../lib/api/workload-types';
import type { TunnelContext } from '../../lib/hbone/server';
import { classify } from '../../lib/identity/spiffe';
import { authorize, ConnectionAttributes } from '../../lib/policy/authorize';
import type { Logger } from '../../lib/telemetry/log';
import { bytesToIp, ipToBytes } from '../../lib/util/ip';
import type { ProxyState } from '../state/state';
import type { Snapshot, WorkloadView } from '../../lib/mesh/snapshot';
import { ConnectionRecord } from '../telemetry/connection';
import type { ZtunnelMetrics } from '../telemetry/metrics';
import type { LocalPod } from './local-pod';
import { abort, splice } from './splice';

export interface InboundDeps {
  state: ProxyState;
  trustDomain: string;
  metrics: ZtunnelMetrics;
  log: Logger;
}

interface Tracked {
  pod: LocalPod;
  attrs: ConnectionAttributes;
  close(): void;
}

/**
 * Inbound, served in phases: context (who is calling, to what), authorize, connect to the
 * application inside the pod, answer 200, copy. Connections stay tracked so that a policy
 * change that denies them closes them at once.
 */
export class Inbound {
  private readonly active = new Set<Tracked>();

  constructor(private readonly d: InboundDeps) {
    d.state.onChange((snap) => this.reevaluate(snap));
  }

  /** An HBONE CONNECT on the pod's 15008. */
  tunnel(pod: LocalPod, ctx: TunnelContext, stream: http2.ServerHttp2Stream): void {
    const snap = this.d.state.snapshot;
    const peer = ctx.peerIdentity ? classify(ctx.peerIdentity, this.d.trustDomain) : null;
    const source = snap.workloadsByIp.get(ctx.remoteAddress);
    const target = parseAuthority(ctx.authority);
    const dest = target ? snap.workloadsByIp.get(target.address) : undefined;
    const rec = new ConnectionRecord(
      {
        reporter: 'destination', source, sourcePrincipal: ctx.peerIdentity, sourceAddress: `${ctx.remoteAddress}:${ctx.remotePort}`,
        destination: dest, destinationPrincipal: pod.identity, destinationAddress: ctx.authority, mtls: true,
        destinationService: serviceOf(snap, dest),
      },
      this.d.metrics,
      this.d.log,
    );
    const refuse = (status: number, flag: string, why: string) => {
      if (status === 401 || status === 403) this.d.metrics.denied.inc({ reporter: 'destination', reason: flag });
      stream.respond({ ':status': status }, { endStream: true });
      rec.close(flag, why);
    };
    if (!peer || peer.role !== 'workload') {
      refuse(401, 'RBAC', `peer ${ctx.peerIdentity ?? '(no identity)'} is not a workload of trust domain ${this.d.trustDomain}`);
      return;
    }
    if (!target || !pod.info.ips.includes(target.address)) {
      refuse(400, 'NR', `authority "${ctx.authority}" is not an address of pod ${pod.info.namespace}/${pod.info.name}`);
      return;
    }
    if (!dest) {
      // Without the workload's config its policies are unknown: fail closed.
      refuse(503, 'NR', `pod ${pod.info.namespace}/${pod.info.name} is not in this ztunnel's configuration yet`);
      return;
    }
    const attrs: ConnectionAttributes = {
      principal: ctx.peerIdentity!.slice('spiffe://'.length),
      namespace: peer.namespace,
      sourceIp: ipToBytes(ctx.remoteAddress),
      destinationIp: ipToBytes(target.address),
      destinationPort: target.port,
    };
    const decision = authorize(snap.policiesFor(dest), attrs);
    if (decision.audited.length) this.d.log.info({ audit: decision.audited, src: ctx.peerIdentity, dst: ctx.authority, allowed: decision.allowed }, 'audit policy matched');
    if (!decision.allowed) {
      refuse(403, 'RBAC', decision.reason);
      return;
    }
    const upstream = pod.net.connect(target.address, target.port);
    upstream.setNoDelay(true);
    const tracked: Tracked = { pod, attrs, close: () => abort(stream) };
    upstream.once('connect', () => {
      if (stream.destroyed) {
        abort(upstream);
        rec.close('DC');
        return;
      }
      rec.open();
      stream.respond({ ':status': 200 });
      this.active.add(tracked);
      pod.connections.add(tracked);
      splice(stream, upstream, rec, () => {
        this.active.delete(tracked);
        pod.connections.delete(tracked);
      });
    });
    upstream.once('error', (err) => {
      if (!upstream.remoteAddress || upstream.connecting) {
        if (!stream.destroyed && !stream.headersSent) {
          stream.respond({ ':status': 503 }, { endStream: true });
        }
        rec.close('UF', `cannot reach the application at ${ctx.authority}: ${err.message}`);
      }
    });
    stream.once('close', () => {
      if (upstream.connecting) abort(upstream);
    });
  }

  /** Plaintext on the pod's 15006, from a caller outside the mesh: PeerAuthentication decides, then policy without identity. */
  plaintext(pod: LocalPod, client: net.Socket): void {
    client.setNoDelay(true);
    client.on('error', () => undefined);
    let dst: { address: string; port: number };
    try {
      dst = pod.net.originalDst(client);
    } catch {
      abort(client);
      return;
    }
    const snap = this.d.state.snapshot;
    const dest = snap.workloadsByIp.get(dst.address);
    const source = snap.workloadsByIp.get(client.remoteAddress ?? '');
    const rec = new ConnectionRecord(
      {
        reporter: 'destination', source, sourcePrincipal: null, sourceAddress: `${client.remoteAddress}:${client.remotePort}`,
        destination: dest, destinationPrincipal: pod.identity, destinationAddress: `${dst.address}:${dst.port}`, mtls: false,
        destinationService: serviceOf(snap, dest),
      },
      this.d.metrics,
      this.d.log,
    );
    if (!dest || !pod.info.ips.includes(dst.address)) {
      rec.close('NR', `plaintext to ${dst.address}:${dst.port}, which is not this pod's or not in config yet`);
      abort(client);
      return;
    }
    const mode = dest.msg.portMtls?.[dst.port] ?? dest.msg.mtlsMode;
    if (mode === MtlsMode.STRICT) {
      this.d.metrics.denied.inc({ reporter: 'destination', reason: 'mtls-strict' });
      rec.close('RBAC', `PeerAuthentication STRICT refuses plaintext from ${client.remoteAddress}`);
      abort(client);
      return;
    }
    const attrs: ConnectionAttributes = {
      principal: null,
      namespace: null,
      sourceIp: ipToBytes(normalize(client.remoteAddress ?? '0.0.0.0')),
      destinationIp: ipToBytes(dst.address),
      destinationPort: dst.port,
    };
    const decision = authorize(snap.policiesFor(dest), attrs);
    if (!decision.allowed) {
      this.d.metrics.denied.inc({ reporter: 'destination', reason: 'RBAC' });
      rec.close('RBAC', decision.reason);
      abort(client);
      return;
    }
    const upstream = pod.net.connect(dst.address, dst.port);
    upstream.setNoDelay(true);
    const tracked: Tracked = { pod, attrs, close: () => abort(client) };
    upstream.once('connect', () => {
      rec.open();
      this.active.add(tracked);
      pod.connections.add(tracked);
      splice(client, upstream, rec, () => {
        this.active.delete(tracked);
        pod.connections.delete(tracked);
      });
    });
    upstream.once('error', (err) => {
      if (!upstream.remoteAddress || upstream.connecting) {
        rec.close('UF', err.message);
        abort(client);
      }
    });
  }

  /** New policy applies to existing connections too: close the ones it now denies. */
  private reevaluate(snap: Snapshot): void {
    for (const t of this.active) {
      const dest: WorkloadView | undefined = snap.workloadsByIp.get(bytesToIp(t.attrs.destinationIp));
      const allowed = dest ? authorize(snap.policiesFor(dest), t.attrs).allowed : false;
      if (!allowed) {
        this.d.log.info({ pod: `${t.pod.info.namespace}/${t.pod.info.name}`, principal: t.attrs.principal }, 'closing a connection the new policy denies');
        this.d.metrics.denied.inc({ reporter: 'destination', reason: 'policy-change' });
        this.active.delete(t);
        t.close();
      }
    }
  }
}

/**
 * The service a destination workload serves, from mesh metadata only (never from what the
 * caller sends): known when the workload backs exactly one service.
 */
function serviceOf(snap: Snapshot, w: WorkloadView | undefined): { name: string; namespace: string; hostname: string } | undefined {
  const refs = Object.keys(w?.msg.services ?? {});
  if (refs.length !== 1) return undefined;
  const host = refs[0].slice(refs[0].indexOf('/') + 1);
  const svc = snap.servicesByHost.get(host);
  return svc && { name: svc.msg.name, namespace: svc.msg.namespace, hostname: svc.msg.hostname };
}

function parseAuthority(a: string): { address: string; port: number } | null {
  const m = /^\[?([0-9a-fA-F:.]+)\]?:(\d{1,5})$/.exec(a);
  if (!m) return null;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { address: m[1], port } : null;
}

function normalize(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}
