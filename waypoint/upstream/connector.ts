import type { Duplex } from 'node:stream';
import type { WorkloadView } from '../../lib/mesh/snapshot';

export interface UpstreamTarget {
  workload: WorkloadView;
  address: string;
  /** The endpoint's target port (the application's port). */
  port: number;
}

export interface UpstreamConnector {
  /**
   * Opens a byte stream to the endpoint's application port through the mesh (HBONE in production,
   * plain TCP in tests). Rejects with an Error whose .code is 'ConnectFailed' | 'Denied' | 'Timeout'.
   */
  connect(target: UpstreamTarget, opts: { timeoutMs: number; traceparent?: string }): Promise<Duplex>;
}
