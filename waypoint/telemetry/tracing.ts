import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  defaultTextMapGetter,
  isSpanContextValid,
  type Attributes,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator, parseTraceParent, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  RandomIdGenerator,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../../lib/telemetry/log';
import type { RequestOutcome } from './outcome';
import type { RequestInfo } from './types';

export interface TracingOptions {
  /** OTLP/HTTP (JSON) traces endpoint, e.g. "http://127.0.0.1:4318/v1/traces"; absent = no spans, propagation only. */
  otlpEndpoint?: string;
  /** The resource's service.name, e.g. "waypoint.<namespace>". */
  serviceName?: string;
  /**
   * Share of new traces (requests without a caller trace) to sample, 0..1; default 1. A
   * caller's sampling decision is always honoured, as Envoy does.
   */
  sampleRatio?: number;
  log: Logger;
}

export interface RequestTrace {
  readonly traceId: string;
  /** For the upstream request: this trace, this request's span id, the sampling decision. */
  readonly traceparent: string;
  /** Only when this request's span is recorded (tracing on and sampled). */
  readonly span: Span | undefined;
}

/** Envoy truncates its operation names; request-controlled text must not make spans huge. */
const MAX_SPAN_NAME = 256;

/** UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. */
const GRPC_ERROR_STATUSES = new Set(['2', '4', '8', '12', '13', '14', '15']);

/**
 * The span's operation name, as Istio's route decorator sets it: "<service host>:<port>/*". Built
 * from configuration only, so neither the caller's Host nor its paths can mint operation names in
 * the trace backend (the path is in the span's attributes).
 */
export function spanName(info: RequestInfo): string {
  const host = info.destinationService.hostname;
  if (info.protocol === 'tcp') return `tcp ${host}`;
  const name = info.servicePort !== undefined ? `${host}:${info.servicePort}/*` : `${host}/*`;
  return name.length > MAX_SPAN_NAME ? name.slice(0, MAX_SPAN_NAME) : name;
}

/** Reports export failures through the waypoint's log (OTel's own diag is silent by default), at most every 30 s. */
class ReportingExporter implements SpanExporter {
  private lastWarn = 0;
  private suppressed = 0;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: Logger,
    private readonly endpoint: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        const now = Date.now();
        if (now - this.lastWarn >= 30_000) {
          this.log.warn({ endpoint: this.endpoint, spans: spans.length, suppressed: this.suppressed, err: result.error?.message }, 'trace export failed');
          this.lastWarn = now;
          this.suppressed = 0;
        } else {
          this.suppressed++;
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush ? this.inner.forceFlush() : Promise.resolve();
  }
}

/**
 * W3C trace context for every request, and an OpenTelemetry SERVER span per request when
 * an OTLP endpoint is configured. No global OTel state is touched (no global provider,
 * propagator or context manager), so several waypoints can share a process.
 */
export class WaypointTracing {
  private readonly propagator = new W3CTraceContextPropagator();
  private readonly ids = new RandomIdGenerator();
  private readonly rootSampler: TraceIdRatioBasedSampler;
  private readonly provider: BasicTracerProvider | undefined;
  private readonly tracer: Tracer | undefined;
  private shutdownPromise: Promise<void> | undefined;

  constructor(opts: TracingOptions) {
    const ratio = opts.sampleRatio === undefined || Number.isNaN(opts.sampleRatio) ? 1 : Math.min(1, Math.max(0, opts.sampleRatio));
    this.rootSampler = new TraceIdRatioBasedSampler(ratio);
    if (opts.otlpEndpoint) {
      const exporter = new ReportingExporter(new OTLPTraceExporter({ url: opts.otlpEndpoint }), opts.log, opts.otlpEndpoint);
      this.provider = new BasicTracerProvider({
        resource: defaultResource().merge(resourceFromAttributes({ 'service.name': opts.serviceName ?? 'waypoint' })),
        sampler: new ParentBasedSampler({ root: this.rootSampler }),
        idGenerator: this.ids,
        spanLimits: { attributeValueLengthLimit: 2048 },
        spanProcessors: [new BatchSpanProcessor(exporter)],
      });
      this.tracer = this.provider.getTracer('ambit-waypoint');
    }
  }

  get enabled(): boolean {
    return this.tracer !== undefined;
  }

  start(info: RequestInfo): RequestTrace {
    // Opaque TCP carries no headers to propagate into and Envoy does not trace it either.
    if (this.tracer && info.protocol !== 'tcp') return this.startSpan(this.tracer, info);
    return this.propagateOnly(info);
  }

