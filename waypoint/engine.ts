/**
 * The waypoint's L7 engine: from a byte stream that arrived through an HBONE tunnel addressed to
 * a service (VIP:port or hostname:port) to the request forwarded to an endpoint and the response
 * returned. The process around it (HBONE listener, identity, config subscription) lives elsewhere;
 * this is the composition root of listener/ -> http/ -> upstream/.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { WaypointServiceConfig } from '../lib/api/waypoint-config';
import { Snapshot } from '../lib/mesh/snapshot';
import type { Logger } from '../lib/telemetry/log';
import { ConnectionManager } from './http/connection-manager';
import { destinationServiceOf, FilterChain, sourceWorkload, type TunnelInfo } from './http/filter-chain';
import { authorize, peerAttributes } from './http/filters/authz';
import { TokenBucket } from './http/filters/rate-limit';
import type { RouterDeps } from './http/router';
import { compileService, fingerprintOf, ServiceConfigError, type CompiledService } from './http/service-config';
import { DEFAULT_LIMITS, type HttpLimits } from './http/types';
import { detectProtocol, type Detection } from './listener/protocol-detect';
import type { RequestTelemetry } from './telemetry/types';
import { ClusterManager, DestinationRuleIndex, type ClusterStats } from './upstream/cluster';
import type { UpstreamConnector } from './upstream/connector';
import { createRetryBudget, type RetryBudget } from './upstream/retry-policy';
import { proxyTcp } from './upstream/tcp-proxy';

export type { UpstreamConnector, UpstreamTarget } from './upstream/connector';
export type { HttpLimits } from './http/types';
export type { ClusterStats } from './upstream/cluster';

export interface TunnelContext {
  /** ":authority" of the inbound CONNECT: "<vip>:<port>" (or "<hostname>:<port>"). */
  authority: string;
  /** spiffe://... proven by mTLS. */
  peerIdentity: string | null;
  /** Original client IP (from the HBONE `forwarded: for=` header, else the peer address). */
  sourceAddress: string;
}

export interface ConfigError {
  resource: string;
  message: string;
}

export interface WaypointEngineOptions {
  connector: UpstreamConnector;
  telemetry: RequestTelemetry;
  log: Logger;
  trustDomain: string;
  limits?: Partial<HttpLimits>;
  now?: () => number;
  random?: () => number;
  /** JWKS / OIDC discovery fetch; global fetch with the rule's timeout by default. */
  fetchJwks?: (uri: string, timeoutMs: number) => Promise<unknown>;
}

