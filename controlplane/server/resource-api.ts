import { ApiError, FieldError, formatFieldErrors } from '../../lib/api/errors';
import { kindDef, resolveKind, validateResource } from '../../lib/api/registry';
import { DEFAULT_NAMESPACE, describeKey, keyOf, Resource, ResourceKey } from '../../lib/api/resource';
import { parseLabelSelector, selectorMatches } from '../../lib/api/selector';
import type { Principal } from '../../lib/identity/spiffe';
import type { Store, StoreEvent, WriteOp } from '../store/store';
import { StoreConflictError } from '../store/store';
import type { ClusterIpAllocator } from './allocator';

export interface ApplyOutcome {
  kind: string;
  namespace: string;
  name: string;
  action: 'created' | 'configured' | 'unchanged' | 'deleted' | 'not-found';
  resourceVersion: string;
}

/** An error in one document of a batch. */
export interface DocumentError extends FieldError {
  index: number;
  resource: string;
}

export class BatchError extends ApiError {
  constructor(code: ApiError['code'], readonly documents: DocumentError[]) {
    super(code, documents.map((d) => `document ${d.index}: ${d.resource}: ${d.path ? `${d.path}: ` : ''}${d.message}`).join('\n'), documents);
  }
}

/** Kinds a node may read: what its agent and ztunnel need to decide enrolment. */
const NODE_READABLE = new Set(['Namespace', 'Service', 'Workload', 'Node']);

/**
 * The resource API, independent of its transport: validation, authorization, namespace
 * and cluster IP rules, then one atomic store commit.
 */
export class ResourceApi {
  constructor(
    private readonly store: Store,
    private readonly allocator: ClusterIpAllocator,
    private readonly protectedNamespaces: string[] = [DEFAULT_NAMESPACE],
  ) {}

  async apply(who: Principal, docs: unknown[], dryRun = false): Promise<ApplyOutcome[]> {
    const errors: DocumentError[] = [];
    const valid: Array<{ index: number; r: Resource }> = [];
    docs.forEach((doc, index) => {
      const v = validateResource(doc);
      if (!v.ok) {
        errors.push(...v.errors.map((e) => ({ ...e, index, resource: subjectOf(doc) })));
        return;
      }
      valid.push({ index, r: v.resource });
    });
    if (errors.length > 0) throw new BatchError('Invalid', errors);

    // Authorization before anything else is revealed about the store.
    for (const { index, r } of valid) {
      const denied = this.denyWrite(who, r);
      if (denied) throw new BatchError('Forbidden', [{ index, resource: describeKey(keyOf(r)), path: '', message: denied }]);
    }

    const batchNamespaces = new Set(valid.filter((v) => v.r.kind === 'Namespace').map((v) => v.r.metadata.name));
    const usedIps = new Set<string>();
    const ipOwner = new Map<string, string>();
    for (const s of this.store.list('Service')) {
      for (const ip of serviceIps(s)) {
        usedIps.add(ip);
        ipOwner.set(ip, `${s.metadata.namespace}/${s.metadata.name}`);
      }
    }
    const ops: WriteOp[] = [];
    const outcomes: ApplyOutcome[] = [];
    const seen = new Set<string>();
    for (const { index, r } of valid) {
      const key = keyOf(r);
      const subject = describeKey(key);
      const fail = (path: string, message: string, code: ApiError['code'] = 'Invalid'): never => {
        throw new BatchError(code, [{ index, resource: subject, path, message }]);
      };
      const ks = `${key.kind}/${key.namespace}/${key.name}`;
      if (seen.has(ks)) fail('metadata.name', 'the same resource appears twice in one apply');
      seen.add(ks);
      if (key.namespace && !batchNamespaces.has(key.namespace) && !this.store.get({ kind: 'Namespace', namespace: '', name: key.namespace })) {
        fail('metadata.namespace', `namespace "${key.namespace}" not found; create it first (kind: Namespace)`, 'NotFound');
      }
      const existing = this.store.get(key);
      if (r.kind === 'Service') this.assignClusterIp(r, existing, usedIps, ipOwner, fail);
      const expect = r.metadata.resourceVersion;
      if (expect !== undefined) {
        const have = existing?.metadata.resourceVersion;
        if (have !== expect) {
          fail('metadata.resourceVersion', have ? `the resource was modified (now at ${have}, you sent ${expect}); get it again and reapply` : 'the resource does not exist, so it has no resourceVersion; remove the field to create it', 'Conflict');
        }
      }
      const next: Resource = { ...r, metadata: { ...r.metadata } };
      delete next.metadata.resourceVersion;
      delete next.metadata.uid;
      delete next.metadata.generation;
      delete next.metadata.creationTimestamp;
      if (existing && sameContent(existing, next)) {
        outcomes.push({ ...key, action: 'unchanged', resourceVersion: existing.metadata.resourceVersion ?? '' });
        continue;
      }
      ops.push({ op: 'put', resource: next, expectVersion: expect });
      outcomes.push({ ...key, action: existing ? 'configured' : 'created', resourceVersion: '' });
    }
    if (dryRun || ops.length === 0) return outcomes;
    const result = await this.commit(ops);
    const rvs = new Map(result.map((e) => [`${e.resource.kind}/${e.resource.metadata.namespace ?? ''}/${e.resource.metadata.name}`, e.resource.metadata.resourceVersion ?? '']));
    for (const o of outcomes) if (o.action !== 'unchanged') o.resourceVersion = rvs.get(`${o.kind}/${o.namespace}/${o.name}`) ?? '';
    return outcomes;
  }

