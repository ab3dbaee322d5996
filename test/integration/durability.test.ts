import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { AmbitClient } from '../../lib/api/client';
import { dialFor, loadClientConfig } from '../../lib/api/client-config';
import { ns, spawnControlPlane, tmpDir, waitFor } from '../helpers/controlplane';

function adminClient(dataDir: string, port: number): AmbitClient {
  const cfg = loadClientConfig(path.join(dataDir, 'admin.yaml'));
  return new AmbitClient(dialFor(`127.0.0.1:${port}`, cfg.certificateAuthority, cfg.serverName, { certPem: cfg.clientCertificate, keyPem: cfg.clientKey }));
}

test('durability: kill -9 during a burst of writes loses no acknowledged write and tears nothing', async () => {
  const dataDir = tmpDir('durable');
  const acked = new Map<string, string>();
  let root = '';
  let seq = 0;
  try {
    for (let round = 0; round < 3; round++) {
      const cp = await spawnControlPlane(dataDir);
      const client = adminClient(dataDir, cp.port);
      try {
        const cfgRoot = loadClientConfig(path.join(dataDir, 'admin.yaml')).certificateAuthority;
        if (round === 0) root = cfgRoot;
        assert.equal(cfgRoot, root, 'the CA root survives restarts');

        // Everything acknowledged before the crash is served after it, at the same version.
        const listed = new Map((await client.list('Namespace')).map((n) => [n.metadata.name, n.metadata.resourceVersion]));
        for (const [name, rv] of acked) assert.equal(listed.get(name), rv, `acknowledged write ${name}@${rv} survived`);

        // Four concurrent writers; each acknowledged write is recorded with its version.
        let stop = false;
        const writer = async () => {
          while (!stop) {
            const name = `burst-${round}-${seq++}`;
            try {
              const [res] = await client.apply([ns(name, { round: String(round) })]);
              acked.set(name, res.resourceVersion);
            } catch {
              return; // the server died mid-call: this write was never acknowledged
            }
          }
        };
        const writers = [writer(), writer(), writer(), writer()];
        const target = acked.size + 40 + Math.floor(Math.random() * 40);
        await waitFor('a burst of acknowledged writes', () => acked.size >= target, 30_000);
        cp.proc.kill('SIGKILL');
        await cp.exited;
        stop = true;
        await Promise.all(writers);
      } finally {
        client.close();
        if (cp.proc.exitCode === null && cp.proc.signalCode === null) cp.proc.kill('SIGKILL');
      }
      // Nothing torn: SQLite's own check of every page and index.
      const db = new Database(path.join(dataDir, 'store.db'));
      assert.equal((db.pragma('integrity_check') as Array<{ integrity_check: string }>)[0].integrity_check, 'ok');
      db.close();
    }
    const cp = await spawnControlPlane(dataDir);
    const client = adminClient(dataDir, cp.port);
    try {
      const listed = new Map((await client.list('Namespace')).map((n) => [n.metadata.name, n.metadata.resourceVersion]));
      for (const [name, rv] of acked) assert.equal(listed.get(name), rv, `acknowledged write ${name}@${rv} survived`);
      assert.ok(acked.size >= 120);
      // Versions stay monotonic after crashes: a new write gets a higher one than any before.
      const [res] = await client.apply([ns('after-crashes')]);
      assert.ok(Number(res.resourceVersion) > Math.max(...[...acked.values()].map(Number)));
    } finally {
      client.close();
      cp.proc.kill('SIGTERM');
      await cp.exited;
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