/** "host:port" as the service table keys it: lower-case host, IPv6 in brackets. null when malformed. */
export function tunnelKey(authority: string): { key: string; host: string; port: number } | null {
  let host: string;
  let portText: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0 || authority[end + 1] !== ':') return null;
    host = authority.slice(1, end);
    portText = authority.slice(end + 2);
  } else {
    const c = authority.lastIndexOf(':');
    if (c <= 0) return null;
    host = authority.slice(0, c);
    portText = authority.slice(c + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535 || host === '') return null;
  host = host.toLowerCase().replace(/\.$/, '');
  return { key: net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`, host, port };
}

function clusterDomain(services: Iterable<CompiledService>): string {
  for (const s of services) {
    const { name, namespace, hostname } = s.cfg.service;
    const prefix = `${name}.${namespace}.svc.`;
    if (hostname.startsWith(prefix)) return hostname.slice(prefix.length);
  }
  return 'cluster.local';
}

export class WaypointEngine {
  private readonly limits: HttpLimits;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly clusters: ClusterManager;
  private readonly budget: RetryBudget;
  private readonly cm: ConnectionManager;
  private readonly chain: FilterChain;
  private mesh: Snapshot = Snapshot.empty();
  /** Compiled services by resource name; replaced whole on update. */
  private compiled = new Map<string, CompiledService>();
  /** Tunnel key ("vip:port", "host:port") -> service. */
  private byKey = new Map<string, CompiledService>();
  private buckets = new Map<string, TokenBucket>();
  private readonly tcpTunnels = new Set<Duplex>();
  private readonly detecting = new Set<Duplex>();
  private draining = false;
  private closed = false;

  constructor(private readonly opts: WaypointEngineOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.budget = createRetryBudget();
    this.clusters = new ClusterManager(opts.connector, this.random, this.now, { connectTimeoutMs: this.limits.connectTimeoutMs, tcpIdleTimeoutMs: this.limits.tcpIdleTimeoutMs }, this.mesh);
    const router: RouterDeps = {
      clusters: this.clusters,
      budget: this.budget,
      random: this.random,
      limits: this.limits,
      log: this.log,
      draining: () => this.draining,
    };
    this.chain = new FilterChain({
      telemetry: opts.telemetry,
      log: this.log,
      limits: this.limits,
      random: this.random,
      router,
      service: (key) => this.byKey.get(key),
      mesh: () => this.mesh,
      bucket: (svc, obj, rule) => this.bucket(svc, obj, rule),
      draining: () => this.draining,
    });
    this.cm = new ConnectionManager(this.chain, this.limits, this.log);
  }

  /**
   * Replaces the config atomically. Each service config is compiled; one that fails to compile is
   * reported and its last good version keeps serving (a new service with a bad config is not served).
   */
  update(mesh: Snapshot, services: ReadonlyMap<string, WaypointServiceConfig>): ConfigError[] {
    const errors: ConfigError[] = [];
    const next = new Map<string, CompiledService>();
    for (const [name, cfg] of services) {
      const prev = this.compiled.get(name);
      if (prev && prev.fingerprint === fingerprintOf(cfg)) {
        next.set(name, prev);
        continue;
      }
      try {
        next.set(name, compileService(name, cfg, { fetchJwks: this.opts.fetchJwks, now: this.now }));
      } catch (e) {
        const resource = e instanceof ServiceConfigError ? e.resource : name;
        const message = e instanceof Error ? e.message : String(e);
        errors.push({ resource, message });
        this.log.warn({ resource, service: name, err: message }, prev ? 'waypoint config refused; keeping the last good one' : 'waypoint config refused; service not served');
        if (prev) next.set(name, prev);
      }
    }
    const byKey = new Map<string, CompiledService>();
    for (const svc of next.values()) {
      const s = svc.cfg.service;
      for (const p of s.ports) {
        for (const vip of s.vips) {
          const k = tunnelKey(net.isIPv6(vip) ? `[${vip}]:${p.servicePort}` : `${vip}:${p.servicePort}`);
          if (k) byKey.set(k.key, svc);
        }
        const k = tunnelKey(`${s.hostname}:${p.servicePort}`);
        if (k) byKey.set(k.key, svc);
      }
    }
    const drs = new DestinationRuleIndex(
      [...next.values()].flatMap((s) => s.cfg.destinationRules),
      clusterDomain(next.values()),
    );
    // Everything the data path reads is swapped in one go; requests in flight keep the objects they hold.
    this.mesh = mesh;
    this.compiled = next;
    this.byKey = byKey;
    this.clusters.update(mesh, drs);
    for (const k of this.buckets.keys()) if (!next.has(k.slice(0, k.indexOf('|')))) this.buckets.delete(k);
    return errors;
  }

  private bucket(svc: CompiledService, routeObject: string, ruleIndex: number): TokenBucket | undefined {
    const spec = svc.rateLimits.get(routeObject);
    if (!spec) return undefined;
    const key = `${svc.name}|${routeObject}|${ruleIndex}`;
    let b = this.buckets.get(key);
    if (!b || b.spec.source !== spec.source) {
      b = new TokenBucket(spec, this.now);
      this.buckets.set(key, b);
    }
    return b;
  }

  /** Whether a tunnel with this `:authority` (service VIP or hostname, and port) has a service here. */
  serves(authority: string): boolean {
    const k = tunnelKey(authority);
    return k !== null && this.byKey.has(k.key);
  }

  /**
   * Serves one tunnel: finds the service by authority, detects the protocol from the first bytes
   * (HTTP/2 preface, HTTP/1.x request line, else opaque TCP), and serves it. Never throws.
   */
  handleTunnel(stream: Duplex, ctx: TunnelContext): void {
    try {
      stream.on('error', (err: Error) => this.log.debug({ err: err.message }, 'tunnel stream error'));
      if (this.closed || this.draining) {
        stream.destroy();
        return;
      }
      const k = tunnelKey(ctx.authority);
      const svc = k ? this.byKey.get(k.key) : undefined;
      if (!k || !svc) {
        this.log.warn({ authority: ctx.authority, source: ctx.sourceAddress }, 'tunnel for a service this waypoint does not serve');
        stream.destroy();
        return;
      }
      const tunnel: TunnelInfo = {
        serviceKey: k.key,
        port: k.port,
        destinationIp: net.isIP(k.host) ? k.host : '',
        peerIdentity: ctx.peerIdentity,
        sourceAddress: ctx.sourceAddress,
      };
      // A port declared TCP (or TLS, MySQL...) is never parsed as HTTP, and a server-first
      // protocol does not wait out the detection timeout for a first byte that will not come.
      const declared = svc.cfg.service.ports.find((p) => p.servicePort === k.port)?.appProtocol;
      if (declared === 'tcp') {
        this.serveTcp(stream, tunnel, { protocol: 'tcp', leftover: Buffer.alloc(0), ended: false });
        return;
      }
      this.detecting.add(stream);
      detectProtocol(stream, { timeoutMs: this.limits.protocolDetectionTimeoutMs }).then(
        (d) => {
          this.detecting.delete(stream);
          // A port declared HTTP is always served as HTTP, as Envoy serves it: bytes that are not
          // HTTP get the HTTP parser's 400 (or 408 on silence), never an opaque pass-through that
          // would skip JWT checks, header sanitizing and routing.
          if (d.protocol === 'tcp' && (declared === 'http' || declared === 'http2')) d = { ...d, protocol: 'http1' };
          this.serve(stream, tunnel, d);
        },
        (err: unknown) => {
          this.detecting.delete(stream);
          this.log.warn({ err }, 'protocol detection failed');
          stream.destroy();
        },
      );
    } catch (err) {
      this.log.error({ err }, 'tunnel setup failed');
      stream.destroy();
    }
  }

  private serve(stream: Duplex, tunnel: TunnelInfo, d: Detection): void {
    try {
      if (this.closed || (stream.destroyed && d.leftover.length === 0)) {
        stream.destroy();
        return;
      }
      if (d.protocol === 'http1') this.cm.serveHttp1(stream, tunnel);
      else if (d.protocol === 'http2') this.cm.serveHttp2(stream, tunnel);
      else this.serveTcp(stream, tunnel, d);
    } catch (err) {
      this.log.error({ err }, 'serving a tunnel failed');
      stream.destroy();
    }
  }

  /**
   * Opaque TCP: only the L4 parts of the authorization policies can be judged (fail closed: an
   * ALLOW rule needing HTTP never matches, a DENY rule is enforced on its L4 conditions).
   */
  private serveTcp(stream: Duplex, tunnel: TunnelInfo, d: Detection): void {
    const svc = this.byKey.get(tunnel.serviceKey);
    const s = svc?.cfg.service;
    const record = this.opts.telemetry.start({
      source: sourceWorkload(this.mesh, tunnel),
      sourcePrincipal: tunnel.peerIdentity,
      sourceAddress: tunnel.sourceAddress,
      destinationService: destinationServiceOf(s),
      protocol: 'tcp',
      method: '',
      path: '',
      authority: tunnel.serviceKey,
    });
    if (!svc || !s) {
      stream.destroy();
      record.close(0, 'NR');
      return;
    }
    const peer = peerAttributes(tunnel.peerIdentity);
    const decision = authorize(svc.authz.tcp, {
      principal: peer.principal,
      namespace: peer.namespace,
      sourceIp: tunnel.sourceAddress,
      remoteIp: tunnel.sourceAddress,
      requestPrincipal: null,
      requestAuthClaims: null,
      requestAudiences: [],
      method: '',
      host: '',
      port: tunnel.port,
      path: '/',
      headers: {},
      destinationIp: tunnel.destinationIp,
    });
    if (!decision.allowed) {
      this.log.debug({ reason: decision.reason, source: tunnel.sourceAddress }, 'tcp connection denied');
      stream.destroy();
      record.close(0, '-');
      return;
    }
    this.tcpTunnels.add(stream);
    stream.once('close', () => this.tcpTunnels.delete(stream));
    proxyTcp({
      client: stream,
      leftover: d.leftover,
      clientEnded: d.ended,
      cluster: this.clusters.get({ hostname: s.hostname, port: tunnel.port }),
      connector: this.opts.connector,
      record,
      sourceIp: tunnel.sourceAddress,
      log: this.log,
    });
  }

  /** Per-cluster counters: requests, retries attempted and suppressed by the budget, overflows, ejections. */
  clusterStats(): ClusterStats[] {
    return this.clusters.stats();
  }

  /** Stop accepting new requests, let in-flight ones finish (GOAWAY on h2, Connection: close on h1); resolves when done or after graceMs. */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    this.cm.drain();
    for (const s of this.detecting) s.destroy();
    // Wall-clock time even when a test clock is injected: a grace period is real time for the callers.
    const deadline = Date.now() + graceMs;
    while (this.cm.openCount + this.tcpTunnels.size > 0 && Date.now() < deadline && !this.closed) {
      await new Promise<void>((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    for (const s of this.tcpTunnels) s.destroy();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.draining = true;
    for (const s of this.detecting) s.destroy();
    for (const s of this.tcpTunnels) s.destroy();
    this.cm.close();
    this.clusters.close();
  }
}
