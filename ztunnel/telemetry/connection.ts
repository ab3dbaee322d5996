import type { Logger } from '../../lib/telemetry/log';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import type { TcpLabels, ZtunnelMetrics } from './metrics';

export type Reporter = 'source' | 'destination';

export interface ConnectionInfo {
  reporter: Reporter;
  source?: WorkloadView;
  /** The proven peer identity (inbound) or our own (outbound); null when plaintext. */
  sourcePrincipal: string | null;
  sourceAddress: string;
  destination?: WorkloadView;
  destinationPrincipal: string | null;
  destinationAddress: string;
  /** "namespace/hostname" of the service called, when the client called one. */
  destinationService?: { name: string; namespace: string; hostname: string };
  mtls: boolean;
}

/**
 * One object per connection: counts it as opened when the proxy commits to it, and
 * records bytes, flags, metrics and the access log line once, when it closes.
 */
export class ConnectionRecord {
  private readonly started = Date.now();
  private labels: TcpLabels | undefined;
  private done = false;
  /** Bytes from client to server, and server to client. */
  received = 0;
  sent = 0;

  constructor(private readonly info: ConnectionInfo, private readonly metrics: ZtunnelMetrics, private readonly log: Logger) {}

  private labelSet(flags: string): TcpLabels {
    const i = this.info;
    const s = i.source?.msg;
    const d = i.destination?.msg;
    const principal = (p: string | null) => p ?? 'unknown';
    return {
      reporter: i.reporter,
      source_workload: s?.name ?? 'unknown',
      source_workload_namespace: s?.namespace ?? 'unknown',
      source_principal: principal(i.sourcePrincipal),
      source_app: s?.canonicalName ?? 'unknown',
      source_version: s?.canonicalRevision ?? 'unknown',
      source_canonical_service: s?.canonicalName ?? 'unknown',
      source_canonical_revision: s?.canonicalRevision ?? 'unknown',
      destination_workload: d?.name ?? 'unknown',
      destination_workload_namespace: d?.namespace ?? 'unknown',
      destination_principal: principal(i.destinationPrincipal),
      destination_app: d?.canonicalName ?? 'unknown',
      destination_version: d?.canonicalRevision ?? 'unknown',
      destination_service: i.destinationService?.hostname ?? 'unknown',
      destination_service_name: i.destinationService?.name ?? 'unknown',
      destination_service_namespace: i.destinationService?.namespace ?? 'unknown',
      destination_canonical_service: d?.canonicalName ?? 'unknown',
      destination_canonical_revision: d?.canonicalRevision ?? 'unknown',
      request_protocol: 'tcp',
      response_flags: flags,
      connection_security_policy: i.mtls ? 'mutual_tls' : 'none',
    };
  }

  /** The connection is established (or being attempted) on behalf of the client. */
  open(): void {
    this.labels = this.labelSet('-');
    this.metrics.opened.inc(this.labels);
  }

  /** Records the end of the connection; `flags` in Envoy's vocabulary (UF upstream failure, DENY...), '-' for none. */
  close(flags = '-', error?: string): void {
    if (this.done) return;
    this.done = true;
    const labels = this.labels ? { ...this.labels, response_flags: flags } : this.labelSet(flags);
    if (!this.labels) this.metrics.opened.inc(labels);
    this.metrics.closed.inc(labels);
    if (this.received) this.metrics.received.inc(labels, this.received);
    if (this.sent) this.metrics.sent.inc(labels, this.sent);
    const i = this.info;
    this.log.info(
      {
        type: 'access',
        reporter: i.reporter,
        src: { addr: i.sourceAddress, workload: i.source?.msg.name, namespace: i.source?.msg.namespace, identity: i.sourcePrincipal ?? undefined },
        dst: { addr: i.destinationAddress, workload: i.destination?.msg.name, namespace: i.destination?.msg.namespace, identity: i.destinationPrincipal ?? undefined, service: i.destinationService?.hostname },
        mtls: i.mtls,
        bytes_sent: this.sent,
        bytes_recv: this.received,
        duration_ms: Date.now() - this.started,
        flags,
        error,
      },
      'connection complete',
    );
  }
}