  private assignClusterIp(
    r: Resource,
    existing: Resource | undefined,
    used: Set<string>,
    owner: Map<string, string>,
    fail: (path: string, message: string, code?: ApiError['code']) => never,
  ): void {
    const spec = r.spec as { clusterIP?: string; clusterIPs?: string[] };
    const mine = `${r.metadata.namespace}/${r.metadata.name}`;
    const had = existing ? (existing.spec as { clusterIP?: string }).clusterIP : undefined;
    const asked = spec.clusterIP === '' ? undefined : spec.clusterIP;
    if (had !== undefined && asked !== undefined && asked !== had) {
      fail('spec.clusterIP', `field is immutable (it is ${had}); delete and recreate the Service to change it`);
    }
    let ip = asked ?? had;
    if (ip === undefined) {
      ip = this.allocator.allocate(used);
      if (!ip) fail('spec.clusterIP', `the service range ${this.allocator.cidrText} is exhausted`, 'Unavailable');
    } else if (ip !== 'None') {
      if (!this.allocator.contains(ip)) fail('spec.clusterIP', `${ip} is outside the service range ${this.allocator.cidrText}`);
      const o = owner.get(ip);
      if (o && o !== mine) fail('spec.clusterIP', `${ip} is already allocated to Service ${o}`, 'AlreadyExists');
    }
    spec.clusterIP = ip;
    spec.clusterIPs = [ip!];
    if (ip !== 'None') {
      used.add(ip!);
      owner.set(ip!, mine);
    }
  }

  private denyWrite(who: Principal, r: Resource): string | null {
    if (who.role === 'admin') return null;
    if (who.role === 'node') {
      if (r.kind === 'Workload') {
        const node = (r.spec as { node?: string }).node;
        if (node !== who.node) return `node ${who.node} may register workloads only on itself, not on ${node}`;
        const existing = this.store.get(keyOf(r));
        const was = existing && (existing.spec as { node?: string }).node;
        if (was && was !== who.node) return `the workload is registered on node ${was}; node ${who.node} may not take it over`;
        return null;
      }
      if (r.kind === 'Node' && r.metadata.name === who.node) return null;
      return `node ${who.node} may write only its own Workloads and Node, not ${r.kind}`;
    }
    return `${who.id} may not write resources`;
  }

  private denyRead(who: Principal, kind: string): string | null {
    if (who.role === 'admin') return null;
    if (who.role === 'node' && NODE_READABLE.has(kind)) return null;
    return `${who.id} may not read ${kind}`;
  }

  get(who: Principal, kindName: string, namespace: string, name: string): Resource {
    const def = this.kind(kindName);
    const denied = this.denyRead(who, def.kind);
    if (denied) throw new ApiError('Forbidden', denied);
    const key: ResourceKey = { kind: def.kind, namespace: def.namespaced ? namespace || DEFAULT_NAMESPACE : '', name };
    const r = this.store.get(key);
    if (!r) throw new ApiError('NotFound', `${describeKey(key)} not found`);
    return r;
  }

  list(who: Principal, kindName: string, namespace: string, labelSelector = ''): { items: Resource[]; revision: number } {
    const def = this.kind(kindName);
    const denied = this.denyRead(who, def.kind);
    if (denied) throw new ApiError('Forbidden', denied);
    let reqs;
    try {
      reqs = parseLabelSelector(labelSelector);
    } catch (err) {
      throw new ApiError('Invalid', (err as Error).message);
    }
    const items = this.store.list(def.kind, def.namespaced && namespace ? namespace : undefined).filter((r) => selectorMatches(reqs, r.metadata.labels));
    return { items, revision: this.store.revision };
  }

