/**
 * The router: takes a request that passed the filters and a RouteMatch, and gets it answered by
 * an endpoint: backend choice by weight, cluster and endpoint choice, per-try and overall
 * timeouts, retries within the retry budget, mirrors, and the response streamed back.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Logger } from '../../lib/telemetry/log';
import type { RequestRecord } from '../telemetry/types';
import type { Cluster, ClusterEndpoint, ClusterManager } from '../upstream/cluster';
import { UpstreamError, type UpstreamExchange, type UpstreamRequestHead, type UpstreamResponse } from '../upstream/exchange';
import { backoffMs, shouldRetry, type AttemptOutcome, type RetryBudget, type RetryConditions } from '../upstream/retry-policy';
import { cookieValue } from '../upstream/load-balancer';
import { pickWeighted, type RandomSource } from '../upstream/weighted-pick';
import type { Downstream } from './downstream';
import { applyHeaderMutation } from './filters/header-mutation';
import { headerValue, isGrpcContentType, stripHopByHop } from './headers';
import { sendLocalReply } from './local-reply';
import { MirrorRequest } from './mirror-request';
import { RequestBody } from './request-body';
import type { HeaderMutation, Mirror, RetryPolicy, RouteBackend, RouteMatch } from './route-table';
import type { HeaderMap, HttpLimits, ResponseFlag } from './types';

export interface RouterDeps {
  clusters: ClusterManager;
  budget: RetryBudget;
  random: RandomSource;
  limits: HttpLimits;
  log: Logger;
  /** True while the engine drains: responses ask HTTP/1 callers to close. */
  draining(): boolean;
}

export interface ForwardRequest {
  ds: Downstream;
  record: RequestRecord;
  route: RouteMatch;
  head: UpstreamRequestHead;
  grpc: boolean;
  sourceIp: string;
  /** A flag an earlier filter earned (DI after an injected delay). */
  extraFlag?: ResponseFlag;
}

const GRPC_DEADLINE_EXCEEDED = 4;

/** RFC 9110 §9.2.2: repeating one of these has the effect of sending it once. */
const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** gRPC's grpc-timeout header ("100m", "5S"): milliseconds, or undefined when absent or malformed. */
export function parseGrpcTimeout(v: string | string[] | undefined): number | undefined {
  if (typeof v !== 'string') return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (!m) return undefined;
  const n = Number(m[1]);
  const scale: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
  return Math.max(1, Math.ceil(n * scale[m[2]]));
}

type AttemptResult =
  | { kind: 'response'; exchange: UpstreamExchange; response: UpstreamResponse }
  | { kind: 'failure'; outcome: AttemptOutcome; error: UpstreamError | null; reused: boolean };

/** One request's trip upstream. Created per request; all state lives here rather than in closures. */

const CONDITIONS = new WeakMap<RetryPolicy, RetryConditions>();

export class ForwardedRequest {
  private readonly ds: Downstream;
  private readonly record: RequestRecord;
  private readonly route: RouteMatch;
  private readonly head: UpstreamRequestHead;
  private readonly body: RequestBody;
  private cluster: Cluster | null = null;
  private backend: RouteBackend | null = null;
  private exchange: UpstreamExchange | null = null;
  private responseBody: Readable | null = null;
  private timer: NodeJS.Timeout | null = null;
  private tryTimer: NodeJS.Timeout | null = null;
  private tryTimedOut = false;
  private done = false;
  private budgetStarted = false;
  /** Set when a sticky-cookie policy applies and the caller sent no cookie: the value generated for it. */
  private generatedCookie: string | undefined = undefined;
  /** Upstream attempts made so far, the transparent resend included. */
  private attempts = 0;
  /** Response flags earned so far, comma-joined as Envoy prints them; '' for none. */
  private flags = '';
  private status = 0;

  constructor(
    private readonly deps: RouterDeps,
    private readonly req: ForwardRequest,
  ) {
    this.ds = req.ds;
    this.record = req.record;
    this.route = req.route;
    this.head = req.head;
    this.body = new RequestBody(req.ds.body, deps.limits.maxRetryBufferBytes);
    this.ds.onAbort(() => this.onDownstreamAbort());
    if (req.extraFlag) this.addFlag(req.extraFlag);
  }

