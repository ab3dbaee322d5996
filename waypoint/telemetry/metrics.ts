import type { Metric, Registry, RegistryContentType } from 'prom-client';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import { peerAttributes } from '../http/filters/authz';
import { grpcStatusForHttp } from '../http/local-reply';
// The ztunnel's TCP label set, so waypoint- and ztunnel-reported TCP series line up.
import { REQUEST_LABELS, type RequestLabels, type TcpLabels } from '../../lib/telemetry/istio-labels';

/**
 * The waypoint's Istio-standard request metrics (istio_requests_total & co.), plus the
 * TCP ones for opaque TCP it forwards, with Istio's label names so that existing Grafana
 * dashboards and Kiali work unchanged.
 *
 * Why not prom-client's Counter/Histogram: with Istio's 23 labels, prom-client validates
 * and re-serialises the whole label set on every inc/observe; one request (a counter and
 * three histograms) measured ~14 µs, a sizeable slice of the waypoint's 250 µs-per-request
 * CPU budget. Here the label set of a request is resolved to a cached series object through
 * a few small map look-ups, and the hot path is plain number updates; the values are handed
 * to the prom-client Registry (exposition, default labels, OpenMetrics) at scrape time.
 */

export { REQUEST_LABELS };
export type { RequestLabels };

/** Istio's (Envoy's) default buckets for istio_request_duration_milliseconds. */
export const DURATION_BUCKETS_MS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
];

/** Istio's buckets for istio_request_bytes / istio_response_bytes: exponential(1, 10, 10). */
export const BYTES_BUCKETS: readonly number[] = [1, 10, 100, 1000, 10000, 100000, 1e6, 1e7, 1e8, 1e9];

const UNKNOWN = 'unknown';
const REPORTER = 'waypoint';

/** The reporter and source/destination labels every series starts with, in Istio's order. Only when a series is created. */
function peerLabels(src: SourceLabels, dst: DestinationLabels) {
  return {
    reporter: REPORTER,
    source_workload: src.source_workload,
    source_workload_namespace: src.source_workload_namespace,
    source_principal: src.source_principal,
    source_app: src.source_app,
    source_version: src.source_version,
    source_canonical_service: src.source_canonical_service,
    source_canonical_revision: src.source_canonical_revision,
    destination_workload: dst.destination_workload,
    destination_workload_namespace: dst.destination_workload_namespace,
    destination_principal: dst.destination_principal,
    destination_app: dst.destination_app,
    destination_version: dst.destination_version,
    destination_service: dst.destination_service,
    destination_service_name: dst.destination_service_name,
    destination_service_namespace: dst.destination_service_namespace,
    destination_canonical_service: dst.destination_canonical_service,
    destination_canonical_revision: dst.destination_canonical_revision,
  };
}

/** The service a request was addressed to (RequestInfo.destinationService). */
export interface DestinationServiceRef {
  name: string;
  namespace: string;
  hostname: string;
}

export type RequestProtocol = 'http' | 'grpc' | 'tcp';

/** The source half of a label set; interned, so equal label values share one object. */
export interface SourceLabels {
  readonly id: number;
  readonly source_workload: string;
  readonly source_workload_namespace: string;
  readonly source_principal: string;
  readonly source_app: string;
  readonly source_version: string;
  readonly source_canonical_service: string;
  readonly source_canonical_revision: string;
  readonly connection_security_policy: string;
}

/** The destination half of a label set; interned like SourceLabels. */
export interface DestinationLabels {
  readonly id: number;
  readonly destination_workload: string;
  readonly destination_workload_namespace: string;
  readonly destination_principal: string;
  readonly destination_app: string;
  readonly destination_version: string;
  readonly destination_service: string;
  readonly destination_service_name: string;
  readonly destination_service_namespace: string;
  readonly destination_canonical_service: string;
  readonly destination_canonical_revision: string;
}

