import { Counter, Registry, collectDefaultMetrics, Gauge } from 'prom-client';

import { TCP_LABELS } from '../../lib/telemetry/istio-labels';

export { TCP_LABELS };
export type { TcpLabels } from '../../lib/telemetry/istio-labels';

/** Istio's standard TCP metrics (names and labels in lib/telemetry/istio-labels.ts). */
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
