import { Action, AuthorizationMsg, Scope, ServiceMsg, TunnelProtocol, WorkloadMsg } from '../api/workload-types';
import { bytesToIp } from '../util/ip';

export interface WorkloadView {
  /** Resource name, e.g. wl/ns/name. */
  key: string;
  msg: WorkloadMsg;
  ips: string[];
  /** spiffe://td/ns/NS/sa/SA */
  identity: string;
  hbone: boolean;
}

export interface ServiceView {
  key: string;
  /** "namespace/hostname", as workloads reference it. */
  ref: string;
  msg: ServiceMsg;
  vips: string[];
  /** Workloads selected by the service, with the target port for each service port. */
  endpoints: Array<{ workload: WorkloadView; ports: Map<number, number> }>;
}

/**
 * What the data path reads: built whole by the state's single writer, then swapped in,
 * never mutated. A connection sees one consistent snapshot from start to end.
 */
export class Snapshot {
  readonly workloadsByIp = new Map<string, WorkloadView>();
  readonly workloads = new Map<string, WorkloadView>();
  readonly servicesByVip = new Map<string, ServiceView>();
  readonly servicesByHost = new Map<string, ServiceView>();
  readonly services = new Map<string, ServiceView>();
  readonly authorizations = new Map<string, AuthorizationMsg>();
  private readonly globalPolicies: AuthorizationMsg[] = [];
  private readonly namespacePolicies = new Map<string, AuthorizationMsg[]>();

  constructor(workloads: Map<string, WorkloadMsg>, services: Map<string, ServiceMsg>, authorizations: Map<string, AuthorizationMsg>) {
    for (const [key, msg] of workloads) {
      const ips = msg.addresses.map(bytesToIp);
      const view: WorkloadView = {
        key,
        msg,
        ips,
        identity: `spiffe://${msg.trustDomain}/ns/${msg.namespace}/sa/${msg.serviceAccount}`,
        hbone: msg.tunnelProtocol === TunnelProtocol.HBONE,
      };
      this.workloads.set(key, view);
      for (const ip of ips) this.workloadsByIp.set(ip, view);
    }
    for (const [key, msg] of services) {
      const view: ServiceView = { key, ref: `${msg.namespace}/${msg.hostname}`, msg, vips: msg.vips.map(bytesToIp), endpoints: [] };
      this.services.set(key, view);
      this.servicesByHost.set(msg.hostname, view);
      for (const vip of view.vips) this.servicesByVip.set(vip, view);
    }
    const byRef = new Map<string, ServiceView>();
    for (const s of this.services.values()) byRef.set(s.ref, s);
    for (const w of this.workloads.values()) {
      for (const [ref, list] of Object.entries(w.msg.services ?? {})) {
        const s = byRef.get(ref);
        if (!s) continue;
        s.endpoints.push({ workload: w, ports: new Map(list.ports.map((p) => [p.servicePort, p.targetPort || p.servicePort])) });
      }
    }
    for (const a of authorizations.values()) {
      this.authorizations.set(`${a.namespace}/${a.name}`, a);
      if (a.scope === Scope.GLOBAL) this.globalPolicies.push(a);
      else if (a.scope === Scope.NAMESPACE) {
        let l = this.namespacePolicies.get(a.namespace);
        if (!l) this.namespacePolicies.set(a.namespace, (l = []));
        l.push(a);
      }
    }
  }

  /** Every L4 policy that applies to a destination workload: mesh-wide, its namespace's, its selector ones. */
  policiesFor(w: WorkloadView): AuthorizationMsg[] {
    const out = [...this.globalPolicies, ...(this.namespacePolicies.get(w.msg.namespace) ?? [])];
    for (const name of w.msg.authorizationPolicies ?? []) {
      const p = this.authorizations.get(name);
      // A policy the workload names but the state lacks yet: fail closed with a deny-all stand-in.
      out.push(p ?? { name, namespace: name.split('/')[0], scope: Scope.WORKLOAD_SELECTOR, action: Action.DENY, rules: [{ clauses: [] }], warnings: ['policy not received yet'] });
    }
    return out;
  }

  static empty(): Snapshot {
    return new Snapshot(new Map(), new Map(), new Map());
  }
}

/** Refuses a workload the data path could not use; the message names it. */
export function checkWorkload(name: string, w: WorkloadMsg): WorkloadMsg {
  if (!w.namespace || !w.serviceAccount || !w.trustDomain) throw new Error(`${name}: workload without namespace, service account or trust domain`);
  for (const a of w.addresses) if (a.length !== 4 && a.length !== 16) throw new Error(`${name}: address of ${a.length} bytes`);
  return w;
}

/** Refuses a service the data path could not use; the message names it. */
export function checkService(name: string, s: ServiceMsg): ServiceMsg {
  for (const v of s.vips) if (v.length !== 4 && v.length !== 16) throw new Error(`${name}: VIP of ${v.length} bytes`);
  for (const p of s.ports) if (!p.servicePort || p.servicePort > 65535 || p.targetPort > 65535) throw new Error(`${name}: bad port ${p.servicePort}->${p.targetPort}`);
  return s;
}
