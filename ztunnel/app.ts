import fs from 'node:fs';
import type http from 'node:http';
import { AmbitClient } from '../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../lib/api/client-config';
import { AgentMessage, DEFAULT_ZTUNNEL_SOCKET } from '../lib/api/node-protocol';
import { HboneClient } from '../lib/hbone/client';
import { SecretManager } from '../lib/identity/secret-manager';
import { createLogger, Logger } from '../lib/telemetry/log';
import { XdsClient } from '../lib/xds/client';
import { createAdminServer } from './admin/admin-server';
import { createMetricsServer, listenOn } from '../lib/telemetry/admin-http';
import { DnsProxy } from './dns/server';
import { AgentLink } from './pods/agent-link';
import { PodManager } from './pods/pod-manager';
import { Inbound } from './proxy/inbound';
import { Outbound } from './proxy/outbound';
import { NetnsPodNetwork, PodNetwork } from './proxy/pod-network';
import { ProxyState } from './state/state';
import { ZtunnelMetrics } from './telemetry/metrics';

export interface ZtunnelOptions {
  node: string;
  /** Node credential (client-config format) written by the node agent. */
  credentialFile: string;
  agentSocket: string;
  adminAddress: string;
  metricsAddress: string;
  trustDomain: string;
  dnsUpstream?: string;
  drainMs: number;
  logger?: Logger;
  /** Tests substitute the socket layer; production opens sockets inside pod netns. */
  network?: (netns: string) => PodNetwork;
}

export const ZTUNNEL_DEFAULTS = {
  agentSocket: DEFAULT_ZTUNNEL_SOCKET,
  adminAddress: '127.0.0.1:15000',
  metricsAddress: '0.0.0.0:15020',
  trustDomain: 'cluster.local',
  drainMs: 5000,
};

/** Composition root: config in, running proxy out. */
export class Ztunnel {
  readonly log: Logger;
  readonly metrics = new ZtunnelMetrics();
  readonly state = new ProxyState();
  readonly hbone = new HboneClient();
  private client!: AmbitClient;
  private xds!: XdsClient;
  secrets!: SecretManager;
  pods!: PodManager;
  private agent!: AgentLink;
  private admin?: http.Server;
  private metricsServer?: http.Server;
  adminPort = 0;
  metricsPort = 0;

  constructor(readonly o: ZtunnelOptions) {
    this.log = o.logger ?? createLogger('ztunnel').child({ node: o.node });
  }

  async start(): Promise<void> {
    const cfg = loadClientConfig(this.o.credentialFile);
    this.client = new AmbitClient(dialFromConfig(cfg));
    // The agent renews the node certificate in place; the CA calls always use the current client.
    const source = { createCertificate: (csr: string, ns: string, sa: string) => this.client.createCertificate(csr, ns, sa) };
    this.secrets = new SecretManager(source, {
      trustDomain: this.o.trustDomain,
      onRotate: (svid) => this.pods?.rotated(svid),
      onError: (id, err) => this.log.warn({ identity: id, err: err.message }, 'certificate fetch failed; retrying with backoff'),
    });
    const outbound = new Outbound({ state: this.state, hbone: this.hbone, secrets: this.secrets, metrics: this.metrics, log: this.log });
    const inbound = new Inbound({ state: this.state, trustDomain: this.o.trustDomain, metrics: this.metrics, log: this.log });
    const dns = new DnsProxy({ state: this.state, upstream: this.o.dnsUpstream, log: this.log });
    this.pods = new PodManager({
      trustDomain: this.o.trustDomain, secrets: this.secrets, outbound, inbound, dns, metrics: this.metrics, log: this.log,
      network: this.o.network ?? ((netns) => new NetnsPodNetwork(netns)),
    });
    this.startXds();
    fs.watchFile(this.o.credentialFile, { interval: 10_000 }, () => this.reloadCredential());
    this.agent = new AgentLink(this.o.agentSocket, (m) => this.onAgent(m), this.log);
    this.agent.start();
    const adminDeps = { node: this.o.node, state: this.state, secrets: this.secrets, pods: this.pods, ready: () => this.state.synced, quit: () => void this.stop() };
    this.admin = createAdminServer(adminDeps, this.metrics.registry);
    this.adminPort = await listenOn(this.admin, this.o.adminAddress);
    this.metricsServer = createMetricsServer(this.metrics.registry);
    this.metricsPort = await listenOn(this.metricsServer, this.o.metricsAddress);
    this.log.info({ admin: this.o.adminAddress, metrics: this.o.metricsAddress, agent: this.o.agentSocket }, 'ztunnel started');
  }

  private startXds(known?: Map<string, string>): void {
    this.xds = new XdsClient(this.client, {
      subscriber: { type: 'ztunnel', name: this.o.node },
      onUpdate: (u) => {
        try {
          this.state.apply(u);
        } catch (err) {
          this.metrics.xdsNacks.inc();
          this.log.warn({ err: (err as Error).message }, 'refused a configuration update; keeping the last good one');
          throw err;
        }
      },
      onError: (err) => this.log.warn({ err: err.message }, 'control plane stream failed; serving the last good configuration and retrying'),
    });
    if (known) for (const [k, v] of known) this.xds.versions.set(k, v);
    this.xds.start();
  }

  /** A renewed node certificate: reconnect with it, announcing what we already hold. */
  private reloadCredential(): void {
    try {
      const cfg = loadClientConfig(this.o.credentialFile);
      const old = this.client;
      this.client = new AmbitClient(dialFromConfig(cfg));
      const known = new Map(this.xds.versions);
      this.xds.stop();
      this.startXds(known);
      old.close();
      this.log.info('node credential changed; reconnected with it');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'node credential changed but cannot be loaded; keeping the current one');
    }
  }

  private async onAgent(m: AgentMessage): Promise<void> {
    if (m.type === 'snapshot') await this.pods.snapshot(m.pods);
    else if (m.type === 'add') await this.pods.add(m.pod);
    else if (m.type === 'del') this.pods.remove(m.uid);
  }

  /** SIGTERM: stop accepting, let connections finish for the grace period, then close the rest. */
  async stop(): Promise<void> {
    this.log.info({ drainMs: this.o.drainMs }, 'draining');
    this.agent?.stop();
    this.pods?.stopAccepting();
    const end = Date.now() + this.o.drainMs;
    while (this.pods && this.pods.activeConnections() > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    this.pods?.closeAll();
    fs.unwatchFile(this.o.credentialFile);
    this.xds?.stop();
    this.secrets?.stop();
    this.hbone.close();
    this.client?.close();
    await Promise.all([this.admin, this.metricsServer].map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
    this.admin?.closeAllConnections();
    this.metricsServer?.closeAllConnections();
  }
}
