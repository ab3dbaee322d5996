import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { describeKey, keyOf, keyString, Resource, ResourceKey } from '../../lib/api/resource';
import { CommitResult, Store, StoreConflictError, StoreEvent, StoredResource, WriteOp } from './store';

/**
 * Embedded store on SQLite in WAL mode with synchronous=FULL: a transaction is fsynced
 * before commit() returns, a kill -9 at any point leaves either the whole transaction or
 * none of it, and SQLite's journal guarantees no torn file. The full state is also held
 * in memory (the control plane serves every read and every translation from it).
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly byKind = new Map<string, Map<string, StoredResource>>();
  private rev = 0;
  private readonly listeners = new Set<(r: CommitResult) => void>();
  private readonly stmts: {
    put: Database.Statement;
    del: Database.Statement;
    setRev: Database.Statement;
  };

  constructor(dataDir: string) {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.db = new Database(path.join(dataDir, 'store.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS resources (
        kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
        revision INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name)
      ) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    `);
    this.stmts = {
      put: this.db.prepare('INSERT OR REPLACE INTO resources (kind, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)'),
      del: this.db.prepare('DELETE FROM resources WHERE kind = ? AND namespace = ? AND name = ?'),
      setRev: this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('revision', ?)"),
    };
    const row = this.db.prepare("SELECT value FROM meta WHERE key = 'revision'").get() as { value: string } | undefined;
    this.rev = row ? Number(row.value) : 0;
    for (const r of this.db.prepare('SELECT body FROM resources').iterate() as Iterable<{ body: string }>) {
      const res = JSON.parse(r.body) as StoredResource;
      this.mapFor(res.kind).set(keyString(keyOf(res)), res);
    }
  }

  get revision(): number {
    return this.rev;
  }

  private mapFor(kind: string): Map<string, StoredResource> {
    let m = this.byKind.get(kind);
    if (!m) {
      m = new Map();
      this.byKind.set(kind, m);
    }
    return m;
  }

  get(key: ResourceKey): StoredResource | undefined {
    return this.byKind.get(key.kind)?.get(keyString(key));
  }

  list(kind: string, namespace?: string): StoredResource[] {
    const m = this.byKind.get(kind);
    if (!m) return [];
    const out: StoredResource[] = [];
    for (const r of m.values()) if (namespace === undefined || r.metadata.namespace === namespace) out.push(r);
    // Code-unit order: names are ASCII, and localeCompare costs ~10x on the translation path.
    const key = (r: StoredResource) => `${r.metadata.namespace ?? ''}/${r.metadata.name}`;
    out.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      return ka < kb ? -1 : ka > kb ? 1 : 0;
    });
    return out;
  }

  async commit(ops: WriteOp[]): Promise<CommitResult> {
    return this.commitSync(ops);
  }

  private commitSync(ops: WriteOp[]): CommitResult {
    if (ops.length === 0) return { revision: this.rev, events: [] };
    // Plan against the in-memory view (with the batch's own earlier writes applied), so
    // that a refused batch changes nothing on disk or in memory.
    const staged = new Map<string, StoredResource | null>();
    const current = (k: ResourceKey): StoredResource | undefined => {
      const s = staged.get(keyString(k));
      return s === null ? undefined : s ?? this.get(k);
    };
    let rev = this.rev;
    const events: StoreEvent[] = [];
    for (const op of ops) {
      const key = op.op === 'put' ? keyOf(op.resource) : op.key;
      const existing = current(key);
      if (op.expectVersion !== undefined) {
        const have = existing?.metadata.resourceVersion ?? '0';
        if (have !== op.expectVersion) {
          throw new StoreConflictError(
            key,
            existing
              ? `${describeKey(key)} was modified: resourceVersion is ${have}, not ${op.expectVersion}; get it again and reapply`
              : `${describeKey(key)} does not exist (expected resourceVersion ${op.expectVersion})`,
          );
        }
      }
      if (op.op === 'put') {
        rev++;
        const meta = { ...op.resource.metadata, resourceVersion: String(rev) };
        meta.creationTimestamp = existing?.metadata.creationTimestamp ?? new Date().toISOString();
        meta.uid = existing?.metadata.uid ?? meta.uid ?? cryptoUid();
        meta.generation = existing ? (existing.metadata.generation ?? 1) + (sameSpec(existing, op.resource) ? 0 : 1) : 1;
        const stored: StoredResource = { ...op.resource, metadata: meta };
        staged.set(keyString(key), stored);
        events.push({ type: existing ? 'MODIFIED' : 'ADDED', resource: stored, revision: rev });
      } else if (existing) {
        rev++;
        staged.set(keyString(key), null);
        events.push({ type: 'DELETED', resource: existing, revision: rev });
      }
    }
    if (events.length === 0) return { revision: this.rev, events };
    const tx = this.db.transaction(() => {
      for (const [k, v] of staged) {
        const [kind, namespace, ...rest] = k.split('/');
        const name = rest.join('/');
        if (v === null) this.stmts.del.run(kind, namespace, name);
        else this.stmts.put.run(kind, namespace, name, Number(v.metadata.resourceVersion), JSON.stringify(v));
      }
      this.stmts.setRev.run(String(rev));
    });
    tx();
    this.rev = rev;
    for (const [k, v] of staged) {
      const kind = k.slice(0, k.indexOf('/'));
      if (v === null) this.mapFor(kind).delete(k);
      else this.mapFor(kind).set(k, v);
    }
    const result = { revision: rev, events };
    for (const l of this.listeners) l(result);
    return result;
  }

  onCommit(listener: (result: CommitResult) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.listeners.clear();
    if (this.db.open) this.db.close();
  }
}

function sameSpec(a: Resource, b: Resource): boolean {
  return JSON.stringify(a.spec ?? null) === JSON.stringify(b.spec ?? null);
}

function cryptoUid(): string {
  return globalThis.crypto.randomUUID();
}
