import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ControlPlaneMetrics {
  readonly registry = new Registry();
  readonly subscribers = new Gauge({ name: 'ambit_xds_connected_subscribers', help: 'Discovery streams currently open, by subscriber type', labelNames: ['type'], registers: [this.registry] });
  readonly pushes = new Counter({ name: 'ambit_xds_pushes_total', help: 'Discovery responses sent, by subscriber type', labelNames: ['type'], registers: [this.registry] });
  readonly pushedResources = new Counter({ name: 'ambit_xds_pushed_resources_total', help: 'Resources sent (changed or removed) in discovery responses', labelNames: ['type'], registers: [this.registry] });
  readonly pushLatency = new Histogram({
    name: 'ambit_xds_push_latency_seconds',
    help: 'Time from the store change that caused a push to the subscriber ACKing it',
    labelNames: ['type'],
    buckets: [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10],
    registers: [this.registry],
  });
  readonly nacks = new Counter({ name: 'ambit_xds_nacks_total', help: 'Discovery responses rejected by subscribers', labelNames: ['type'], registers: [this.registry] });
  readonly translateDuration = new Histogram({ name: 'ambit_translate_duration_seconds', help: 'Time to translate the model into data-plane resources', buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2], registers: [this.registry] });
  readonly csrSigned = new Counter({ name: 'ambit_ca_csr_signed_total', help: 'Certificates signed', labelNames: ['kind'], registers: [this.registry] });
  readonly csrRefused = new Counter({ name: 'ambit_ca_csr_refused_total', help: 'Certificate requests refused', labelNames: ['reason'], registers: [this.registry] });
  readonly apiRequests = new Counter({ name: 'ambit_api_requests_total', help: 'Resource API calls', labelNames: ['method', 'code'], registers: [this.registry] });
  readonly authFailures = new Counter({ name: 'ambit_api_auth_failures_total', help: 'Calls refused for want of a valid credential', labelNames: ['method'], registers: [this.registry] });
  readonly storeRevision = new Gauge({ name: 'ambit_store_revision', help: 'Latest committed store revision', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
