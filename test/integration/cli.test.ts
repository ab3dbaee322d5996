import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { AMBIT_BIN, REPO, startControlPlane, tmpDir } from '../helpers/controlplane';

/** Runs the CLI as a user would; asynchronous, since the control plane serves from this process. */
function ambit(env: Record<string, string>, args: string[], input?: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [AMBIT_BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(input ?? '');
  });
}

test('CLI: apply, get, delete against a running control plane; errors name file, document, resource and field', async () => {
  const cp = await startControlPlane();
  const dir = tmpDir('cli');
  const env = { AMBIT_CONFIG: cp.adminConfig };
  try {
    // The sample manifests apply cleanly, and a second apply changes nothing.
    let r = await ambit(env, ['apply', '-f', path.join(REPO, 'deploy', 'examples')]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /namespace\/demo created/);
    assert.match(r.out, /httproute\/web-canary \(demo\) created/);
    r = await ambit(env, ['apply', '-f', path.join(REPO, 'deploy', 'examples')]);
    assert.doesNotMatch(r.out, /created|configured/);

    // A directory where the second file's second document is bad: nothing is applied.
    fs.writeFileSync(path.join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Namespace\nmetadata: {name: cli-test}\n');
    fs.writeFileSync(path.join(dir, 'b.yaml'), [
      'apiVersion: v1\nkind: Service\nmetadata: {name: good, namespace: cli-test}\nspec: {ports: [{port: 80}]}',
      'apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: cli-test}\nspec: {ports: [{port: 70000}], sessionAffinity: ClientIP}',
    ].join('\n---\n'));
    r = await ambit(env, ['apply', '-f', dir]);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /b\.yaml: document 1: Service cli-test\/bad: spec\.ports\[0\]\.port: must be between 1 and 65535/);
    assert.match(r.err, /b\.yaml: document 1: Service cli-test\/bad: spec\.sessionAffinity: unsupported field/);
    r = await ambit(env, ['get', 'ns', 'cli-test']);
    assert.notEqual(r.code, 0, 'nothing from the refused batch was stored');
    assert.match(r.err, /Namespace cli-test not found/);

    // Server-side refusals (a missing namespace) map back to the file and document too.
    r = await ambit(env, ['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: nowhere}\nspec: {ports: [{port: 80}]}\n');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /<stdin>: document 0: Service nowhere\/s: metadata\.namespace: namespace "nowhere" not found/);

    // Broken YAML names the line.
    r = await ambit(env, ['apply', '-f', '-'], 'kind: Namespace\nmetadata: {name: x\n');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /<stdin>: document 0 \(line \d+\): invalid YAML/);

    // get in every format.
    r = await ambit(env, ['get', 'svc', '-n', 'demo']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^NAME\s+CLUSTER-IP\s+PORTS/);
    assert.match(r.out, /\nweb\s+10\.96\.\d+\.\d+\s+80\/TCP/);
    r = await ambit(env, ['get', 'services', 'web', '-n', 'demo', '-o', 'json']);
    const web = JSON.parse(r.out) as { spec: { clusterIP: string }; metadata: { resourceVersion: string } };
    assert.match(web.spec.clusterIP, /^10\.96\./);
    r = await ambit(env, ['get', 'httproutes', '-A', '-o', 'yaml']);
    const list = YAML.parse(r.out) as { kind: string; items: Array<{ metadata: { namespace: string } }> };
    assert.equal(list.kind, 'List');
    assert.equal(list.items[0].metadata.namespace, 'demo');
    r = await ambit(env, ['get', 'nosuchkind']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /doesn't have a resource type "nosuchkind"/);

    // Optimistic concurrency through apply: a stale resourceVersion is refused.
    const stale = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'demo', resourceVersion: '1' }, spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } };
    r = await ambit(env, ['apply', '-f', '-'], JSON.stringify(stale));
    assert.notEqual(r.code, 0);
    assert.match(r.err, /metadata\.resourceVersion: the resource was modified/);

    // delete by name and by file.
    r = await ambit(env, ['delete', 'vs', 'api', '-n', 'demo']);
    assert.equal(r.code, 0, r.err);
    r = await ambit(env, ['delete', 'vs', 'api', '-n', 'demo']);
    assert.notEqual(r.code, 0);
    r = await ambit(env, ['delete', '-f', path.join(REPO, 'deploy', 'examples')]);
    assert.equal(r.code, 0, r.err);
    r = await ambit(env, ['get', 'ns']);
    assert.doesNotMatch(r.out, /demo/);

    // Tokens.
    r = await ambit(env, ['token', 'create', '--node', 'node-1', '--ttl', '1h']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^ambit-[0-9a-f]{12}\.\S+\n$/);

    // Without a credential the CLI says where it looked and what to do.
    r = await ambit({ AMBIT_CONFIG: path.join(dir, 'missing') }, ['get', 'ns']);
    assert.notEqual(r.code, 0);
    assert.match(r.err, /no credential at .*missing.*AMBIT_CONFIG/);

    r = await ambit(env, ['--help']);
    for (const c of ['apply', 'get', 'delete', 'token', 'controlplane', 'version']) assert.match(r.out, new RegExp(`\\b${c}\\b`));
  } finally {
    await cp.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
