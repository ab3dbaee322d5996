/**
 * The per-request filter chain, in Istio's waypoint order: header hygiene, JWT authentication,
 * authorization, route match, redirect, local rate limit, fault injection, rewrites and header
 * mutations; then the router. Each step that refuses answers with a local reply and closes the
 * telemetry record with the matching response flag.
 */
import type { Snapshot, WorkloadView } from '../../lib/mesh/snapshot';
import { normalizePath } from '../../lib/policy/path-normalize';
import type { Logger } from '../../lib/telemetry/log';
import type { RequestRecord, RequestTelemetry } from '../telemetry/types';
import type { RawHttp1Downstream, Downstream } from './downstream';
import { runAuthn } from './filters/authn';
import { authorize, peerAttributes, RBAC_DENIED_BODY } from './filters/authz';
import { decideFault } from './filters/fault';
import { applyHeaderMutation, rewritePath } from './filters/header-mutation';
import type { TokenBucket } from './filters/rate-limit';
import { redirectLocation } from './filters/redirect';
import { headerValue, isGrpcContentType, requestIdOf, sanitizeRequestHeaders, stripHopByHop, validAuthority } from './headers';
import { sendLocalReply } from './local-reply';
import type { RouteMatch } from './route-table';
import { ForwardedRequest, type RouterDeps } from './router';
import { routeObjectKey, type CompiledService } from './service-config';
import type { HttpLimits, ResponseFlag } from './types';
import type { UpstreamRequestHead } from '../upstream/exchange';
import { workloadLabels } from '../upstream/cluster';
import { forwardUpgrade } from './upgrade';

/** What the waypoint knows about the tunnel a request arrived on. */
export interface TunnelInfo {
  /** Key into the service table: "vip:port" or "hostname:port" as the tunnel was addressed. */
  readonly serviceKey: string;
  /** The service port the tunnel was addressed to. */
  readonly port: number;
  /** The address the caller dialled (the VIP), for destination.ip; empty for a hostname. */
  readonly destinationIp: string;
  readonly peerIdentity: string | null;
  readonly sourceAddress: string;
}

export interface FilterChainDeps {
  telemetry: RequestTelemetry;
  log: Logger;
  limits: HttpLimits;
  random: () => number;
  router: RouterDeps;
  /** The service a tunnel key maps to now: looked up per request, so a config change applies to the next request. */
  service(key: string): CompiledService | undefined;
  mesh(): Snapshot;
  bucket(service: CompiledService, routeObject: string, ruleIndex: number): TokenBucket | undefined;
  draining(): boolean;
}

const UNKNOWN_SERVICE = Object.freeze({ name: 'unknown', namespace: 'unknown', hostname: 'unknown' });

/** The telemetry's destination service: the one the tunnel named, or "unknown" when the waypoint does not serve it. */
export function destinationServiceOf(s: { name: string; namespace: string; hostname: string } | undefined): { name: string; namespace: string; hostname: string } {
  return s ? { name: s.name, namespace: s.namespace, hostname: s.hostname } : UNKNOWN_SERVICE;
}

/** The calling workload, only when its address and its proven identity agree (an address alone can be spoofed). */
export function sourceWorkload(mesh: Snapshot, t: Pick<TunnelInfo, 'sourceAddress' | 'peerIdentity'>): WorkloadView | undefined {
  const w = mesh.workloadsByIp.get(t.sourceAddress);
  return w && t.peerIdentity !== null && w.identity === t.peerIdentity ? w : undefined;
}

function routeLabel(m: RouteMatch): string {
  return `${routeObjectKey(m.route)}#${m.route.ruleName ?? m.route.ruleIndex}`;
}

export class FilterChain {
  constructor(private readonly deps: FilterChainDeps) {}

  /** Serves one request; never throws. */
  handle(ds: Downstream, tunnel: TunnelInfo): void {
    this.run(ds, tunnel, null).catch((e: unknown) => this.internalError(ds, e));
  }

  /** An HTTP/1 Upgrade request (WebSocket): the same filters, then a tunnel of the upgraded bytes. */
  handleUpgrade(ds: RawHttp1Downstream, tunnel: TunnelInfo, head: Buffer): void {
    this.run(ds, tunnel, head).catch((e: unknown) => this.internalError(ds, e));
  }

