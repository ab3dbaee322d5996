import { AuthorizationMsg, ServiceMsg, TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WORKLOAD, WorkloadMsg } from '../../lib/api/workload-types';
import type { DeltaUpdate } from '../../lib/xds/client';
import { checkService, checkWorkload, Snapshot } from '../../lib/mesh/snapshot';

/**
 * The ztunnel's configuration, written only by the discovery stream. Each update is
 * validated whole and either applied (a new snapshot is swapped in) or refused: the
 * thrown error becomes the NACK and the last good snapshot keeps serving.
 */
export class ProxyState {
  private readonly workloads = new Map<string, WorkloadMsg>();
  private readonly services = new Map<string, ServiceMsg>();
  private readonly authorizations = new Map<string, AuthorizationMsg>();
  private current = Snapshot.empty();
  private readonly listeners = new Set<(s: Snapshot) => void>();
  /** Whether the first response from the control plane has been applied. */
  synced = false;

  get snapshot(): Snapshot {
    return this.current;
  }

  apply(u: DeltaUpdate): void {
    const w = new Map(this.workloads);
    const s = new Map(this.services);
    const a = new Map(this.authorizations);
    for (const name of u.removed) {
      w.delete(name);
      s.delete(name);
      a.delete(name);
    }
    for (const [name, r] of u.changed) {
      if (r.type === TYPE_WORKLOAD) w.set(name, checkWorkload(name, r.value as WorkloadMsg));
      else if (r.type === TYPE_SERVICE) s.set(name, checkService(name, r.value as ServiceMsg));
      else if (r.type === TYPE_AUTHORIZATION) a.set(name, r.value as AuthorizationMsg);
      else throw new Error(`${name}: unknown resource type ${r.type}`);
    }
    // Two workloads claiming one address would make identity ambiguous: refuse the update.
    const owner = new Map<string, string>();
    for (const [name, msg] of w) {
      if (msg.network) continue;
      for (const addr of msg.addresses) {
        const k = Buffer.from(addr).toString('hex');
        const o = owner.get(k);
        if (o) throw new Error(`${name}: address already used by ${o}`);
        owner.set(k, name);
      }
    }
    const next = new Snapshot(w, s, a);
    replace(this.workloads, w);
    replace(this.services, s);
    replace(this.authorizations, a);
    this.current = next;
    this.synced = true;
    for (const l of this.listeners) l(next);
  }

  onChange(l: (s: Snapshot) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}

function replace<K, V>(target: Map<K, V>, src: Map<K, V>): void {
  target.clear();
  for (const [k, v] of src) target.set(k, v);
}
