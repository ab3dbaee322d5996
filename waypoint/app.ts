import fs from 'node:fs';
import type http from 'node:http';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { AmbitClient } from '../lib/api/client';
import { ClientConfig, dialFromConfig, loadClientConfig } from '../lib/api/client-config';
import { createHboneServer, HboneServer, TunnelContext as HboneTunnel } from '../lib/hbone/server';
import { spiffeIdOfCert } from '../lib/identity/peer';
import { createLogger, Logger } from '../lib/telemetry/log';
import { XdsClient } from '../lib/xds/client';
import type http2 from 'node:http2';
import { createWaypointAdmin } from './admin/admin-server';
import { createMetricsServer, listenOn } from '../lib/telemetry/admin-http';
import { WaypointEngine } from './engine';
import { WaypointState } from './state/waypoint-state';
import { WaypointTelemetry } from './telemetry/request-telemetry';
import { HboneConnector } from './upstream/hbone-connector';

export interface WaypointOptions {
  /** The Gateway (gatewayClassName istio-waypoint) this instance serves. */
  namespace: string;
  name: string;
  /** The pod's credential (client-config format) that the node agent keeps renewed. */
  credentialFile: string;
  hboneAddress: string;
  adminAddress: string;
  metricsAddress: string;
  otlpEndpoint?: string;
  drainMs: number;
  /** How long to wait at start for the node agent to write the credential. */
  credentialWaitMs: number;
  logger?: Logger;
}

export const WAYPOINT_DEFAULTS = {
  hboneAddress: '0.0.0.0:15008',
  adminAddress: '127.0.0.1:15000',
  metricsAddress: '0.0.0.0:15020',
  drainMs: 5000,
  credentialWaitMs: 120_000,
};

interface Identity {
  id: string;
  trustDomain: string;
  expiresAt: string;
  context: tls.SecureContext;
  cfg: ClientConfig;
}

/** Composition root of `ambit waypoint`: identity, config stream, HBONE listener, L7 engine, admin. */
export class Waypoint {
  readonly log: Logger;
  readonly registry = new Registry();
  readonly state = new WaypointState();
  private identity!: Identity;
  private client!: AmbitClient;
  private xds!: XdsClient;
  private server!: HboneServer;
  private engine!: WaypointEngine;
  private telemetry!: WaypointTelemetry;
  private connector!: HboneConnector;
  private admin?: http.Server;
  private metricsServer?: http.Server;
  private lastConfigError: string | undefined;
  private stopping = false;
  hbonePort = 0;
  adminPort = 0;
  metricsPort = 0;

  constructor(readonly o: WaypointOptions) {
    this.log = o.logger ?? createLogger('waypoint').child({ gateway: `${o.namespace}/${o.name}` });
  }

  async start(): Promise<void> {
    await this.waitForCredential();
    this.identity = this.loadIdentity();
    collectDefaultMetrics({ register: this.registry });
    this.telemetry = new WaypointTelemetry({
      registry: this.registry,
      log: this.log,
      otlpEndpoint: this.o.otlpEndpoint,
      serviceName: `${this.o.name}.${this.o.namespace}`,
      // The log itself is batched (createLogger's buffered destination); lines reach it in batches too.
      accessLog: { batchChars: 8192, flushMs: 250 },
    });
    this.connector = new HboneConnector(() => this.identity);
    this.engine = new WaypointEngine({
      connector: { connect: (target, opts) => this.connector.connect(target, opts) },
      telemetry: this.telemetry,
      log: this.log,
      trustDomain: this.identity.trustDomain,
    });
    this.server = createHboneServer({
      certChainPem: this.identity.cfg.clientCertificate,
      keyPem: this.identity.cfg.clientKey,
      rootPem: this.identity.cfg.certificateAuthority,
      onTunnel: (ctx, stream) => this.onTunnel(ctx, stream),
    });
    this.hbonePort = await listenOn(this.server, this.o.hboneAddress);
    this.client = new AmbitClient(dialFromConfig(this.identity.cfg));
    this.startXds();
    fs.watchFile(this.o.credentialFile, { interval: 5_000 }, () => this.reloadCredential());
    this.admin = createWaypointAdmin(
      {
        gateway: { namespace: this.o.namespace, name: this.o.name },
        identity: () => ({ id: this.identity.id, expiresAt: this.identity.expiresAt }),
        view: () => this.state.view,
        ready: () => this.state.synced && !this.stopping,
        lastConfigError: () => this.lastConfigError,
        quit: () => void this.stop(),
      },
      this.registry,
    );
    this.adminPort = await listenOn(this.admin, this.o.adminAddress);
    this.metricsServer = createMetricsServer(this.registry);
    this.metricsPort = await listenOn(this.metricsServer, this.o.metricsAddress);
    this.log.info({ identity: this.identity.id, hbone: this.o.hboneAddress, admin: this.o.adminAddress, metrics: this.o.metricsAddress }, 'waypoint started');
  }

