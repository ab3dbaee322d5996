// The L4 mesh end to end on the local cluster (`ambit dev`): real control plane, cni
// agents, ztunnels, CNI chain, pods on two hosts. Root only; the cluster has a unique
// name and is always brought down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { down, httpGet, listNetns, podExec, podList, podRun, status, up } from '../../deploy/local';
import { AmbitClient } from '../../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { eventually, haveTools, isRoot } from '../helpers/netns';
import { ns, service } from '../helpers/controlplane';

const skip = !isRoot()
  ? 'needs root (network namespaces)'
  : !haveTools('ip', 'iptables-save', 'tcpdump') || !fs.existsSync('/usr/lib/cni/bridge')
    ? 'needs iproute2, iptables, tcpdump and containernetworking-plugins (scripts/setup.sh installs them)'
    : false;

const SERVER = `
const http = require('http'), net = require('net');
http.createServer((q, s) => s.end('hello from ' + process.env.POD_NAME)).listen(8080, '0.0.0.0');
net.createServer((c) => c.pipe(c)).listen(9000, '0.0.0.0');
`;

/** Connects to an echo server, echoes once, prints "ready", waits, echoes again on the same connection, prints "ok". */
const LONG_LIVED = `
const c = require('net').connect(9000, process.argv[1]);
let n = 0;
c.on('data', (d) => { n++; if (n === 1) { console.log('ready'); setTimeout(() => c.write('second'), Number(process.argv[2])); } else { console.log('ok ' + d); c.end(); } });
c.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
c.on('close', () => process.exit(n >= 2 ? 0 : 1));
c.write('first');
`;

test('L4 mesh on two hosts: service name via the DNS proxy, TLS on the wire, principal in metrics, ztunnel kill -9, control plane down', { skip, timeout: 300_000 }, async () => {
  const co = { dir: fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-e2e-')), name: `ambit-e${randomBytes(3).toString('hex')}` };
  let frozenCp: number | undefined;
  let admin: AmbitClient | undefined;
  try {
    const u = await up({ ...co, nodes: 2 });
    assert.deepEqual(u.notReady, []);
    admin = new AmbitClient(dialFromConfig(loadClientConfig(u.adminConfig)));
    await admin.apply([ns('demo', { 'istio.io/dataplane-mode': 'ambient' }), service('web', 'demo', { app: 'web' }, 80, 8080)]);
    const web = await podRun({ ...co, name: 'web', namespace: 'demo', node: 'node2', serviceAccount: 'web', labels: { app: 'web' }, command: [process.execPath, '-e', SERVER] });
    await podRun({ ...co, name: 'client', namespace: 'demo', node: 'node1', serviceAccount: 'client', command: ['sleep', 'infinity'] });
    await eventually('both pods enrolled', 30_000, async () => (await podList(co)).filter((p) => p.namespace === 'demo' && p.enrolled).length === 2);
    const webIp = web.ip;

    // By name, through the ztunnel's DNS proxy and the service VIP, across hosts.
    const get = async (url: string) => {
      const r = await podExec({ ...co, name: 'client', namespace: 'demo', command: [process.execPath, '-e', `process.exitCode = 3; fetch(${JSON.stringify(url)}, {signal: AbortSignal.timeout(5000)}).then(async r => { process.stdout.write(await r.text()); process.exitCode = r.ok ? 0 : 2; }, e => { process.stderr.write(String(e.cause || e)); process.exit(1); })`], timeoutMs: 20_000 });
      return r.code === 0 ? r.stdout : `FAILED: ${r.stderr}`;
    };
    let lastAnswer = '';
    await eventually('first request', 60_000, async () => (lastAnswer = await get('http://web/')) === 'hello from web').catch((err: Error) => {
      throw new Error(`${err.message}; last answer: ${lastAnswer}`);
    });

    // The link between the hosts carries TLS to 15008, never the payload.
    const capFile = path.join(co.dir, 'cap.txt');
    const cap = spawn('ip', ['netns', 'exec', `${co.name}-fabric`, 'tcpdump', '-i', 'h-node1', '-n', '-l', '-A', '-s', '0', 'tcp'], { stdio: ['ignore', fs.openSync(capFile, 'w'), 'ignore'] });
    await new Promise((r) => setTimeout(r, 800));
    assert.equal(await get('http://web.demo.svc.cluster.local/very-secret-path'), 'hello from web');
    await new Promise((r) => setTimeout(r, 500));
    cap.kill('SIGTERM');
    await new Promise((r) => cap.once('close', r));
    const wire = fs.readFileSync(capFile, 'utf8');
    assert.match(wire, new RegExp(`${webIp.replace(/\./g, '\\.')}\\.15008`), 'HBONE to the destination pod');
    assert.doesNotMatch(wire, /very-secret-path|hello from web/, 'no plaintext between the hosts');

    // The destination ztunnel's metrics name the caller's SPIFFE identity.
    const metrics = await httpGet(`${co.name}-node2`, 'http://127.0.0.1:15020/metrics');
    assert.match(metrics.body ?? '', /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client"/);

    // kill -9 of node1's ztunnel: the supervisor restarts it; the pod stays enrolled with the same rules; new connections work.
    const clientNetns = `${co.name}-pod-demo-client`;
    const rulesBefore = execFileSync('ip', ['netns', 'exec', clientNetns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    const zt = (await status(co))!.hosts.find((h) => h.name === 'node1')!.components.ztunnel;
    process.kill(zt.pid!, 'SIGKILL');
    await eventually('ztunnel restarted and ready', 60_000, async () => {
      const s = (await status(co))!.hosts.find((h) => h.name === 'node1')!.components.ztunnel;
      return s.restarts > zt.restarts && s.ready;
    });
    assert.equal(await eventually('requests after the restart', 30_000, async () => ((await get('http://web/')) === 'hello from web' ? 'ok' : undefined)), 'ok');
    const rulesAfter = execFileSync('ip', ['netns', 'exec', clientNetns, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' }).replace(/^#.*$/gm, '').replace(/\[\d+:\d+\]/g, '');
    assert.equal(rulesAfter, rulesBefore, 'redirect rules inside the pod are unchanged');
    assert.ok((await podList(co)).find((p) => p.name === 'client')?.enrolled);

    // Control plane down (frozen, so the supervisor does not restart it): an existing
    // connection and new ones between enrolled pods keep working on the last config.
    const longLived = spawn('ip', ['netns', 'exec', clientNetns, process.execPath, '-e', LONG_LIVED, webIp, '3000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let llOut = '';
    longLived.stdout.on('data', (d: Buffer) => (llOut += d.toString()));
    await eventually('long-lived connection open', 20_000, async () => llOut.includes('ready'));
    frozenCp = (await status(co))!.controlPlane.components.controlplane.pid;
    process.kill(frozenCp!, 'SIGSTOP');
    const code = await new Promise<number | null>((r) => longLived.once('close', r));
    assert.equal(code, 0, `existing connection across the outage: ${llOut}`);
    assert.match(llOut, /ok second/);
    assert.equal(await get('http://web/'), 'hello from web', 'a new connection while the control plane is down');
  } finally {
    if (frozenCp) {
      try {
        process.kill(frozenCp, 'SIGCONT');
      } catch {
        // gone
      }
    }
    admin?.close();
    await down(co);
    const left = (await listNetns()).filter((n) => n.startsWith(`${co.name}-`));
    fs.rmSync(co.dir, { recursive: true, force: true });
    assert.deepEqual(left, [], 'no namespace of the cluster is left');
  }
});
