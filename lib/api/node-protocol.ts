/**
 * `ambit cni-agent` -> ztunnel, on the same host. The agent listens on a unix stream socket
 * (default /var/run/ambit/ztunnel.sock); the ztunnel connects. Messages are JSON, one per
 * line. On every (re)connect the agent sends a `snapshot` of all enrolled pods, then `add`
 * and `del` as pods come and go. The ztunnel answers every message with an `ack` carrying
 * its id (and an error text when it could not take the pod: the agent logs and retries).
 */
export const DEFAULT_ZTUNNEL_SOCKET = '/var/run/ambit/ztunnel.sock';

export interface PodInfo {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  /** Path of the pod's network namespace, e.g. /var/run/netns/ambit-pod-web-1. */
  netns: string;
  ips: string[];
}

export type AgentMessage =
  | { type: 'snapshot'; id: number; pods: PodInfo[] }
  | { type: 'add'; id: number; pod: PodInfo }
  | { type: 'del'; id: number; uid: string };

export interface ZtunnelAck {
  type: 'ack';
  id: number;
  error?: string;
}

/** Marks on sockets the ztunnel opens: the in-pod rules never capture them again. */
export const ZTUNNEL_MARK = 0x539;
export const ZTUNNEL_MARK_MASK = 0xfff;

export const PORT_OUTBOUND = 15001;
export const PORT_INBOUND_PLAINTEXT = 15006;
export const PORT_HBONE = 15008;
export const PORT_DNS = 15053;
export const PORT_ADMIN = 15000;
export const PORT_METRICS = 15020;