  private async waitForCredential(): Promise<void> {
    const end = Date.now() + this.o.credentialWaitMs;
    let told = false;
    while (!fs.existsSync(this.o.credentialFile)) {
      if (Date.now() > end) {
        throw new Error(
          `no credential at ${this.o.credentialFile} after ${Math.round(this.o.credentialWaitMs / 1000)} s: the node agent writes it once the pod is registered; is the pod labelled gateway.networking.k8s.io/gateway-name=${this.o.name} with service account ${this.o.name}?`,
        );
      }
      if (!told) {
        this.log.info({ credential: this.o.credentialFile }, 'waiting for the node agent to write the waypoint credential');
        told = true;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private loadIdentity(): Identity {
    const cfg = loadClientConfig(this.o.credentialFile);
    const leaf = new X509Certificate(cfg.clientCertificate);
    const id = spiffeIdOfCert(leaf.raw);
    const m = id ? /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(id) : null;
    if (!id || !m) throw new Error(`${this.o.credentialFile}: the certificate carries no workload SPIFFE ID`);
    if (m[2] !== this.o.namespace || m[3] !== this.o.name) {
      throw new Error(`${this.o.credentialFile} is ${id}, but waypoint ${this.o.namespace}/${this.o.name} must run as service account ${this.o.name} in namespace ${this.o.namespace}`);
    }
    return {
      id,
      trustDomain: m[1],
      expiresAt: new Date(leaf.validTo).toISOString(),
      context: tls.createSecureContext({ cert: cfg.clientCertificate, key: cfg.clientKey, ca: cfg.certificateAuthority, minVersion: 'TLSv1.3' }),
      cfg,
    };
  }

  private startXds(known?: Map<string, string>): void {
    this.xds = new XdsClient(this.client, {
      subscriber: { type: 'waypoint', name: `${this.o.namespace}/${this.o.name}` },
      onUpdate: (u) => {
        const next = this.state.prepare(u);
        const errors = this.engine.update(next.view.mesh, next.view.services);
        // What the engine refused keeps serving its last good version: the state shows the same.
        next.commit(new Set(errors.map((e) => e.resource)));
        if (errors.length > 0) {
          this.lastConfigError = errors.map((e) => `${e.resource}: ${e.message}`).join('; ');
          this.log.warn({ errors }, 'refused part of a configuration update; those services keep their last good configuration');
          throw new Error(this.lastConfigError);
        }
        this.lastConfigError = undefined;
        this.log.info({ services: next.view.services.size, workloads: next.view.mesh.workloads.size }, 'configuration applied');
      },
      onError: (err) => this.log.warn({ err: err.message }, 'control plane stream failed; serving the last good configuration and retrying'),
    });
    if (known) for (const [k, v] of known) this.xds.versions.set(k, v);
    this.xds.start();
  }

  /** HBONE from a ztunnel (or another waypoint): only the mesh's trust domain, only services bound here. */
  private onTunnel(ctx: HboneTunnel, stream: http2.ServerHttp2Stream): void {
    if (this.stopping) {
      stream.respond({ ':status': 503 }, { endStream: true });
      return;
    }
    if (!ctx.peerIdentity || !ctx.peerIdentity.startsWith(`spiffe://${this.identity.trustDomain}/`)) {
      this.log.warn({ peer: ctx.peerIdentity, from: ctx.remoteAddress }, 'refused a tunnel from outside the trust domain');
      stream.respond({ ':status': 401 }, { endStream: true });
      return;
    }
    if (!this.engine.serves(ctx.authority)) {
      this.log.warn({ authority: ctx.authority, peer: ctx.peerIdentity }, 'tunnel for a destination this waypoint does not serve');
      stream.respond({ ':status': 404 }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200 });
    this.engine.handleTunnel(stream, { authority: ctx.authority, peerIdentity: ctx.peerIdentity, sourceAddress: this.sourceAddress(ctx) });
  }

  /**
   * The caller's address for policy (ipBlocks) and x-forwarded-for. A ztunnel dials HBONE
   * from inside the source pod, so the connection's address is the pod's; the `forwarded`
   * header is believed only when it names a workload whose identity is the peer's own, so
   * a peer cannot claim another workload's address.
   */
  private sourceAddress(ctx: HboneTunnel): string {
    const claimed = forwardedFor(ctx.headers.forwarded);
    if (!claimed || claimed === ctx.remoteAddress) return ctx.remoteAddress;
    const w = this.state.view.mesh.workloadsByIp.get(claimed);
    return w && w.identity === ctx.peerIdentity ? claimed : ctx.remoteAddress;
  }

  /** The agent renewed the credential: new handshakes and new upstream sessions use it; the config stream reconnects with it. */
  private reloadCredential(): void {
    if (this.stopping) return;
    try {
      this.identity = this.loadIdentity();
      this.server.rotate(this.identity.cfg.clientCertificate, this.identity.cfg.clientKey, this.identity.cfg.certificateAuthority);
      this.connector.rotated();
      const old = this.client;
      this.client = new AmbitClient(dialFromConfig(this.identity.cfg));
      const known = new Map(this.xds.versions);
      this.xds.stop();
      this.startXds(known);
      old.close();
      this.log.info({ expiresAt: this.identity.expiresAt }, 'waypoint credential renewed');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'the credential file changed but cannot be used; keeping the current identity');
    }
  }

  /** SIGTERM: stop taking tunnels, let requests in flight finish within the grace period. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ drainMs: this.o.drainMs }, 'draining');
    fs.unwatchFile(this.o.credentialFile);
    this.server?.drain();
    await this.engine?.drain(this.o.drainMs);
    this.engine?.close();
    this.xds?.stop();
    this.connector?.close();
    this.client?.close();
    await this.telemetry?.shutdown().catch(() => undefined);
    await Promise.all([this.admin, this.metricsServer].map((s) => new Promise<void>((r) => (s ? s.close(() => r()) : r()))));
    this.admin?.closeAllConnections();
    this.metricsServer?.closeAllConnections();
  }
}

/** `forwarded: for=1.2.3.4` or `for="[::1]"` from the source ztunnel: the original client address. */
function forwardedFor(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  const m = s ? /for="?\[?([0-9a-fA-F.:]+)\]?"?/.exec(s) : null;
  return m?.[1];
}
