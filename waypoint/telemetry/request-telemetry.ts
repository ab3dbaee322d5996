import type { Registry, RegistryContentType } from 'prom-client';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import type { Logger } from '../../lib/telemetry/log';
import { AccessLog, type AccessLogOptions } from './access-log';
import { WaypointMetrics } from './metrics';
import type { RequestOutcome } from './outcome';
import { WaypointTracing, type RequestTrace } from './tracing';
import type { RequestInfo, RequestRecord, RequestTelemetry } from './types';

export interface WaypointTelemetryOptions {
  /** Where the istio_* metrics are registered (the waypoint's /stats/prometheus registry). */
  registry: Registry<RegistryContentType>;
  /** Access-log lines go here at info level. */
  log: Logger;
  /** OTLP/HTTP traces endpoint, e.g. "http://127.0.0.1:4318/v1/traces"; absent = no spans, traceparent still propagated. */
  otlpEndpoint?: string;
  /** Trace resource service.name, e.g. "waypoint.<namespace>". */
  serviceName?: string;
  /** Share of new traces to sample (0..1, default 1); callers' sampling decisions are honoured. */
  sampleRatio?: number;
  /** Access-log batching (see AccessLogOptions); off by default, so each line is written at once. */
  accessLog?: AccessLogOptions;
}

/** The waypoint's RequestTelemetry: Istio metrics, one access-log line and one span per request. */
export class WaypointTelemetry implements RequestTelemetry {
  readonly metrics: WaypointMetrics;
  private readonly accessLog: AccessLog;
  private readonly tracing: WaypointTracing;

  constructor(opts: WaypointTelemetryOptions) {
    this.metrics = new WaypointMetrics(opts.registry);
    this.accessLog = new AccessLog(opts.log, opts.accessLog);
    this.tracing = new WaypointTracing({ otlpEndpoint: opts.otlpEndpoint, serviceName: opts.serviceName, sampleRatio: opts.sampleRatio, log: opts.log });
  }

  /** Whether spans are exported (an OTLP endpoint is configured). */
  get tracingEnabled(): boolean {
    return this.tracing.enabled;
  }

  start(info: RequestInfo): RequestRecord {
    return new WaypointRequestRecord(info, this.metrics, this.accessLog, this.tracing);
  }

  /** Exports buffered spans now, keeping tracing on. */
  flush(): Promise<void> {
    return this.tracing.flush();
  }

  /** Exports buffered spans and stops tracing; writes pending access-log lines. Metrics and access logs keep working. */
  shutdown(): Promise<void> {
    this.accessLog.flush();
    return this.tracing.shutdown();
  }

  /** Writes pending access-log lines now. */
  flushAccessLog(): void {
    this.accessLog.flush();
  }
}

class WaypointRequestRecord implements RequestRecord, RequestOutcome {
  readonly traceparent: string;
  readonly traceId: string;
  readonly startTime = Date.now();
  requestBytes = 0;
  responseBytes = 0;
  // RequestOutcome, filled in as the request progresses and read once at close.
  durationMs = 0;
  responseCode = 0;
  responseFlags = '-';
  grpcStatus: string | undefined = undefined;
  route: string | undefined = undefined;
  upstreamAddress: string | undefined = undefined;
  destination: WorkloadView | undefined = undefined;
  destinationPrincipal: string | null = null;

  private readonly startedAt = performance.now();
  private readonly trace: RequestTrace;
  private tcpOpenCounted = false;
  private closed = false;

  constructor(
    private readonly info: RequestInfo,
    private readonly metrics: WaypointMetrics,
    private readonly accessLog: AccessLog,
    private readonly tracing: WaypointTracing,
  ) {
    this.trace = tracing.start(info);
    this.traceparent = this.trace.traceparent;
    this.traceId = this.trace.traceId;
  }

  setRoute(route: string): void {
    this.route = route;
  }

  setDestination(workload: WorkloadView | undefined, principal: string | null, address?: string): void {
    if (this.closed) return;
    this.destination = workload;
    this.destinationPrincipal = principal;
    this.upstreamAddress = address;
  }

  /**
   * An opaque TCP connection counts as opened once its upstream connection is up (as the ztunnel
   * does), so long-lived connections show up before they close. One whose connect failed is counted
   * opened and closed together at close, in the same series (its flags), so opened minus closed
   * per series never shows a connection that does not exist.
   */
  connected(): void {
    if (this.closed || this.info.protocol !== 'tcp' || this.tcpOpenCounted) return;
    this.tcpOpenCounted = true;
    const i = this.info;
    this.metrics.tcpOpened(this.metrics.sourceLabels(i.source, i.sourcePrincipal), this.metrics.destinationLabels(this.destination, this.destinationPrincipal, i.destinationService));
  }

  close(responseCode: number, responseFlags: string, grpcStatus?: string): void {
    if (this.closed) return;
    this.closed = true;
    this.durationMs = performance.now() - this.startedAt;
    this.responseCode = responseCode;
    this.responseFlags = responseFlags || '-';
    this.grpcStatus = grpcStatus;
    const i = this.info;
    const src = this.metrics.sourceLabels(i.source, i.sourcePrincipal);
    const dst = this.metrics.destinationLabels(this.destination, this.destinationPrincipal, i.destinationService);
    if (i.protocol === 'tcp') {
      // Istio reports opaque TCP with the TCP metrics only: counting it in
      // istio_requests_total would skew request rates and success ratios on dashboards.
      // Closed in the series it was opened in ('-' once connected), so each series balances.
      this.metrics.tcpClosed(src, dst, this.tcpOpenCounted ? '-' : this.responseFlags, this.requestBytes, this.responseBytes, !this.tcpOpenCounted);
    } else {
      this.metrics.recordRequest({
        source: src,
        destination: dst,
        protocol: i.protocol,
        responseCode,
        grpcStatus,
        responseFlags: this.responseFlags,
        durationMs: this.durationMs,
        requestBytes: this.requestBytes,
        responseBytes: this.responseBytes,
      });
    }
    this.accessLog.write(i, this);
    this.tracing.finish(this.trace, this);
  }
}