  /** Adds the outcome to the span and ends it; a no-op for unrecorded requests. */
  finish(t: RequestTrace, o: RequestOutcome): void {
    const span = t.span;
    if (!span) return;
    const attrs: Attributes = {
      'http.status_code': o.responseCode,
      response_flags: o.responseFlags || '-',
      'grpc.status_code': o.grpcStatus,
      request_size: o.requestBytes,
      response_size: o.responseBytes,
      route_name: o.route,
      upstream_address: o.upstreamAddress,
      'upstream.workload': o.destination?.msg.name,
      'upstream.namespace': o.destination?.msg.namespace,
      'upstream.principal': o.destinationPrincipal ?? undefined,
    };
    // Envoy marks 5xx (and no response at all) as errors; 4xx are the client's business. gRPC
    // errors travel in HTTP 200s: the server-side failure statuses count too, as Envoy tags them.
    if (o.responseCode >= 500 || o.responseCode === 0 || GRPC_ERROR_STATUSES.has(o.grpcStatus ?? '')) {
      attrs.error = true;
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
    span.setAttributes(attrs);
    span.end();
  }

  /**
   * Exports what is buffered and stops; later spans are dropped. Idempotent. Never rejects:
   * a failed export was already logged, and shutting the waypoint down must not fail on it.
   */
  shutdown(): Promise<void> {
    if (!this.shutdownPromise) this.shutdownPromise = this.provider ? this.provider.shutdown().catch(() => undefined) : Promise.resolve();
    return this.shutdownPromise;
  }

  /** Exports what is buffered, keeping tracing on. Never rejects, as shutdown(). */
  async flush(): Promise<void> {
    if (this.provider) await this.provider.forceFlush().catch(() => undefined);
  }

  private startSpan(tracer: Tracer, info: RequestInfo): RequestTrace {
    // An absent or malformed traceparent leaves the root context: a new trace.
    const parent = info.traceparent
      ? this.propagator.extract(ROOT_CONTEXT, { traceparent: info.traceparent, tracestate: info.tracestate }, defaultTextMapGetter)
      : ROOT_CONTEXT;
    const span = tracer.startSpan(spanName(info), { kind: SpanKind.SERVER }, parent);
    const sc = span.spanContext();
    if (!span.isRecording()) return { traceId: sc.traceId, traceparent: this.format(sc), span: undefined };
    // Attributes only for recorded spans: unsampled requests pay for ids alone.
    const src = info.source?.msg;
    span.setAttributes({
      component: 'proxy',
      'http.method': info.method,
      'http.url': `http://${info.authority}${info.path}`,
      'http.protocol': info.protocol,
      user_agent: info.userAgent,
      'guid:x-request-id': info.requestId,
      'peer.address': info.sourceAddress,
      'peer.principal': info.sourcePrincipal ?? undefined,
      'peer.workload': src?.name,
      'peer.namespace': src?.namespace,
      upstream_cluster: info.destinationService.hostname,
    });
    return { traceId: sc.traceId, traceparent: this.format(sc), span };
  }

  /** No spans: continue the caller's trace (new span id, its sampled flag) or start one. */
  private propagateOnly(info: RequestInfo): RequestTrace {
    const parent = info.traceparent ? parseTraceParent(info.traceparent) : null;
    let sc: SpanContext;
    if (parent) {
      sc = { traceId: parent.traceId, spanId: this.ids.generateSpanId(), traceFlags: parent.traceFlags & TraceFlags.SAMPLED };
    } else {
      const traceId = this.ids.generateTraceId();
      const sampled = this.rootSampler.shouldSample(ROOT_CONTEXT, traceId).decision === SamplingDecision.RECORD_AND_SAMPLED;
      sc = { traceId, spanId: this.ids.generateSpanId(), traceFlags: sampled ? TraceFlags.SAMPLED : TraceFlags.NONE };
    }
    return { traceId: sc.traceId, traceparent: this.format(sc), span: undefined };
  }

  /**
   * The W3C traceparent for our span: what the OTel propagator's inject() writes, without building
   * a context per request. Only the ids and flags; the caller's tracestate is forwarded as received.
   */
  private format(sc: SpanContext): string {
    if (!isSpanContextValid(sc)) return '';
    const flags = sc.traceFlags & 0xff;
    return `00-${sc.traceId}-${sc.spanId}-${flags < 16 ? '0' : ''}${flags.toString(16)}`;
  }
}