  start(): void {
    const backend = pickWeighted(this.route.backends, this.deps.random);
    if (!backend) {
      this.localReply(this.route.noBackendStatus, 'no healthy upstream', 'UH');
      return;
    }
    this.backend = backend;
    const cluster = this.deps.clusters.get({ hostname: backend.hostname, port: backend.port, subset: backend.subset?.name });
    if (cluster.unknownBackend && this.route.route.kind !== 'VirtualService') {
      // Gateway API: a backendRef to a Service (or port) that does not exist gets 500 for its share
      // of the traffic (GRPCRoute: UNAVAILABLE); the route's status names the missing reference.
      this.localReply(this.route.noBackendStatus, 'backend not found', 'NC');
      return;
    }
    if (backend.subset && (backend.subset.labels === null || cluster.undefinedSubset)) {
      this.localReply(503, 'no healthy upstream', 'NC');
      return;
    }
    this.cluster = cluster;
    cluster.counters.requests++;
    this.deps.budget.onRequestStart(cluster.name);
    this.budgetStarted = true;

    const grpcTimeout = this.req.grpc ? parseGrpcTimeout(this.head.headers['grpc-timeout']) : undefined;
    const routeTimeout = this.route.timeouts.requestMs;
    const timeout = grpcTimeout !== undefined && (routeTimeout === undefined || grpcTimeout < routeTimeout) ? grpcTimeout : routeTimeout;
    if (timeout !== undefined) this.timer = setTimeout(() => this.onTimeout(), timeout);

    for (const m of this.route.filters.mirrors) {
      if (this.deps.random() * 100 < m.percent) this.mirror(m);
    }
    // After the mirrors copied the head: a backendRef's own filters apply to that backend only.
    applyHeaderMutation(this.head.headers, backend.requestHeaders);
    void this.run(cluster);
  }

  private retryConditions(): RetryConditions | null {
    const r = this.route.retry;
    if (!r) return null;
    // Built once per compiled policy: every route has one (Istio's default when none is configured).
    let c = CONDITIONS.get(r);
    if (c === undefined) CONDITIONS.set(r, (c = { on: new Set(r.retryOn), statusCodes: new Set(r.codes) }));
    return c;
  }

