/**
 * Istio's standard metric label names, shared by the ztunnel and the waypoint so that the
 * series both report line up and existing Grafana dashboards and Kiali work unchanged.
 * Label values come from mesh metadata only, never from traffic: bounded cardinality.
 */
export const PEER_LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_canonical_service',
  'destination_canonical_revision',
] as const;

/** istio_tcp_* series. */
export const TCP_LABELS = [...PEER_LABELS, 'request_protocol', 'response_flags', 'connection_security_policy'] as const;
export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

/** istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes. */
export const REQUEST_LABELS = [...PEER_LABELS, 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'] as const;
export type RequestLabels = Record<(typeof REQUEST_LABELS)[number], string>;
