import { Counter, Registry, collectDefaultMetrics, Gauge } from 'prom-client';

/**
 * Istio's standard TCP metric names and labels, so existing dashboards and Kiali work.
 * Label values come from mesh metadata only (never from traffic): bounded cardinality.
 */
export const TCP_LABELS = [
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
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type TcpLabels = Record<(typeof TCP_LABELS)[number], string>;

export class ZtunnelMetrics {
  readonly registry = new Registry();
  readonly opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Total TCP connections opened', labelNames: TCP_LABELS, registers: [this.registry] });
  readonly closed = new Counter({ name: 'istio_tcp_connections_closed_total', help: 'Total TCP connections closed', labelNames: TCP_LABELS, registers: [this.registry] });
  readonly sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent toward the client (response direction)', labelNames: TCP_LABELS, registers: [this.registry] });
  readonly received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received from the client (request direction)', labelNames: TCP_LABELS, registers: [this.registry] });
  readonly pods = new Gauge({ name: 'ambit_ztunnel_enrolled_pods', help: 'Pods this ztunnel serves', registers: [this.registry] });
  readonly denied = new Counter({ name: 'ambit_ztunnel_connections_denied_total', help: 'Connections refused by policy', labelNames: ['reporter', 'reason'], registers: [this.registry] });
  readonly xdsNacks = new Counter({ name: 'ambit_ztunnel_xds_nacks_total', help: 'Configuration updates this ztunnel refused', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