/** Non-cumulative bucket counts; cumulated only at scrape time. */
class HistogramData {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

interface RequestSeries {
  readonly labels: Readonly<RequestLabels>;
  requests: number;
  readonly duration: HistogramData;
  readonly requestBytes: HistogramData;
  readonly responseBytes: HistogramData;
}

interface TcpSeries {
  readonly labels: Readonly<TcpLabels>;
  opened: number;
  closed: number;
  sent: number;
  received: number;
}

/** One exposed sample, in the shape prom-client's Registry formats. */
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** Stands in for "no workload" as a WeakMap key. */
const NO_WORKLOAD: object = Object.freeze({});

/** gRPC status codes are 0..16; anything else from a (possibly hostile) upstream is "unknown". */
function grpcLabel(protocol: RequestProtocol, status: string | undefined, responseCode: number): string {
  if (status === undefined || status === '') {
    if (protocol !== 'grpc') return '';
    // No grpc-status: what a gRPC client makes of the HTTP status (as Envoy's getGrpcStatus falls
    // back to it); nothing at all when no response came back.
    return responseCode === 0 ? '' : String(grpcStatusForHttp(responseCode));
  }
  const n = Number(status);
  return Number.isInteger(n) && n >= 0 && n <= 16 ? String(n) : UNKNOWN;
}

/** Status codes are produced by upstreams; bounding them keeps a hostile one from minting series. */
function codeLabel(code: number): string {
  return Number.isInteger(code) && code >= 0 && code <= 999 ? String(code) : UNKNOWN;
}

/**
 * All series of one registry. Shared by every WaypointMetrics built on that registry, so
 * two telemetry instances (e.g. old and new after a reconfiguration) add up rather than
 * clash over the metric names.
 */
class MetricStore {
  readonly requestSeries = new Map<string, RequestSeries>();
  readonly tcpSeries = new Map<string, TcpSeries>();
  // Views are rebuilt with every snapshot; keying the fast caches by view identity lets
  // stale entries be collected with the snapshot and picks up changed workload metadata.
  private readonly sourceByView = new WeakMap<object, Map<string, SourceLabels>>();
  private readonly destinationByView = new WeakMap<object, Map<string, DestinationLabels>>();
  // Interning by value keeps one series per distinct label set across snapshots.
  private readonly sourceParts = new Map<string, SourceLabels>();
  private readonly destinationParts = new Map<string, DestinationLabels>();
  private nextPartId = 1;

  sourceLabels(view: WorkloadView | undefined, principal: string | null): SourceLabels {
    const viewKey = view ?? NO_WORKLOAD;
    let byPrincipal = this.sourceByView.get(viewKey);
    if (!byPrincipal) this.sourceByView.set(viewKey, (byPrincipal = new Map()));
    const key = principal ?? '';
    let part = byPrincipal.get(key);
    if (!part) {
      const m = view?.msg;
      const values = {
        source_workload: m?.name || UNKNOWN,
        // An unknown workload with a proven identity: its namespace is in the SPIFFE ID, as Istio reads it.
        source_workload_namespace: m?.namespace || peerAttributes(principal).namespace || UNKNOWN,
        source_principal: principal || UNKNOWN,
        source_app: m?.canonicalName || UNKNOWN,
        source_version: m?.canonicalRevision || UNKNOWN,
        source_canonical_service: m?.canonicalName || UNKNOWN,
        source_canonical_revision: m?.canonicalRevision || UNKNOWN,
        connection_security_policy: principal ? 'mutual_tls' : 'none',
      };
      const interned = Object.values(values).join('\u0000');
      part = this.sourceParts.get(interned);
      if (!part) this.sourceParts.set(interned, (part = Object.freeze({ id: this.nextPartId++, ...values })));
      byPrincipal.set(key, part);
    }
    return part;
  }

  destinationLabels(view: WorkloadView | undefined, principal: string | null, service: DestinationServiceRef): DestinationLabels {
    const viewKey = view ?? NO_WORKLOAD;
    let byKey = this.destinationByView.get(viewKey);
    if (!byKey) this.destinationByView.set(viewKey, (byKey = new Map()));
    const key = `${principal ?? ''}\u0000${service.hostname}\u0000${service.name}\u0000${service.namespace}`;
    let part = byKey.get(key);
    if (!part) {
      const m = view?.msg;
      const values = {
        destination_workload: m?.name || UNKNOWN,
        destination_workload_namespace: m?.namespace || UNKNOWN,
        destination_principal: principal || UNKNOWN,
        destination_app: m?.canonicalName || UNKNOWN,
        destination_version: m?.canonicalRevision || UNKNOWN,
        destination_service: service.hostname || UNKNOWN,
        destination_service_name: service.name || UNKNOWN,
        destination_service_namespace: service.namespace || UNKNOWN,
        destination_canonical_service: m?.canonicalName || UNKNOWN,
        destination_canonical_revision: m?.canonicalRevision || UNKNOWN,
      };
      const interned = Object.values(values).join('\u0000');
      part = this.destinationParts.get(interned);
      if (!part) this.destinationParts.set(interned, (part = Object.freeze({ id: this.nextPartId++, ...values })));
      byKey.set(key, part);
    }
    return part;
  }

