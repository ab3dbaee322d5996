/**
 * A waypoint engine on real sockets, for tests: fake workloads whose "application ports" are local
 * servers on 127.0.0.1, a plain-TCP connector that maps each workload to its server, tunnels made
 * by a local listener that feeds every accepted socket to engine.handleTunnel, and a recorder in
 * place of the telemetry module.
 */
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import pino from 'pino';
import { validateResource } from '../../lib/api/registry';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { MtlsMode, TunnelProtocol, type ServiceMsg, type WorkloadMsg } from '../../lib/api/workload-types';
import { Snapshot, type WorkloadView } from '../../lib/mesh/snapshot';
import { ipToBytes } from '../../lib/util/ip';
import { WaypointEngine, type HttpLimits, type TunnelContext, type UpstreamConnector, type UpstreamTarget } from '../../waypoint/engine';
import type { RequestInfo, RequestRecord, RequestTelemetry } from '../../waypoint/telemetry/types';

export const NS = 'shop';
export const TD = 'cluster.local';
export const GW = 'gateway.networking.k8s.io/v1';
export const ISTIO = 'networking.istio.io/v1';
export const SECURITY = 'security.istio.io/v1';

export type L7Obj = { namespace: string; name: string; spec: unknown; annotations?: Record<string, string> };

/** A spec exactly as the waypoint receives it: validated, defaults applied. */
export function obj(apiVersion: string, kind: string, name: string, spec: object, extra: { namespace?: string; annotations?: Record<string, string> } = {}): L7Obj {
  const namespace = extra.namespace ?? NS;
  const v = validateResource({ apiVersion, kind, metadata: { name, namespace }, spec });
  if (!v.ok) throw new Error(`${kind} ${name}: ${JSON.stringify(v.errors)}`);
  const o: L7Obj = { namespace, name, spec: v.resource.spec };
  if (extra.annotations) o.annotations = extra.annotations;
  return o;
}

/** An object that skips validation, to feed the engine what validation would have refused. */
export function rawObj(name: string, spec: object): L7Obj {
  return { namespace: NS, name, spec };
}

// ---------------------------------------------------------------------------------------------
// Backends

export type BackendRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type BackendResponse = http.ServerResponse | http2.Http2ServerResponse;
export type BackendHandler = (req: BackendRequest, res: BackendResponse, backend: Backend) => void;

export interface Backend {
  name: string;
  port: number;
  /** Requests seen, any protocol. */
  hits: number;
  h1: http.Server;
  h2: http2.Http2Server;
  /** Raw sockets accepted (connections opened by the waypoint). */
  connections: number;
  /** Of those, the ones still open. */
  readonly open: number;
  /** Closes every open connection (the waypoint's pooled ones included); the backend keeps listening. */
  dropConnections(): void;
  close(): Promise<void>;
}

