import type { Resource, ResourceKey } from '../../lib/api/resource';

/** A stored resource always carries the revision of its last write as metadata.resourceVersion. */
export type StoredResource = Resource;

export type WriteOp =
  | { op: 'put'; resource: Resource; /** optimistic concurrency: fail unless the stored version is this one ('0' = must not exist) */ expectVersion?: string }
  | { op: 'delete'; key: ResourceKey; expectVersion?: string };

export type StoreEvent =
  | { type: 'ADDED' | 'MODIFIED'; resource: StoredResource; revision: number }
  | { type: 'DELETED'; resource: StoredResource; revision: number };

export interface CommitResult {
  revision: number;
  events: StoreEvent[];
}

export class StoreConflictError extends Error {
  readonly code = 'Conflict';
  constructor(readonly key: ResourceKey, message: string) {
    super(message);
  }
}

/**
 * The control plane's state. One writer (the control plane process), durable on return:
 * `commit` resolves only once the batch is on disk, and applies all of it or none.
 * Reads come from memory. Implementations: embedded SQLite (default); a distributed
 * backend later implements the same interface.
 */
export interface Store {
  readonly revision: number;
  get(key: ResourceKey): StoredResource | undefined;
  /** All resources of a kind, optionally in one namespace, sorted by namespace then name. */
  list(kind: string, namespace?: string): StoredResource[];
  commit(ops: WriteOp[]): Promise<CommitResult>;
  /** Called after every commit, in commit order. */
  onCommit(listener: (result: CommitResult) => void): () => void;
  close(): void;
}