  requestSeriesFor(src: SourceLabels, dst: DestinationLabels, protocol: RequestProtocol, code: string, grpc: string, flags: string): RequestSeries {
    const key = `${src.id},${dst.id},${protocol},${code},${grpc},${flags}`;
    let s = this.requestSeries.get(key);
    if (!s) {
      s = {
        labels: Object.freeze({
          ...peerLabels(src, dst),
          request_protocol: protocol,
          response_code: code,
          grpc_response_status: grpc,
          response_flags: flags,
          connection_security_policy: src.connection_security_policy,
        }),
        requests: 0,
        duration: new HistogramData(DURATION_BUCKETS_MS),
        requestBytes: new HistogramData(BYTES_BUCKETS),
        responseBytes: new HistogramData(BYTES_BUCKETS),
      };
      this.requestSeries.set(key, s);
    }
    return s;
  }

  tcpSeriesFor(src: SourceLabels, dst: DestinationLabels, flags: string): TcpSeries {
    const key = `${src.id},${dst.id},${flags}`;
    let s = this.tcpSeries.get(key);
    if (!s) {
      s = {
        labels: Object.freeze({
          ...peerLabels(src, dst),
          request_protocol: 'tcp',
          response_flags: flags,
          connection_security_policy: src.connection_security_policy,
        }),
        opened: 0,
        closed: 0,
        sent: 0,
        received: 0,
      };
      this.tcpSeries.set(key, s);
    }
    return s;
  }

  reset(): void {
    this.requestSeries.clear();
    this.tcpSeries.clear();
  }
}

function counterSamples<S extends { labels: Readonly<Record<string, string>> }>(series: Iterable<S>, value: (s: S) => number): Sample[] {
  const out: Sample[] = [];
  for (const s of series) {
    const v = value(s);
    // A series exists once anything touched it, but e.g. a connection with no bytes
    // should not expose a zero bytes counter (matching the ztunnel).
    if (v > 0) out.push({ value: v, labels: s.labels });
  }
  return out;
}

/** The same samples, order and label order (le first) prom-client's Histogram produces, so the exposition is identical. */
function histogramSamples(name: string, bounds: readonly number[], series: Iterable<RequestSeries>, data: (s: RequestSeries) => HistogramData): Sample[] {
  const out: Sample[] = [];
  const bucket = `${name}_bucket`;
  for (const s of series) {
    const h = data(s);
    if (h.count === 0) continue;
    let acc = 0;
    for (let i = 0; i < bounds.length; i++) {
      acc += h.counts[i];
      out.push({ value: acc, labels: { le: bounds[i], ...s.labels }, metricName: bucket });
    }
    out.push({ value: h.count, labels: { le: '+Inf', ...s.labels }, metricName: bucket });
    out.push({ value: h.sum, labels: s.labels, metricName: `${name}_sum` });
    out.push({ value: h.count, labels: s.labels, metricName: `${name}_count` });
  }
  return out;
}

/**
 * A metric as prom-client's Registry consumes it: the Registry only reads name, help, type,
 * aggregator and get(), and calls reset(). Values live in the shared MetricStore.
 */
class StoreMetric {
  readonly aggregator = 'sum';

  constructor(
    // Mutable: the Registry rewrites counter names when serving OpenMetrics.
    public name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    readonly store: MetricStore,
    private readonly samples: (store: MetricStore) => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: 'counter' | 'histogram'; aggregator: 'sum'; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples(this.store) };
  }

  reset(): void {
    this.store.reset();
  }
}

