import type { Duplex } from 'node:stream';
import type { WorkloadView } from '../../lib/mesh/snapshot';

export interface UpstreamTarget {
  workload: WorkloadView;
  address: string;
  /** The endpoint's target port (the application's port). */
  port: number;
}

/** DestinationRule connectionPool.tcp.tcpKeepalive, in whole seconds; an absent field keeps the kernel's default. */
export interface TcpKeepalive {
  idleSeconds?: number;
  intervalSeconds?: number;
  probes?: number;
}

export interface ConnectOptions {
  timeoutMs: number;
  traceparent?: string;
  /** Applied to the TCP connection this connect opens (an HBONE connection already open to that node keeps its own). */
  keepalive?: TcpKeepalive;
}

export interface UpstreamConnector {
  /**
   * Opens a byte stream to the endpoint's application port through the mesh (HBONE in production,
   * plain TCP in tests). Rejects with an Error whose .code is 'ConnectFailed' | 'Denied' | 'Timeout'.
   */
  connect(target: UpstreamTarget, opts: ConnectOptions): Promise<Duplex>;
}
