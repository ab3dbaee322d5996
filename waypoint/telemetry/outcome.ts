import type { WorkloadView } from '../../lib/mesh/snapshot';

/** What a finished request adds to its RequestInfo; read by the access log and the span. */
export interface RequestOutcome {
  /** Wall-clock start, epoch milliseconds. */
  readonly startTime: number;
  readonly durationMs: number;
  readonly responseCode: number;
  /** Envoy vocabulary; '-' for none. */
  readonly responseFlags: string;
  readonly grpcStatus: string | undefined;
  readonly requestBytes: number;
  readonly responseBytes: number;
  readonly route: string | undefined;
  readonly upstreamAddress: string | undefined;
  readonly destination: WorkloadView | undefined;
  readonly destinationPrincipal: string | null;
  readonly traceId: string;
}