function buildMetrics(store: MetricStore): StoreMetric[] {
  const req = (s: MetricStore) => s.requestSeries.values();
  const tcp = (s: MetricStore) => s.tcpSeries.values();
  return [
    new StoreMetric('istio_requests_total', 'Total requests handled by the waypoint', 'counter', store, (s) => counterSamples(req(s), (x) => x.requests)),
    new StoreMetric('istio_request_duration_milliseconds', 'Request duration in milliseconds', 'histogram', store, (s) =>
      histogramSamples('istio_request_duration_milliseconds', DURATION_BUCKETS_MS, req(s), (x) => x.duration),
    ),
    new StoreMetric('istio_request_bytes', 'Request body sizes in bytes', 'histogram', store, (s) =>
      histogramSamples('istio_request_bytes', BYTES_BUCKETS, req(s), (x) => x.requestBytes),
    ),
    new StoreMetric('istio_response_bytes', 'Response body sizes in bytes', 'histogram', store, (s) =>
      histogramSamples('istio_response_bytes', BYTES_BUCKETS, req(s), (x) => x.responseBytes),
    ),
    new StoreMetric('istio_tcp_connections_opened_total', 'Total TCP connections opened', 'counter', store, (s) => counterSamples(tcp(s), (x) => x.opened)),
    new StoreMetric('istio_tcp_connections_closed_total', 'Total TCP connections closed', 'counter', store, (s) => counterSamples(tcp(s), (x) => x.closed)),
    new StoreMetric('istio_tcp_sent_bytes_total', 'Bytes sent toward the client (response direction)', 'counter', store, (s) => counterSamples(tcp(s), (x) => x.sent)),
    new StoreMetric('istio_tcp_received_bytes_total', 'Bytes received from the client (request direction)', 'counter', store, (s) =>
      counterSamples(tcp(s), (x) => x.received),
    ),
  ];
}

function sanitizeAmount(v: number): number {
  return v > 0 && Number.isFinite(v) ? v : 0;
}

export interface RequestObservation {
  source: SourceLabels;
  destination: DestinationLabels;
  protocol: 'http' | 'grpc';
  responseCode: number;
  grpcStatus?: string;
  /** Envoy vocabulary (UF, UH, URX, DC...); '-' for none. Produced by the waypoint, never by traffic. */
  responseFlags: string;
  durationMs: number;
  requestBytes: number;
  responseBytes: number;
}

export class WaypointMetrics {
  private readonly store: MetricStore;

  constructor(registry: Registry<RegistryContentType>) {
    const existing: unknown = registry.getSingleMetric('istio_requests_total');
    if (existing instanceof StoreMetric) {
      this.store = existing.store;
      return;
    }
    this.store = new MetricStore();
    for (const m of buildMetrics(this.store)) {
      // The Registry's declared type lists prom-client's own classes only, but at run time
      // it needs just the members StoreMetric has (see the class comment). Throws, like
      // prom-client, if another metric already holds one of the names.
      registry.registerMetric(m as unknown as Metric<string>);
    }
  }

  /** Resolved once per request; cheap after the first request of a given source. */
  sourceLabels(view: WorkloadView | undefined, principal: string | null): SourceLabels {
    return this.store.sourceLabels(view, principal);
  }

  destinationLabels(view: WorkloadView | undefined, principal: string | null, service: DestinationServiceRef): DestinationLabels {
    return this.store.destinationLabels(view, principal, service);
  }

  /** istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes. */
  recordRequest(o: RequestObservation): void {
    const s = this.store.requestSeriesFor(o.source, o.destination, o.protocol, codeLabel(o.responseCode), grpcLabel(o.protocol, o.grpcStatus, o.responseCode), o.responseFlags || '-');
    s.requests++;
    s.duration.observe(sanitizeAmount(o.durationMs));
    s.requestBytes.observe(sanitizeAmount(o.requestBytes));
    s.responseBytes.observe(sanitizeAmount(o.responseBytes));
  }

  /** An opaque TCP connection through the waypoint was established toward `destination`. */
  tcpOpened(source: SourceLabels, destination: DestinationLabels): void {
    this.store.tcpSeriesFor(source, destination, '-').opened++;
  }

  /**
   * An opaque TCP connection ended. `countOpen` when it was never counted as opened (it
   * failed before an upstream was chosen), so opened and closed still balance.
   */
  tcpClosed(source: SourceLabels, destination: DestinationLabels, flags: string, received: number, sent: number, countOpen: boolean): void {
    const s = this.store.tcpSeriesFor(source, destination, flags || '-');
    if (countOpen) s.opened++;
    s.closed++;
    s.received += sanitizeAmount(received);
    s.sent += sanitizeAmount(sent);
  }
}