/** One local port serving HTTP/1.1 and cleartext HTTP/2 with the same handler (by sniffing the preface). */
export async function startBackend(name: string, handler: BackendHandler): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const b: Backend = {
    name,
    port: 0,
    hits: 0,
    connections: 0,
    get open() {
      return sockets.size;
    },
    h1: http.createServer(),
    h2: http2.createServer(),
    dropConnections: () => {
      for (const s of sockets) s.destroy();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const onReq = (req: BackendRequest, res: BackendResponse) => {
    b.hits++;
    handler(req, res, b);
  };
  b.h1.on('request', onReq);
  b.h2.on('request', onReq);
  b.h2.on('stream', (s) => s.on('error', () => {}));
  b.h2.on('sessionError', () => {});
  const server = net.createServer((sock) => {
    b.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.once('readable', () => {
      const head = sock.read(Math.min(3, sock.readableLength)) as Buffer | null;
      if (head === null) return;
      sock.unshift(head);
      if (head.toString('latin1') === 'PRI') b.h2.emit('connection', sock);
      else b.h1.emit('connection', sock);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

/** A raw TCP backend, for opaque TCP tests. */
export async function startTcpBackend(onSocket: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export function readBody(req: BackendRequest): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Telemetry recorder

export interface Recorded {
  info: RequestInfo;
  route?: string;
  destination?: string;
  code?: number;
  flags?: string;
  grpcStatus?: string;
  closes: number;
  requestBytes: number;
  responseBytes: number;
  traceparent: string;
}

export class FakeTelemetry implements RequestTelemetry {
  readonly records: Recorded[] = [];
  private waiters: Array<() => void> = [];

  start(info: RequestInfo): RequestRecord {
    // Continues a valid caller trace, as the real tracing does; anything else starts a new one.
    const parent = /^00-([0-9a-f]{32})-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/.exec(info.traceparent ?? '');
    const traceId = parent && !/^0+$/.test(parent[1]) ? parent[1] : randomBytes(16).toString('hex');
    const rec: Recorded = { info, closes: 0, requestBytes: 0, responseBytes: 0, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
    this.records.push(rec);
    const self = this;
    return {
      traceparent: rec.traceparent,
      traceId,
      get requestBytes() {
        return rec.requestBytes;
      },
      set requestBytes(v: number) {
        rec.requestBytes = v;
      },
      get responseBytes() {
        return rec.responseBytes;
      },
      set responseBytes(v: number) {
        rec.responseBytes = v;
      },
      setRoute(r: string) {
        rec.route = r;
      },
      setDestination(w: WorkloadView | undefined) {
        rec.destination = w?.msg.name;
      },
      close(code: number, flags: string, grpcStatus?: string) {
        rec.closes++;
        if (rec.closes > 1) return;
        rec.code = code;
        rec.flags = flags;
        rec.grpcStatus = grpcStatus;
        for (const w of self.waiters.splice(0)) w();
      },
    };
  }

  /** Resolves once `n` records are closed. */
  async closed(n: number, timeoutMs = 10_000): Promise<Recorded[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.records.filter((r) => r.closes > 0).length < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.records.filter((r) => r.closes > 0).length} of ${n} telemetry records closed`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    return this.records.filter((r) => r.closes > 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Mesh model

export interface WorkloadDef {
  name: string;
  ip: string;
  /** Stands for the version label (canonical revision). */
  version?: string;
  app?: string;
  namespace?: string;
  serviceAccount?: string;
  /** Services it backs: hostname -> [{servicePort, targetPort}]. */
  services?: Record<string, Array<{ servicePort: number; targetPort: number }>>;
}

export interface ServiceDef {
  name: string;
  namespace?: string;
  vip: string;
  ports: number[];
  /** A port's declared application protocol ('http' | 'http2' | 'tcp'), as translate derives it from appProtocol or the port name. */
  appProtocols?: Record<number, string>;
}

export function hostOf(name: string, ns = NS): string {
  return `${name}.${ns}.svc.cluster.local`;
}

export function buildSnapshot(services: ServiceDef[], workloads: WorkloadDef[]): Snapshot {
  const wmap = new Map<string, WorkloadMsg>();
  for (const w of workloads) {
    const ns = w.namespace ?? NS;
    const svcs: WorkloadMsg['services'] = {};
    for (const [host, ports] of Object.entries(w.services ?? {})) svcs[`${host.split('.')[1] ?? ns}/${host}`] = { ports };
    wmap.set(`wl/${ns}/${w.name}`, {
      uid: `${ns}/${w.name}`,
      name: w.name,
      namespace: ns,
      serviceAccount: w.serviceAccount ?? w.name,
      node: 'n1',
      addresses: [ipToBytes(w.ip)],
      trustDomain: TD,
      tunnelProtocol: TunnelProtocol.HBONE,
      canonicalName: w.app ?? w.name,
      canonicalRevision: w.version ?? 'latest',
      services: svcs,
      labels: { app: w.app ?? w.name, ...(w.version ? { version: w.version } : {}) },
      authorizationPolicies: [],
      mtlsMode: MtlsMode.STRICT,
      portMtls: {},
      network: '',
    });
  }
  const smap = new Map<string, ServiceMsg>();
  for (const s of services) {
    const ns = s.namespace ?? NS;
    smap.set(`svc/${ns}/${s.name}`, {
      name: s.name,
      namespace: ns,
      hostname: hostOf(s.name, ns),
      vips: [ipToBytes(s.vip)],
      ports: s.ports.map((p) => ({ servicePort: p, targetPort: p, ...(s.appProtocols?.[p] ? { appProtocol: s.appProtocols[p] } : {}) })),
      headless: false,
    });
  }
  return new Snapshot(wmap, smap, new Map());
}

export function serviceConfig(s: ServiceDef, parts: Partial<Omit<WaypointServiceConfig, 'service' | 'waypoint'>> = {}): WaypointServiceConfig {
  const ns = s.namespace ?? NS;
  return {
    service: { name: s.name, namespace: ns, hostname: hostOf(s.name, ns), vips: [s.vip], ports: s.ports.map((p) => ({ servicePort: p, targetPort: p, ...(s.appProtocols?.[p] ? { appProtocol: s.appProtocols[p] } : {}) })) },
    waypoint: { namespace: ns, name: 'waypoint' },
    httpRoutes: [],
    grpcRoutes: [],
    virtualServices: [],
    destinationRules: [],
    authorizationPolicies: [],
    requestAuthentications: [],
    ...parts,
  };
}

export function identityOf(name: string, ns = NS): string {
  return `spiffe://${TD}/ns/${ns}/sa/${name}`;
}

// ---------------------------------------------------------------------------------------------
// Harness

/** Maps workloads (by name) to local ports; workloads without a mapping refuse connections. */
export class TcpConnector implements UpstreamConnector {
  readonly ports = new Map<string, number>();
  /** Workloads whose connects never complete: they fail after the caller's timeout, as a dead host would. */
  readonly hang = new Set<string>();
  connects = 0;
  failures = 0;

  connect(target: UpstreamTarget, opts: { timeoutMs: number }): Promise<Duplex> {
    this.connects++;
    const port = this.ports.get(target.workload.msg.name);
    if (this.hang.has(target.workload.msg.name)) {
      return new Promise((_resolve, reject) => {
        setTimeout(() => {
          this.failures++;
          reject(Object.assign(new Error(`connect to ${target.workload.msg.name} timed out after ${opts.timeoutMs} ms`), { code: 'Timeout' }));
        }, opts.timeoutMs).unref();
      });
    }
    return new Promise((resolve, reject) => {
      if (port === undefined) {
        this.failures++;
        reject(Object.assign(new Error(`no backend for ${target.workload.msg.name}`), { code: 'ConnectFailed' }));
        return;
      }
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const timer = setTimeout(() => {
        s.destroy();
        reject(Object.assign(new Error('connect timeout'), { code: 'Timeout' }));
      }, opts.timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        this.failures++;
        reject(Object.assign(e, { code: 'ConnectFailed' }));
      });
    });
  }
}

export interface Harness {
  engine: WaypointEngine;
  telemetry: FakeTelemetry;
  connector: TcpConnector;
  /** A local port whose connections become tunnels with this context. */
  tunnel(ctx: Partial<TunnelContext> & { authority: string }): Promise<number>;
  close(): Promise<void>;
}

export async function startHarness(opts: { limits?: Partial<HttpLimits>; random?: () => number; fetchJwks?: (uri: string, t: number) => Promise<unknown> } = {}): Promise<Harness> {
  const telemetry = new FakeTelemetry();
  const connector = new TcpConnector();
  const log = pino({ level: process.env.WAYPOINT_TEST_LOG ?? 'silent' });
  const engine = new WaypointEngine({ connector, telemetry, log, trustDomain: TD, limits: opts.limits, random: opts.random, fetchJwks: opts.fetchJwks });
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  return {
    engine,
    telemetry,
    connector,
    async tunnel(ctx) {
      const server = net.createServer({ allowHalfOpen: true }, (sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
        engine.handleTunnel(sock, { authority: ctx.authority, peerIdentity: ctx.peerIdentity ?? identityOf('client'), sourceAddress: ctx.sourceAddress ?? '10.1.0.1' });
      });
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      return (server.address() as net.AddressInfo).port;
    },
    async close() {
      engine.close();
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Clients

export interface SimpleResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** HTTP/1.1 request with a keep-alive agent the test owns. */
export function h1Request(port: number, opts: { path?: string; method?: string; headers?: Record<string, string>; body?: string | Buffer; agent?: http.Agent; timeoutMs?: number } = {}): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: opts.path ?? '/', method: opts.method ?? 'GET', headers: { host: 'svc', ...opts.headers }, agent: opts.agent ?? false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
    req.end(opts.body);
  });
}

/** Sends raw bytes and collects everything until the server closes (or the timeout). */
export function rawExchange(port: number, data: string | Buffer, timeoutMs = 5000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    }, timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), closed });
    });
    s.write(data);
  });
}

export function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string; trailers?: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let h: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (hh) => {
      h = hh;
      status = Number(hh[':status']);
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, headers: h, body: Buffer.concat(chunks).toString(), trailers }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs `n` tasks with at most `concurrency` in flight. */
export async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}
