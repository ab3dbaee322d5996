import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CniAgent } from '../../cni/agent/agent';
import type { CniPodRequest, CniPodResponse } from '../../lib/api/cni-protocol';
import { createLogger } from '../../lib/telemetry/log';
import { Ztunnel } from '../../ztunnel/app';
import { ns, service, startControlPlane, tmpDir, waitFor } from '../helpers/controlplane';
import { haveTools, httpGetScript, httpServerScript, isRoot, TestNet } from '../helpers/netns';

const skip = !isRoot() ? 'needs root (network namespaces)' : !haveTools('ip', 'iptables-restore', 'nsenter', 'tcpdump') ? 'needs iproute2, iptables, util-linux and tcpdump (scripts/setup.sh installs them)' : false;

function cni(socket: string, req: CniPodRequest): Promise<CniPodResponse> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    let buf = '';
    c.on('data', (d) => (buf += d.toString()));
    c.on('end', () => resolve(JSON.parse(buf) as CniPodResponse));
    c.on('error', reject);
    c.end(`${JSON.stringify(req)}\n`);
  });
}

async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

test('ztunnel L4: HBONE between enrolled pods, service VIP and DNS, encrypted wire, L4 policy, STRICT/PERMISSIVE', { skip, timeout: 180_000 }, async () => {
  const cp = await startControlPlane({ debounceMs: 20 });
  const tn = new TestNet();
  const dir = tmpDir('zt');
  const log = createLogger('test', process.env.ZT_TEST_LOG ?? 'silent');
  const agents: CniAgent[] = [];
  const zts: Ztunnel[] = [];
  const etcNetns: string[] = [];
  try {
    const rootFile = path.join(dir, 'root.pem');
    fs.writeFileSync(rootFile, cp.rootPem);
    await cp.admin.apply([ns('demo', { 'istio.io/dataplane-mode': 'ambient' }), service('web', 'demo', { app: 'web' }, 80, 8080)]);
    const podA = tn.addPod('a');
    const podB = tn.addPod('b');
    const podC = tn.addPod('c');
    const nodes = ['node-a', 'node-b'];
    for (const node of nodes) {
      const state = path.join(dir, node);
      const { token } = await cp.admin.createBootstrapToken(node);
      const agent = new CniAgent({ node, stateDir: state, cniSocket: path.join(state, 'cni.sock'), ztunnelSocket: path.join(state, 'zt.sock'), trustDomain: 'cluster.local', join: { server: cp.address, rootPemFile: rootFile, token }, logger: log });
      await agent.start();
      agents.push(agent);
      const zt = new Ztunnel({ node, credentialFile: path.join(state, 'node.yaml'), agentSocket: path.join(state, 'zt.sock'), adminAddress: '127.0.0.1:0', metricsAddress: '127.0.0.1:0', trustDomain: 'cluster.local', drainMs: node === 'node-b' ? 5000 : 100, logger: log });
      await zt.start();
      zts.push(zt);
    }
    const [ztA, ztB] = zts;
    await waitFor('ztunnels connected to their agents', () => zts.every((z) => (z as unknown as { agent: { connected: boolean } }).agent.connected), 10_000);

    const add = (node: number, pod: { path: string; ip: string }, name: string, sa: string, labels: string) =>
      cni(path.join(dir, nodes[node], 'cni.sock'), { command: 'ADD', containerId: `c-${name}`, netns: pod.path, ifName: 'eth0', ips: [pod.ip], args: { K8S_POD_NAME: name, K8S_POD_NAMESPACE: 'demo', K8S_POD_UID: `uid-${name}`, AMBIT_POD_SERVICE_ACCOUNT: sa, AMBIT_POD_LABELS: labels } });
    assert.deepEqual(await add(0, podA, 'client', 'client', 'app=client'), { ok: true, enrolled: true });
    assert.deepEqual(await add(1, podB, 'web-1', 'web', 'app=web'), { ok: true, enrolled: true });
    assert.deepEqual(await add(0, podC, 'legacy', 'legacy', 'istio.io%2Fdataplane-mode=none'), { ok: true, enrolled: false });

    tn.spawnIn(podB.netns, process.execPath, httpServerScript(8080, 'hello from web'));
    await waitFor('workloads in both ztunnels', () => zts.every((z) => z.state.snapshot.workloads.has('wl/demo/web-1') && z.state.snapshot.workloads.has('wl/demo/client')), 15_000);
    await waitFor('server listening', async () => (await tn.execIn(podB.netns, process.execPath, httpGetScript('http://127.0.0.1:8080'))).code === 0, 10_000);

    // Pod IP, across the two ztunnels, inside an HBONE tunnel.
    let r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'hello from web');

    // The wire between the pods carries TLS to 15008 and never the plaintext.
    const capFile = path.join(dir, 'cap.txt');
    const cap = spawn('ip', ['netns', 'exec', tn.fabric, 'tcpdump', '-i', tn.pods[0].ifName, '-n', '-l', '-A', '-s', '0', 'tcp'], { stdio: ['ignore', fs.openSync(capFile, 'w'), 'ignore'] });
    await new Promise((res) => setTimeout(res, 700));
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080/secret-path-xyzzy`));
    assert.equal(r.code, 0, r.err);
    await new Promise((res) => setTimeout(res, 500));
    cap.kill('SIGTERM');
    await new Promise((res) => cap.once('close', res));
    const seen = fs.readFileSync(capFile, 'utf8');
    assert.match(seen, new RegExp(`${podB.ip.replace(/\./g, '\\.')}\\.15008`), 'traffic goes to the HBONE port');
    assert.doesNotMatch(seen, /secret-path-xyzzy|hello from web/, 'no plaintext on the wire');
    assert.doesNotMatch(seen, new RegExp(`${podB.ip.replace(/\./g, '\\.')}\\.8080`), 'never to the application port directly');

    // The destination's metrics name the caller's SPIFFE principal.
    const m = await metricsText(ztB.metricsPort);
    assert.match(m, /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*source_principal="spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client"[^}]*\} [1-9]/);
    assert.match(m, /connection_security_policy="mutual_tls"/);

    // Service VIP and name through the ztunnel's DNS proxy.
    const vip = ((await cp.admin.get('Service', 'demo', 'web')).spec as { clusterIP: string }).clusterIP;
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${vip}:80/`));
    assert.equal(r.out, 'hello from web', r.err);
    const etc = `/etc/netns/${podA.netns}`;
    fs.mkdirSync(etc, { recursive: true });
    etcNetns.push(etc);
    fs.writeFileSync(path.join(etc, 'resolv.conf'), 'nameserver 10.96.0.10\nsearch demo.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n');
    for (const name of ['web', 'web.demo', 'web.demo.svc.cluster.local']) {
      r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${name}/`));
      assert.equal(r.out, 'hello from web', `${name}: ${r.err}`);
    }
    r = await tn.execIn(podA.netns, process.execPath, ['-e', "require('dns').lookup('nothing.example', (e) => { console.log(e && e.code); })"]);
    assert.match(r.out, /ENOTFOUND/);

    // L4 DENY by principal refuses the caller; removing the policy restores it.
    const deny = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-client', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'web' } }, action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/client'] } }] }] } };
    await cp.admin.apply([deny]);
    await waitFor('policy at node-b', () => ztB.state.snapshot.authorizations.has('demo/deny-client'), 10_000);
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.notEqual(r.code, 0, 'denied caller gets no response');
    assert.equal(r.out, '');
    await cp.admin.delete([{ kind: 'AuthorizationPolicy', namespace: 'demo', name: 'deny-client' }]);
    await waitFor('policy removed', () => !ztB.state.snapshot.authorizations.has('demo/deny-client'), 10_000);
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.equal(r.out, 'hello from web', r.err);

    // An ALLOW policy that does not name the caller refuses it.
    const allow = { apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'allow-other', namespace: 'demo' }, spec: { selector: { matchLabels: { app: 'web' } }, action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/demo/sa/someone-else'] } }] }] } };
    await cp.admin.apply([allow]);
    await waitFor('allow policy at node-b', () => ztB.state.snapshot.authorizations.has('demo/allow-other'), 10_000);
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.notEqual(r.code, 0);
    const denied = await metricsText(ztB.metricsPort);
    assert.match(denied, /ambit_ztunnel_connections_denied_total\{[^}]*reporter="destination"[^}]*\} [1-9]/);
    await cp.admin.delete([{ kind: 'AuthorizationPolicy', namespace: 'demo', name: 'allow-other' }]);

    // Plaintext from a pod outside the mesh: PERMISSIVE (the default) lets it in, STRICT refuses it.
    await waitFor('allow policy removed', () => !ztB.state.snapshot.authorizations.has('demo/allow-other'), 10_000);
    r = await tn.execIn(podC.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.equal(r.out, 'hello from web', `PERMISSIVE: ${r.err}`);
    await cp.admin.apply([{ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default', namespace: 'demo' }, spec: { mtls: { mode: 'STRICT' } } }]);
    await waitFor('STRICT at node-b', () => ztB.state.snapshot.workloads.get('wl/demo/web-1')?.msg.mtlsMode === 1, 10_000);
    r = await tn.execIn(podC.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.notEqual(r.code, 0, 'STRICT refuses plaintext');
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`));
    assert.equal(r.out, 'hello from web', 'mesh callers still get in under STRICT');

    // A policy change closes existing connections it now denies.
    tn.spawnIn(podB.netns, process.execPath, ['-e', "require('net').createServer((c) => c.pipe(c)).listen(9000, '0.0.0.0')"]);
    await waitFor('echo server', async () => (await tn.execIn(podB.netns, process.execPath, ['-e', "require('net').connect(9000,'127.0.0.1').on('connect',()=>process.exit(0)).on('error',()=>process.exit(1))"])).code === 0, 10_000);
    const ll = spawn('ip', ['netns', 'exec', podA.netns, process.execPath, '-e', `const c=require('net').connect(9000,${JSON.stringify(podB.ip)});c.on('data',()=>console.log('ready'));c.on('close',()=>{console.log('closed');process.exit(0)});c.on('error',()=>{});c.write('x');setTimeout(()=>{console.log('still open');process.exit(1)},20000);`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let llOut = '';
    ll.stdout.on('data', (d: Buffer) => (llOut += d.toString()));
    await waitFor('long-lived connection', () => llOut.includes('ready'), 10_000);
    await cp.admin.apply([{ ...deny, metadata: { name: 'deny-client-2', namespace: 'demo' } }]);
    await new Promise((res) => ll.once('close', res));
    assert.match(llOut, /closed/, 'the connection the new policy denies is closed');
    await cp.admin.delete([{ kind: 'AuthorizationPolicy', namespace: 'demo', name: 'deny-client-2' }]);

    // Un-labelling the namespace un-enrols its running pods (rules removed), re-labelling enrols them again.
    const natOf = (netns: string) => tn.execIn(netns, 'iptables-save', ['-t', 'nat']).then((x) => x.out);
    assert.match(await natOf(podA.netns), /AMBIT_OUTPUT/);
    await cp.admin.apply([ns('demo', {})]);
    await waitFor('client un-enrolled', async () => !/AMBIT_OUTPUT/.test(await natOf(podA.netns)), 15_000);
    await waitFor('ztunnel released the pod', () => ztA.pods.pods.size === 0, 10_000);
    await cp.admin.apply([ns('demo', { 'istio.io/dataplane-mode': 'ambient' })]);
    await waitFor('client enrolled again', async () => /AMBIT_OUTPUT/.test(await natOf(podA.netns)), 15_000);
    await waitFor('ztunnel took the pod again', () => ztA.pods.pods.size === 1, 10_000);

    // SIGTERM (stop): node-b's ztunnel stops accepting at once, but an open connection goes on through the drain.
    const drainer = spawn('ip', ['netns', 'exec', podA.netns, process.execPath, '-e', `const c=require('net').connect(9000,${JSON.stringify(podB.ip)});let n=0;c.on('data',(d)=>{n++;console.log('echo '+d);if(n===1){setTimeout(()=>c.write('during-drain'),1500)}else{c.end()}});c.on('close',()=>process.exit(n===2?0:1));c.on('error',(e)=>console.log('error '+e.message));c.write('before');`], { stdio: ['ignore', 'pipe', 'ignore'] });
    let drainOut = '';
    drainer.stdout.on('data', (d: Buffer) => (drainOut += d.toString()));
    await waitFor('connection before the drain', () => drainOut.includes('echo before'), 10_000);
    const stopping = ztB.stop();
    r = await tn.execIn(podA.netns, process.execPath, httpGetScript(`http://${podB.ip}:8080`, 2000));
    assert.notEqual(r.code, 0, 'a draining ztunnel accepts no new connection');
    const drainCode = await new Promise<number | null>((res) => drainer.once('close', res));
    assert.equal(drainCode, 0, drainOut);
    assert.match(drainOut, /echo during-drain/);
    await stopping;
  } finally {
    for (const z of zts) await z.stop().catch(() => undefined);
    for (const a of agents) await a.stop().catch(() => undefined);
    await cp.stop();
    tn.destroy();
    for (const e of etcNetns) fs.rmSync(e, { recursive: true, force: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
