import type { Store } from '../store/store';

/** Which (node, namespace, service account) triples have a workload: the CA's check, without scanning every workload per CSR. */
export class WorkloadIndex {
  private readonly counts = new Map<string, number>();
  private readonly byResource = new Map<string, string>();

  constructor(store: Store) {
    for (const w of store.list('Workload')) this.add(`${w.metadata.namespace}/${w.metadata.name}`, tripleOf(w));
    store.onCommit((c) => {
      for (const e of c.events) {
        if (e.resource.kind !== 'Workload') continue;
        const id = `${e.resource.metadata.namespace}/${e.resource.metadata.name}`;
        this.remove(id);
        if (e.type !== 'DELETED') this.add(id, tripleOf(e.resource));
      }
    });
  }

  has(node: string, namespace: string, serviceAccount: string): boolean {
    return (this.counts.get(`${node}\u0000${namespace}\u0000${serviceAccount}`) ?? 0) > 0;
  }

  private add(id: string, key: string): void {
    this.byResource.set(id, key);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  private remove(id: string): void {
    const key = this.byResource.get(id);
    if (key === undefined) return;
    this.byResource.delete(id);
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}

function tripleOf(w: { metadata: { namespace?: string }; spec?: unknown }): string {
  const s = (w.spec ?? {}) as { node?: string; serviceAccount?: string };
  return `${s.node ?? ''}\u0000${w.metadata.namespace ?? ''}\u0000${s.serviceAccount ?? 'default'}`;
}
