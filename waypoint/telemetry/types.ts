import type { WorkloadView } from '../../lib/mesh/snapshot';

/**
 * The contract between the waypoint's HTTP connection manager and its telemetry: one
 * RequestRecord per HTTP request (or per opaque TCP connection), which records the
 * istio_requests_* metrics, the access-log line and the trace span once, when it closes.
 */
export interface RequestInfo {
  /** The calling workload, when the mesh knows it (by the tunnel's peer identity and source address). */
  source?: WorkloadView;
  /** The caller's proven SPIFFE ID ("spiffe://td/ns/x/sa/y"); null when none. */
  sourcePrincipal: string | null;
  sourceAddress: string;
  /** The service the request was addressed to. */
  destinationService: { name: string; namespace: string; hostname: string };
  /** The service port the tunnel named (the span's operation name carries it, as Istio's route decorator does). */
  servicePort?: number;
  /** 'http' | 'grpc' | 'tcp' (opaque bytes); the metrics' request_protocol. */
  protocol: 'http' | 'grpc' | 'tcp';
  method: string;
  /** Request target as received; for the access log and the span only, never a metric label. */
  path: string;
  authority: string;
  userAgent?: string;
  requestId?: string;
  /** The caller's W3C `traceparent` (and `tracestate`), if it sent one. */
  traceparent?: string;
  tracestate?: string;
}

export interface RequestRecord {
  /** The W3C traceparent to send upstream: the caller's trace id with this request's span id. */
  readonly traceparent: string;
  readonly traceId: string;
  /** Bytes of the request body received from the caller, and of the response body sent back. */
  requestBytes: number;
  responseBytes: number;
  /** Which route served it ("HTTPRoute/ns/name#rule" style); access log and span only. */
  setRoute(route: string): void;
  /** The endpoint chosen (last attempt's), for destination_* labels. */
  setDestination(workload: WorkloadView | undefined, principal: string | null, address?: string): void;
  /** Opaque TCP: the upstream connection is established (istio_tcp_connections_opened_total counts it now). */
  connected?(): void;
  /** Records metrics, the access-log line and ends the span. Idempotent: only the first call counts. */
  close(responseCode: number, responseFlags: string, grpcStatus?: string): void;
}

export interface RequestTelemetry {
  start(info: RequestInfo): RequestRecord;
}