  /**
   * A request refused before it could be parsed (bad framing, an oversized head, the header
   * timeout): counted and logged like any other request, so smuggling attempts and broken clients
   * show up in istio_requests_total and the access log (flag DPE for codec errors, as Envoy sets it).
   */
  rejected(t: TunnelInfo, status: number, bodyBytes: number): void {
    const d = this.deps;
    const svcMsg = d.service(t.serviceKey)?.cfg.service;
    const record = d.telemetry.start({
      source: sourceWorkload(d.mesh(), t),
      sourcePrincipal: t.peerIdentity,
      sourceAddress: t.sourceAddress,
      destinationService: destinationServiceOf(svcMsg),
      servicePort: t.port,
      protocol: 'http',
      method: '',
      path: '',
      authority: '',
    });
    record.responseBytes = bodyBytes;
    record.close(status, status === 408 ? '-' : 'DPE');
  }

  private internalError(ds: Downstream, e: unknown): void {
    this.deps.log.error({ err: e }, 'waypoint request failed unexpectedly');
    try {
      sendLocalReply(ds, 500, 'internal error', { grpc: false });
    } catch {
      ds.reset();
    }
  }

  private reply(ds: Downstream, record: RequestRecord, grpc: boolean, status: number, body: string, flag: ResponseFlag, headers?: Record<string, string>, grpcStatus?: number): void {
    const sent = sendLocalReply(ds, status, body, { grpc, headers, grpcStatus, record });
    record.close(sent.status, flag, sent.grpcStatus);
  }