  async delete(who: Principal, refs: Array<{ kind: string; namespace: string; name: string; resourceVersion?: string }>, ignoreNotFound = false): Promise<ApplyOutcome[]> {
    const ops: WriteOp[] = [];
    const outcomes: ApplyOutcome[] = [];
    refs.forEach((ref, index) => {
      const def = this.kind(ref.kind);
      const key: ResourceKey = { kind: def.kind, namespace: def.namespaced ? ref.namespace || DEFAULT_NAMESPACE : '', name: ref.name };
      const existing = this.store.get(key);
      const subject = describeKey(key);
      if (who.role !== 'admin') {
        const ok = who.role === 'node' && def.kind === 'Workload' && existing && (existing.spec as { node?: string }).node === who.node;
        if (!ok && !(who.role === 'node' && def.kind === 'Workload' && !existing)) {
          throw new BatchError('Forbidden', [{ index, resource: subject, path: '', message: who.role === 'node' ? `node ${who.node} may delete only workloads on itself` : `${who.id} may not delete resources` }]);
        }
      }
      if (!existing) {
        if (!ignoreNotFound) throw new BatchError('NotFound', [{ index, resource: subject, path: '', message: 'not found' }]);
        outcomes.push({ ...key, action: 'not-found', resourceVersion: '' });
        return;
      }
      if (def.kind === 'Namespace' && this.protectedNamespaces.includes(key.name)) {
        throw new BatchError('Forbidden', [{ index, resource: subject, path: '', message: `namespace ${key.name} is protected and cannot be deleted` }]);
      }
      ops.push({ op: 'delete', key, expectVersion: ref.resourceVersion || undefined });
      if (def.kind === 'Namespace') {
        // Like Kubernetes: deleting a namespace deletes what is in it, in the same commit.
        for (const k of namespacedKinds()) for (const r of this.store.list(k, key.name)) ops.push({ op: 'delete', key: keyOf(r) });
      }
      outcomes.push({ ...key, action: 'deleted', resourceVersion: existing.metadata.resourceVersion ?? '' });
    });
    if (ops.length > 0) await this.commit(ops);
    return outcomes;
  }

  /** Current matching resources as ADDED, then every change, until the returned function is called. */
  watch(who: Principal, kindName: string, namespace: string, labelSelector: string, send: (type: StoreEvent['type'], r: Resource, revision: number) => void): () => void {
    const { items, revision } = this.list(who, kindName, namespace, labelSelector);
    const def = this.kind(kindName);
    const reqs = parseLabelSelector(labelSelector);
    for (const r of items) send('ADDED', r, revision);
    return this.store.onCommit((c) => {
      for (const e of c.events) {
        if (e.resource.kind !== def.kind) continue;
        if (def.namespaced && namespace && e.resource.metadata.namespace !== namespace) continue;
        if (!selectorMatches(reqs, e.resource.metadata.labels)) continue;
        send(e.type, e.resource, e.revision);
      }
    });
  }

  private kind(name: string) {
    const def = resolveKind(name) ?? kindDef(name);
    if (!def) throw new ApiError('NotFound', `the server doesn't have a resource type "${name}"`);
    return def;
  }

  private async commit(ops: WriteOp[]): Promise<StoreEvent[]> {
    try {
      return (await this.store.commit(ops)).events;
    } catch (err) {
      if (err instanceof StoreConflictError) throw new ApiError('Conflict', err.message);
      throw err;
    }
  }
}

function namespacedKinds(): string[] {
  return ['Service', 'Workload', 'WorkloadEntry', 'AuthorizationPolicy', 'PeerAuthentication', 'RequestAuthentication', 'Gateway', 'HTTPRoute', 'GRPCRoute', 'DestinationRule', 'VirtualService'];
}

function serviceIps(s: Resource): string[] {
  const ip = (s.spec as { clusterIP?: string }).clusterIP;
  return ip && ip !== 'None' ? [ip] : [];
}

function sameContent(a: Resource, b: Resource): boolean {
  return (
    JSON.stringify(a.spec ?? null) === JSON.stringify(b.spec ?? null) &&
    JSON.stringify(a.metadata.labels ?? {}) === JSON.stringify(b.metadata.labels ?? {}) &&
    JSON.stringify(a.metadata.annotations ?? {}) === JSON.stringify(b.metadata.annotations ?? {})
  );
}

function subjectOf(doc: unknown): string {
  const d = (doc ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const kind = typeof d.kind === 'string' ? d.kind : '(no kind)';
  const name = typeof d.metadata?.name === 'string' ? d.metadata.name : '(no name)';
  const ns = typeof d.metadata?.namespace === 'string' ? `${d.metadata.namespace}/` : '';
  return `${kind} ${ns}${name}`;
}

export { formatFieldErrors };
