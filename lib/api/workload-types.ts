// TypeScript view of lib/api/proto/workload.proto (protobufjs camelCase field names).
export enum TunnelProtocol { NONE = 0, HBONE = 1 }
export enum MtlsMode { PERMISSIVE = 0, STRICT = 1, DISABLE = 2 }
export enum Scope { GLOBAL = 0, NAMESPACE = 1, WORKLOAD_SELECTOR = 2 }
export enum Action { ALLOW = 0, DENY = 1, AUDIT = 2 }

export interface GatewayAddress { namespace: string; name: string; hostname: string; addresses: Uint8Array[]; hbonePort: number }
export interface Port {
  servicePort: number;
  targetPort: number;
  /** 'http' (HTTP/1.1), 'http2' (HTTP/2, gRPC, h2c), 'tcp' (opaque: no HTTP processing) or '' / absent (unknown: detect, follow the caller), from the port's appProtocol or name. */
  appProtocol?: string;
}
export interface WorkloadMsg {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
  node: string;
  addresses: Uint8Array[];
  trustDomain: string;
  tunnelProtocol: TunnelProtocol;
  canonicalName: string;
  canonicalRevision: string;
  waypoint?: GatewayAddress;
  services: Record<string, { ports: Port[] }>;
  authorizationPolicies: string[];
  mtlsMode: MtlsMode;
  portMtls: Record<number, MtlsMode>;
  network: string;
  /** The workload's labels (DestinationRule subsets select on them). */
  labels: Record<string, string>;
}
export interface ServiceMsg {
  name: string;
  namespace: string;
  hostname: string;
  vips: Uint8Array[];
  ports: Port[];
  waypoint?: GatewayAddress;
  headless: boolean;
}
export type StringMatch = { exact: string } | { prefix: string } | { suffix: string } | { presence: boolean };
export interface Cidr { address: Uint8Array; length: number }
export interface Match {
  principals: StringMatch[];
  notPrincipals: StringMatch[];
  namespaces: StringMatch[];
  notNamespaces: StringMatch[];
  sourceIps: Cidr[];
  notSourceIps: Cidr[];
  destinationPorts: number[];
  notDestinationPorts: number[];
  destinationIps: Cidr[];
  notDestinationIps: Cidr[];
}
export interface Clause { matches: Match[] }
export interface Rule { clauses: Clause[] }
export interface AuthorizationMsg {
  name: string;
  namespace: string;
  scope: Scope;
  action: Action;
  rules: Rule[];
  warnings: string[];
}

/** Type names carried in DiscoveryResource.type. */
export const TYPE_WORKLOAD = 'ambit.workload.v1.Workload';
export const TYPE_SERVICE = 'ambit.workload.v1.Service';
export const TYPE_AUTHORIZATION = 'ambit.workload.v1.Authorization';
/** L7 configuration of one service behind a waypoint, JSON-encoded (see controlplane/translate/waypoint.ts). */
export const TYPE_WAYPOINT_SERVICE = 'ambit.waypoint.v1.ServiceConfig';
