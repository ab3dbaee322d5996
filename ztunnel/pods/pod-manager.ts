import fs from 'node:fs';
import type { PodInfo } from '../../lib/api/node-protocol';
import { PORT_DNS, PORT_HBONE, PORT_INBOUND_PLAINTEXT, PORT_OUTBOUND } from '../../lib/api/node-protocol';
import { createHboneServer, HboneServer } from '../../lib/hbone/server';
import type { SecretManager, Svid } from '../../lib/identity/secret-manager';
import { workloadId } from '../../lib/identity/spiffe';
import type { Logger } from '../../lib/telemetry/log';
import type { DnsProxy } from '../dns/server';
import type { Inbound } from '../proxy/inbound';
import type { LocalPod } from '../proxy/local-pod';
import type { Outbound } from '../proxy/outbound';
import type { PodNetwork } from '../proxy/pod-network';
import type { ZtunnelMetrics } from '../telemetry/metrics';

export interface PodManagerDeps {
  trustDomain: string;
  secrets: SecretManager;
  outbound: Outbound;
  inbound: Inbound;
  dns: DnsProxy;
  metrics: ZtunnelMetrics;
  log: Logger;
  network: (netns: string) => PodNetwork;
}


/** The pods this ztunnel serves: listeners opened inside each pod's netns, certificates held for their identities. */
export class PodManager {
  readonly pods = new Map<string, LocalPod & { hbone?: HboneServer; netnsIno: number }>();
  private draining = false;

  constructor(private readonly d: PodManagerDeps) {}

  async snapshot(pods: PodInfo[]): Promise<void> {
    const keep = new Set(pods.map((p) => p.uid));
    for (const uid of [...this.pods.keys()]) if (!keep.has(uid)) this.remove(uid);
    const errors: string[] = [];
    for (const p of pods) {
      try {
        await this.add(p);
      } catch (err) {
        errors.push(`${p.namespace}/${p.name}: ${(err as Error).message}`);
      }
    }
    if (errors.length) throw new Error(errors.join('; '));
  }

  async add(info: PodInfo): Promise<void> {
    if (this.draining) throw new Error('ztunnel is draining');
    const ino = fs.statSync(info.netns).ino;
    const existing = this.pods.get(info.uid);
    if (existing && existing.netnsIno === ino) return;
    if (existing) this.remove(info.uid);
    const identity = workloadId(this.d.trustDomain, info.namespace, info.serviceAccount);
    const svid = await this.d.secrets.acquire(info.namespace, info.serviceAccount);
    const net = this.d.network(info.netns);
    const pod: LocalPod & { hbone?: HboneServer; netnsIno: number } = { info, identity, net, servers: [], udp: [], connections: new Set(), netnsIno: ino };
    try {
      const out = net.listenTcp(PORT_OUTBOUND);
      out.on('connection', (c) => this.d.outbound.handle(pod, c));
      pod.servers.push(out);
      const plain = net.listenTcp(PORT_INBOUND_PLAINTEXT);
      plain.on('connection', (c) => this.d.inbound.plaintext(pod, c));
      pod.servers.push(plain);
      const hbone = createHboneServer({
        certChainPem: svid.certChainPem,
        keyPem: svid.keyPem,
        rootPem: svid.rootPem,
        onTunnel: (ctx, stream) => this.d.inbound.tunnel(pod, ctx, stream),
      });
      hbone.listen({ fd: net.listenTcpFd(PORT_HBONE) });
      pod.hbone = hbone;
      pod.servers.push(hbone as unknown as import('node:net').Server);
      // DNS is redirected from the pod's own OUTPUT chain, i.e. to loopback. Bound there, replies
      // leave from the address conntrack expects and are translated back to the resolver the app asked.
      const v6only = info.ips.length > 0 && info.ips.every((ip) => ip.includes(':'));
      const loopback = v6only ? '::1' : '127.0.0.1';
      const dnsTcp = net.listenTcp(PORT_DNS, loopback);
      const dnsUdp = net.bindUdp(PORT_DNS, loopback);
      this.d.dns.serve(dnsUdp, dnsTcp, info.namespace);
      pod.servers.push(dnsTcp);
      pod.udp.push(dnsUdp);
    } catch (err) {
      this.close(pod);
      this.d.secrets.release(info.namespace, info.serviceAccount);
      throw new Error(`cannot open listeners in ${info.netns}: ${(err as Error).message}`);
    }
    this.pods.set(info.uid, pod);
    this.d.metrics.pods.set(this.pods.size);
    this.d.log.info({ pod: `${info.namespace}/${info.name}`, identity, ips: info.ips }, 'pod enrolled');
  }

  remove(uid: string): void {
    const pod = this.pods.get(uid);
    if (!pod) return;
    this.pods.delete(uid);
    this.close(pod);
    for (const c of pod.connections) c.close();
    this.d.secrets.release(pod.info.namespace, pod.info.serviceAccount);
    this.d.metrics.pods.set(this.pods.size);
    this.d.log.info({ pod: `${pod.info.namespace}/${pod.info.name}` }, 'pod removed');
  }

  /** A certificate rotated: new handshakes of every pod with that identity use it. */
  rotated(svid: Svid): void {
    for (const p of this.pods.values()) if (p.identity === svid.id) p.hbone?.rotate(svid.certChainPem, svid.keyPem, svid.rootPem);
  }

  private close(pod: LocalPod & { hbone?: HboneServer }): void {
    // GOAWAY too: clients must not open new tunnels on sessions they already have.
    pod.hbone?.drain();
    for (const s of pod.servers) s.close();
    for (const u of pod.udp) {
      try {
        u.close();
      } catch {
        // already closed
      }
    }
  }

  /** Stops accepting on every pod; connections in flight go on until they end or the grace period does. */
  stopAccepting(): void {
    this.draining = true;
    for (const p of this.pods.values()) this.close(p);
  }

  activeConnections(): number {
    let n = 0;
    for (const p of this.pods.values()) n += p.connections.size;
    return n;
  }

  closeAll(): void {
    for (const uid of [...this.pods.keys()]) this.remove(uid);
  }
}
