import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { SqliteStore } from '../../controlplane/store/store-sqlite';
import { StoreConflictError } from '../../controlplane/store/store';
import type { Resource } from '../../lib/api/resource';
import { tmpDir } from '../helpers/controlplane';

const cm = (name: string, v: string): Resource => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { v } } });

test('store: revisions increase, survive a reopen, and optimistic concurrency refuses stale writes', async () => {
  const dir = tmpDir('store');
  try {
    const s = new SqliteStore(dir);
    const r1 = await s.commit([{ op: 'put', resource: cm('a', '1') }]);
    const r2 = await s.commit([{ op: 'put', resource: cm('b', '1') }, { op: 'put', resource: cm('a', '2') }]);
    assert.equal(r1.revision, 1);
    assert.equal(r2.revision, 3);
    assert.deepEqual(r2.events.map((e) => e.type), ['ADDED', 'MODIFIED']);
    const a = s.get({ kind: 'Namespace', namespace: '', name: 'a' })!;
    assert.equal(a.metadata.resourceVersion, '3');
    assert.equal(a.metadata.generation, 1, 'labels only: spec unchanged, generation unchanged');

    await assert.rejects(s.commit([{ op: 'put', resource: cm('a', '3'), expectVersion: '1' }]), StoreConflictError);
    await assert.rejects(s.commit([{ op: 'put', resource: cm('new', '1'), expectVersion: '5' }]), /does not exist/);
    // A refused batch leaves nothing behind, not even its valid first half.
    await assert.rejects(s.commit([{ op: 'put', resource: cm('c', '1') }, { op: 'delete', key: { kind: 'Namespace', namespace: '', name: 'a' }, expectVersion: '2' }]), StoreConflictError);
    assert.equal(s.get({ kind: 'Namespace', namespace: '', name: 'c' }), undefined);
    assert.equal(s.revision, 3);
    await s.commit([{ op: 'put', resource: cm('a', '4'), expectVersion: '3' }]);
    s.close();

    const reopened = new SqliteStore(dir);
    assert.equal(reopened.revision, 4);
    assert.deepEqual(reopened.list('Namespace').map((n) => `${n.metadata.name}@${n.metadata.resourceVersion}:${n.metadata.labels?.v}`), ['a@4:4', 'b@2:1']);
    const after = await reopened.commit([{ op: 'delete', key: { kind: 'Namespace', namespace: '', name: 'b' } }]);
    assert.equal(after.revision, 5);
    assert.equal(after.events[0].type, 'DELETED');
    reopened.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('data dir lock: a live control plane keeps its data dir; a stale lock is taken over', async () => {
  const { lockDataDir } = await import('../../controlplane/store/data-dir-lock');
  const dir = tmpDir('lock');
  try {
    fs.writeFileSync(`${dir}/controlplane.lock`, String(process.ppid));
    assert.throws(() => lockDataDir(dir), new RegExp(`another control plane \\(pid ${process.ppid}\\) is using`));
    fs.writeFileSync(`${dir}/controlplane.lock`, '999999999');
    const unlock = lockDataDir(dir);
    assert.equal(fs.readFileSync(`${dir}/controlplane.lock`, 'utf8'), String(process.pid));
    unlock();
    assert.equal(fs.existsSync(`${dir}/controlplane.lock`), false);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
