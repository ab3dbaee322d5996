import type net from 'node:net';
import type dgram from 'node:dgram';
import type { PodInfo } from '../../lib/api/node-protocol';
import type { PodNetwork } from './pod-network';

/** A pod this ztunnel serves: who it is, how to reach its netns, and what was opened for it. */
export interface LocalPod {
  info: PodInfo;
  /** spiffe://td/ns/NS/sa/SA: the identity the pod's traffic carries. */
  identity: string;
  net: PodNetwork;
  servers: net.Server[];
  udp: dgram.Socket[];
  /** Connections in flight for this pod, closed when it leaves. */
  connections: Set<{ close(): void }>;
}