  private async run(cluster: Cluster): Promise<void> {
    const conds = this.retryConditions();
    const maxRetries = this.route.retry?.attempts ?? 0;
    const sticky = cluster.stickyCookie;
    if (sticky && cookieValue(headerValue(this.head.headers, 'cookie'), sticky.name) === undefined) this.generatedCookie = randomBytes(8).toString('hex');
    const tried = new Set<string>();
    let retries = 0;
    let transparentRetryUsed = false;
    const protocol = cluster.protocolFor(this.ds.protocol);
    for (;;) {
      if (this.done) return;
      const ep = cluster.pick({ headers: this.head.headers, sourceIp: this.req.sourceIp, path: this.head.path, generatedCookie: this.generatedCookie }, tried);
      if (!ep) {
        this.localReply(503, 'no healthy upstream', 'UH');
        return;
      }
      const admission = cluster.admit(protocol);
      if (!admission.ok) {
        this.localReply(503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', 'UO');
        return;
      }
      if (this.route.retry?.retryPreviousHosts !== true) tried.add(ep.id);
      this.record.setDestination(ep.target.workload, ep.target.workload.identity, `${ep.address}:${ep.target.port}`);
      // The endpoint counts as busy (LEAST_REQUEST) until its response has been carried whole, not
      // only until its headers: a long body or a server stream is load on it, as Envoy counts it.
      cluster.onStart(ep);
      let result: AttemptResult;
      try {
        result = await this.attempt(cluster, ep);
      } catch (e) {
        cluster.onEnd(ep);
        throw e;
      }
      if (this.done) {
        cluster.onEnd(ep);
        admission.release();
        if (result.kind === 'response') result.exchange.abort();
        return;
      }
      if (result.kind === 'response') {
        const { response } = result;
        cluster.report(ep, { status: response.status });
        const grpcStatus = response.headers['grpc-status'];
        const outcome: AttemptOutcome = { status: response.status, grpcStatus: typeof grpcStatus === 'string' ? Number(grpcStatus) : undefined };
        if (conds && this.decideRetry(conds, outcome, retries, maxRetries, cluster)) {
          retries++;
          cluster.onEnd(ep);
          this.discard(result.exchange, response);
          admission.release();
          if (!(await this.backoff(retries))) return;
          continue;
        }
        this.respond(result.exchange, response, () => {
          admission.release();
          cluster.onEnd(ep);
        });
        return;
      }
      cluster.onEnd(ep);
      admission.release();
      const { outcome, error } = result;
      cluster.report(ep, { connectFailure: outcome.connectFailure, status: outcome.connectFailure ? undefined : 503 });
      // A keep-alive connection the endpoint closed just as we reused it: usually the request never
      // reached the application, but that cannot be known, so the one silent retry (whatever the
      // policy says) is only for idempotent methods; a POST is not sent twice behind the caller's back.
      if (result.reused && !transparentRetryUsed && IDEMPOTENT_METHODS.has(this.head.method) && this.body.replayable && !this.tryTimedOut) {
        transparentRetryUsed = true;
        tried.delete(ep.id);
        continue;
      }
      if (conds && this.decideRetry(conds, outcome, retries, maxRetries, cluster)) {
        retries++;
        if (!(await this.backoff(retries))) return;
        continue;
      }
      if (this.done) return;
      if (outcome.perTryTimeout) this.localReply(504, 'upstream request timeout', 'UT', GRPC_DEADLINE_EXCEEDED);
      else if (outcome.connectFailure) this.localReply(503, `upstream connect error or disconnect/reset before headers. reset reason: connection failure${error ? `, ${error.message}` : ''}`, 'UF');
      else this.localReply(503, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination', 'UC');
      return;
    }
  }

  /**
   * Whether to retry: the policy's conditions, the attempts left, a body that can be sent again,
   * and the retry budget. A granted retry holds a budget slot until its attempt ends.
   */
  private decideRetry(conds: RetryConditions, outcome: AttemptOutcome, retries: number, maxRetries: number, cluster: Cluster): boolean {
    if (this.done) return false;
    const d = shouldRetry(conds, outcome, { bodyReplayable: this.body.replayable, retriesSoFar: retries, maxRetries });
    if (!d.retry) {
      if (d.reason === 'retries exhausted') this.addFlag('URX');
      return false;
    }
    if (!this.deps.budget.tryAcquire(cluster.name, cluster.maxConcurrentRetries)) {
      cluster.counters.retriesSuppressed++;
      this.addFlag('URX');
      return false;
    }
    cluster.counters.retries++;
    this.heldRetry = cluster.name;
    return true;
  }

  /** Exponential backoff with full jitter before retry number `retry`; false when the request ended meanwhile. */
  private async backoff(retry: number): Promise<boolean> {
    const wait = backoffMs(retry, this.deps.random, this.route.retry?.backoffBaseMs);
    if (wait > 0) await new Promise<void>((r) => setTimeout(r, wait));
    return !this.done;
  }

  private heldRetry: string | null = null;

  private addFlag(f: ResponseFlag): void {
    if (this.flags === '') this.flags = f;
    else if (!this.flags.split(',').includes(f)) this.flags += `,${f}`;
  }

  private releaseRetry(): void {
    if (this.heldRetry !== null) {
      this.deps.budget.release(this.heldRetry);
      this.heldRetry = null;
    }
  }

  private async attempt(cluster: Cluster, ep: ClusterEndpoint): Promise<AttemptResult> {
    this.tryTimedOut = false;
    this.exchange = null;
    const perTry = this.route.timeouts.perTryTimeoutMs ?? this.route.retry?.perTryTimeoutMs;
    let exchange: UpstreamExchange | null = null;
    try {
      // The upstream codecs only read the head (each builds its own wire form), so attempts share it.
      const head = this.head;
      // As Istio configures Envoy (include_request_attempt_count): the endpoint can tell a retry.
      head.headers['x-envoy-attempt-count'] = String(++this.attempts);
      if (cluster.protocolFor(this.ds.protocol) === 'http2') {
        const pending = cluster.http2.request(ep.id, ep.target, head);
        if (perTry !== undefined) this.armTryTimer(perTry);
        exchange = await pending;
      } else {
        exchange = cluster.http1.request(ep.id, ep.target, head);
        if (perTry !== undefined) this.armTryTimer(perTry);
      }
      this.exchange = exchange;
      if (this.tryTimedOut || this.done) {
        exchange.abort();
        return { kind: 'failure', outcome: { perTryTimeout: true }, error: null, reused: false };
      }
      if (this.ds.body !== null && !this.body.attach(exchange.requestBody)) {
        exchange.abort();
        return { kind: 'failure', outcome: { reset: true }, error: null, reused: false };
      }
      this.ds.sendContinue();
      const response = await exchange.response;
      this.clearTryTimer();
      return { kind: 'response', exchange, response };
    } catch (e) {
      this.clearTryTimer();
      this.body.detach();
      exchange?.abort();
      if (this.tryTimedOut) return { kind: 'failure', outcome: { perTryTimeout: true }, error: null, reused: false };
      const err = e instanceof UpstreamError ? e : new UpstreamError('Reset', e instanceof Error ? e.message : String(e));
      const outcome: AttemptOutcome =
        err.code === 'ConnectFailed' || err.code === 'Denied' || err.code === 'Timeout'
          ? { connectFailure: true }
          : err.code === 'RefusedStream'
            ? { refusedStream: true }
            : { reset: true };
      return { kind: 'failure', outcome, error: err, reused: err.reusedConnection };
    } finally {
      this.releaseRetry();
    }
  }

  private armTryTimer(ms: number): void {
    this.clearTryTimer();
    this.tryTimer = setTimeout(() => {
      this.tryTimer = null;
      this.tryTimedOut = true;
      this.exchange?.abort();
    }, ms);
  }

  private clearTryTimer(): void {
    if (this.tryTimer) clearTimeout(this.tryTimer);
    this.tryTimer = null;
  }

  /** Throws a response away before retrying: drained when the connection can be kept, reset otherwise. */
  private discard(exchange: UpstreamExchange, response: UpstreamResponse): void {
    this.body.detach();
    if (exchange.requestBody.writableFinished) response.body.resume();
    else exchange.abort();
  }

  /** The cookie this request was hashed by, for the caller to send from now on (Envoy's generated-cookie format). */
  private addStickyCookie(headers: HeaderMap): void {
    const c = this.cluster?.stickyCookie;
    if (!c || this.generatedCookie === undefined) return;
    const value = `${c.name}="${this.generatedCookie}"${c.maxAgeSec !== null ? `; Max-Age=${c.maxAgeSec}` : ''}; Path=${c.path}; HttpOnly`;
    const prev = headers['set-cookie'];
    headers['set-cookie'] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
  }

  private responseHeaders(response: UpstreamResponse): HeaderMap {
    const routeMutation = this.route.filters.responseHeaders;
    const backendMutation = this.backend?.responseHeaders as HeaderMutation | undefined;
    if (!routeMutation && !backendMutation) {
      // Stripping hop-by-hop fields loses nothing respond() reads later, so without mutations the
      // upstream's map (fresh per response) is used as it is.
      stripHopByHop(response.headers);
      return response.headers;
    }
    const h: HeaderMap = { ...response.headers };
    stripHopByHop(h);
    applyHeaderMutation(h, routeMutation);
    applyHeaderMutation(h, backendMutation);
    return h;
  }

  private respond(exchange: UpstreamExchange, response: UpstreamResponse, release: () => void): void {
    this.exchange = exchange;
    this.status = response.status;
    if (this.deps.draining()) this.ds.closeConnectionAfter();
    const headers = this.responseHeaders(response);
    if (this.generatedCookie !== undefined) this.addStickyCookie(headers);
    const grpcResponse = isGrpcContentType(response.headers);
    try {
      // An HTTP/2 caller that accepts trailers (te: trailers) gets any the endpoint sends, announced
      // or not (announcing them is only a SHOULD); the stream then ends with a trailers frame.
      const trailers = grpcResponse || response.headers.trailer !== undefined || (this.ds.protocol === 'http2' && this.head.headers.te === 'trailers');
      this.ds.sendHeaders(response.status, headers, { endStream: response.endStream, trailers });
    } catch (e) {
      this.deps.log.debug({ err: e }, 'downstream rejected response headers');
      release();
      exchange.abort();
      this.ds.reset();
      this.finish(502, 'UC');
      return;
    }
    if (response.endStream) {
      release();
      this.finish(response.status, undefined, headerString(response.headers['grpc-status']));
      response.body.resume();
      return;
    }
    if (response.whole !== undefined) {
      // Complete already: one write and the end, without a stream and its events.
      if (response.whole.length > 0 && !this.done) {
        this.record.responseBytes += response.whole.length;
        this.ds.write(response.whole);
      }
      release();
      if (this.done) return;
      this.ds.end();
      this.finish(response.status, undefined, headerString(response.headers['grpc-status']));
      return;
    }
    const body = response.body;
    this.responseBody = body;
    let ended = false;
    // Bytes already received leave with the head in one write, not a tick later in another.
    const first = body.read() as Buffer | null;
    let blocked = false;
    if (first !== null && first.length > 0 && !this.done) {
      this.record.responseBytes += first.length;
      blocked = !this.ds.write(first);
    }
    body.on('data', (chunk: Buffer) => {
      if (this.done) return;
      this.record.responseBytes += chunk.length;
      if (!this.ds.write(chunk)) {
        body.pause();
        this.ds.sink.once('drain', () => body.resume());
      }
    });
    body.once('end', () => {
      ended = true;
      release();
      if (this.done) return;
      const t = response.trailers();
      let trailers: HeaderMap | undefined;
      if (t) {
        trailers = { ...t };
        stripHopByHop(trailers);
      }
      this.ds.end(trailers);
      const grpc = headerString(trailers?.['grpc-status']) ?? headerString(response.headers['grpc-status']);
      this.finish(response.status, undefined, grpc);
    });
    body.once('close', () => {
      if (ended) return;
      release();
      if (this.done) return;
      // The endpoint went away mid-response: the caller must see a broken response, not a short one.
      this.ds.reset();
      this.finish(response.status, 'UC');
    });
    if (blocked) {
      body.pause();
      this.ds.sink.once('drain', () => body.resume());
    }
  }

  private onTimeout(): void {
    this.timer = null;
    if (this.done) return;
    this.exchange?.abort();
    this.responseBody?.destroy();
    this.body.dispose();
    if (this.ds.headersSent) {
      this.ds.reset();
      this.finish(this.status, 'UT');
      return;
    }
    this.localReply(504, 'upstream request timeout', 'UT', GRPC_DEADLINE_EXCEEDED);
  }

  private onDownstreamAbort(): void {
    if (this.done) return;
    this.exchange?.abort();
    this.responseBody?.destroy();
    this.finish(this.ds.headersSent ? this.status : 0, 'DC');
  }

  private localReply(status: number, text: string, flag: ResponseFlag, grpcStatus?: number): void {
    if (this.done) return;
    const sent = sendLocalReply(this.ds, status, text, { grpc: this.req.grpc, grpcStatus, record: this.record });
    this.finish(sent.status, flag, sent.grpcStatus);
  }

  private finish(status: number, flag?: ResponseFlag, grpcStatus?: string): void {
    if (this.done) return;
    this.done = true;
    if (flag) this.addFlag(flag);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.clearTryTimer();
    this.releaseRetry();
    if (this.budgetStarted && this.cluster) this.deps.budget.onRequestEnd(this.cluster.name);
    this.budgetStarted = false;
    this.record.requestBytes = this.body.bytes;
    this.body.dispose();
    this.record.close(status, this.flags === '' ? '-' : this.flags, grpcStatus);
  }

  /**
   * A copy of the request to another backend, its answer ignored; it never delays or fails the real
   * one. The body streams to it as it arrives (see MirrorRequest for the bound on a slow mirror).
   */
  private mirror(m: Mirror): void {
    const hasBody = this.ds.body !== null;
    const copy = new MirrorRequest();
    // Registered now, before the body is read, so the copy misses no byte.
    if (hasBody) this.body.tee(copy);
    void this.sendMirror(m, copy, hasBody);
  }

  private async sendMirror(m: Mirror, copy: MirrorRequest, hasBody: boolean): Promise<void> {
    try {
      const cluster = this.deps.clusters.get({ hostname: m.backend.hostname, port: m.backend.port, subset: m.backend.subset?.name });
      const ep = cluster.pick({ headers: this.head.headers, sourceIp: this.req.sourceIp, path: this.head.path }, new Set());
      if (!ep || copy.aborted) {
        copy.abort();
        return;
      }
      // Envoy marks shadow traffic by suffixing the host, so the mirror's logs can tell it apart.
      const head: UpstreamRequestHead = { ...this.head, headers: { ...this.head.headers }, authority: `${this.head.authority.replace(/:\d+$/, '')}-shadow`, hasBody };
      const ex = cluster.protocolFor(this.ds.protocol) === 'http2' ? await cluster.http2.request(ep.id, ep.target, head) : cluster.http1.request(ep.id, ep.target, head);
      copy.start(ex, hasBody);
      const timer = setTimeout(() => ex.abort(), 30_000);
      try {
        const r = await ex.response;
        r.body.resume();
        r.body.once('close', () => clearTimeout(timer));
      } catch {
        clearTimeout(timer);
      }
    } catch (e) {
      copy.abort();
      this.deps.log.debug({ err: e }, 'mirror request failed');
    }
  }
}

function headerString(v: string | string[] | undefined): string | undefined {
  return v === undefined ? undefined : Array.isArray(v) ? v[0] : v;
}