  private async run(ds: Downstream, t: TunnelInfo, upgradeHead: Buffer | null): Promise<void> {
    const d = this.deps;
    const svc = d.service(t.serviceKey);
    const mesh = d.mesh();
    const grpc = isGrpcContentType(ds.headers);
    const requestId = requestIdOf(ds.headers);
    const source = sourceWorkload(mesh, t);
    const traceparent = headerValue(ds.headers, 'traceparent');
    const tracestate = headerValue(ds.headers, 'tracestate');
    const svcMsg = svc?.cfg.service;
    const record = d.telemetry.start({
      source,
      sourcePrincipal: t.peerIdentity,
      sourceAddress: t.sourceAddress,
      destinationService: destinationServiceOf(svcMsg),
      servicePort: t.port,
      protocol: grpc ? 'grpc' : 'http',
      method: ds.method,
      path: ds.rawPath,
      authority: ds.authority,
      userAgent: headerValue(ds.headers, 'user-agent'),
      requestId,
      traceparent,
      tracestate,
    });
    let handedOff = false;
    ds.onAbort(() => {
      if (!handedOff) record.close(0, 'DC');
    });
    if (d.draining()) ds.closeConnectionAfter();

    if (!svc) return this.reply(ds, record, grpc, 404, 'no route: service not served by this waypoint', 'NR');
    if (ds.headerCount > d.limits.maxHeaderCount) return this.reply(ds, record, grpc, 431, 'too many request headers', 'DPE');
    if (ds.method === 'CONNECT') return this.reply(ds, record, grpc, 405, 'CONNECT is not proxied', 'DPE');
    // Policy matches `hosts` on this string and the endpoint gets it as Host: both must read one unambiguous authority.
    if (ds.ambiguousAuthority || !validAuthority(ds.authority)) return this.reply(ds, record, grpc, 400, 'bad request: invalid or repeated host', 'DPE');

    const isUpgrade = upgradeHead !== null;
    const upgradeToken = headerValue(ds.headers, 'upgrade')?.toLowerCase();
    stripHopByHop(ds.headers, { keepUpgrade: isUpgrade && upgradeToken === 'websocket' });
    // Same trace id as the caller's traceparent (characters 3-34): the caller's trace goes on.
    const continuesTrace = traceparent !== undefined && traceparent.length >= 35 && record.traceparent.startsWith(traceparent.slice(2, 35), 2);
    sanitizeRequestHeaders(ds.headers, { sourceAddress: t.sourceAddress, traceparent: record.traceparent, requestId, continuesTrace });

    // Routing, policy and the endpoint all see one canonical path, so none can be told apart by encoding tricks.
    const np = normalizePath(ds.rawPath);
    if (!np.ok) return this.reply(ds, record, grpc, 400, `bad request path: ${np.reason}`, 'DPE');
    const q = ds.rawPath.search(/[?#]/);
    const query = q >= 0 && ds.rawPath[q] === '?' ? ds.rawPath.slice(q).replace(/#.*$/, '') : '';
    let path = np.path + query;

    let authn = null;
    if (svc.authn) {
      authn = await runAuthn(svc.authn, ds.headers, path);
      if (ds.aborted) return;
      if (!authn.ok) {
        return this.reply(ds, record, grpc, 401, 'Jwt verification fails', '-', { 'www-authenticate': 'Bearer realm="ambit", error="invalid_token"' });
      }
    }

    const peer = peerAttributes(t.peerIdentity);
    const decision = authorize(svc.authz.http, {
      principal: peer.principal,
      namespace: peer.namespace,
      sourceIp: t.sourceAddress,
      remoteIp: t.sourceAddress,
      requestPrincipal: authn?.ok ? authn.principal : null,
      requestAuthClaims: authn?.ok ? authn.claims : null,
      requestAudiences: authn?.ok ? authn.audiences : [],
      presenter: authn?.ok ? authn.presenter : undefined,
      method: ds.method,
      host: ds.authority,
      port: t.port,
      path: ds.rawPath,
      headers: ds.headers,
      destinationIp: t.destinationIp,
    });
    if (decision.badRequest) return this.reply(ds, record, grpc, 400, 'bad request', 'DPE');
    if (!decision.allowed) {
      d.log.debug({ reason: decision.reason, policy: decision.policy }, 'request denied');
      return this.reply(ds, record, grpc, 403, RBAC_DENIED_BODY, '-');
    }

    const match = svc.routes.match({
      method: ds.method,
      path,
      headers: ds.headers,
      authority: ds.authority,
      port: t.port,
      scheme: 'http',
      source: source ? { namespace: source.msg.namespace, labels: workloadLabels(source) } : peer.namespace ? { namespace: peer.namespace } : undefined,
    });
    if (!match) return this.reply(ds, record, grpc, 404, 'no route matched', 'NR');
    record.setRoute(routeLabel(match));

    const f = match.filters;
    if (f.redirect) {
      const location = redirectLocation(f.redirect, { authority: ds.authority, pathAndQuery: path, scheme: 'http', listenerPort: t.port });
      return this.reply(ds, record, false, f.redirect.statusCode, '', '-', { location });
    }

    const bucket = d.bucket(svc, routeObjectKey(match.route), match.route.ruleIndex);
    if (bucket && !bucket.tryTake()) return this.reply(ds, record, grpc, 429, 'local_rate_limited', 'RL');

    const fault = decideFault(match.fault, d.random);
    let faultFlag: ResponseFlag | undefined;
    if (fault?.delayMs !== undefined) {
      // Ends early if the caller goes away, so an abandoned request does not keep its timer (and
      // everything its closure holds) alive for the whole injected delay.
      await new Promise<void>((r) => {
        const timer = setTimeout(r, fault.delayMs);
        ds.onAbort(() => {
          clearTimeout(timer);
          r();
        });
      });
      if (ds.aborted) return;
      faultFlag = 'DI';
    }
    if (fault?.abort) {
      const sent = sendLocalReply(ds, fault.abort.status, 'fault filter abort', { grpc, grpcStatus: fault.abort.grpcStatus, record });
      record.close(sent.status, faultFlag ? 'DI,FI' : 'FI', sent.grpcStatus);
      return;
    }

    let authority = ds.authority;
    if (f.rewrite?.path) path = rewritePath(path, f.rewrite.path);
    if (f.rewrite?.hostname) authority = f.rewrite.hostname;
    applyHeaderMutation(ds.headers, f.requestHeaders);

    const head: UpstreamRequestHead = { method: ds.method, path, authority, headers: ds.headers, hasBody: ds.body !== null, traceparent: record.traceparent };
    handedOff = true;
    if (ds.aborted) {
      record.close(0, 'DC');
      return;
    }
    if (isUpgrade) {
      if (upgradeToken === 'websocket') {
        forwardUpgrade(d.router, { ds: ds as RawHttp1Downstream, record, route: match, head, clientHead: upgradeHead, sourceIp: t.sourceAddress, faultFlag });
        return;
      }
    }
    const fwd = new ForwardedRequest(d.router, { ds, record, route: match, head, grpc, sourceIp: t.sourceAddress, extraFlag: faultFlag });
    fwd.start();
  }
}
