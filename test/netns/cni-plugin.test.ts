// bin/ambit-cni, run as a container runtime runs it: CNI_* environment, config on stdin,
// result or CNI error object on stdout. The chain tests need root, iproute2 and the reference
// plugins (containernetworking-plugins, in /usr/lib/cni): they build a "host" netns and a
// "pod" netns with random names, give the pod its address with the real bridge + host-local
// plugins run inside the host netns, then chain ambit-cni after them. Everything (netns,
// host-local dataDir, agent sockets) is removed in `finally`.
//
// The agent here is a FAKE: a unix socket server speaking lib/api/cni-protocol.ts that
// records what it receives. It stands in for `ambit cni-agent`, which is written
// separately; this is the only stand-in in these tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { CniPodRequest, CniPodResponse } from '../../lib/api/cni-protocol';
import { formatLabels } from '../../cni/plugin/labels';
import { hasCommand } from '../helpers/netns';

const REPO = path.resolve(__dirname, '..', '..', '..');
const AMBIT_CNI = path.join(REPO, 'bin', 'ambit-cni');
const CNI_PATH = '/usr/lib/cni';
const STEP_MS = 20_000;
const TEST_MS = 120_000;

const has = hasCommand;

const isRoot = process.getuid?.() === 0;
const skipChain = !isRoot
  ? 'needs root (network namespaces, the reference CNI plugins)'
  : !has('ip', ['-V'])
    ? 'needs `ip` (iproute2)'
    : !fs.existsSync(path.join(CNI_PATH, 'bridge')) || !fs.existsSync(path.join(CNI_PATH, 'host-local'))
      ? `needs the reference CNI plugins in ${CNI_PATH} (apt-get install containernetworking-plugins)`
      : false;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a plugin executable (optionally inside a netns, as a runtime on that host would). */
function runPlugin(exe: string, env: Record<string, string>, stdin: string, netns?: string): Promise<Run> {
  const argv = exe === AMBIT_CNI ? [process.execPath, exe] : [exe];
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, ...argv] : argv;
  const started = Date.now();
  return new Promise((resolve) => {
    // A clean environment, as runtimes give plugins; PATH only so `ip netns exec` and node resolve.
    const p = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, timeout: STEP_MS });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
    p.stdin.end(stdin);
  });
}

function cniError(r: Run): { cniVersion: string; code: number; msg: string; details?: string } {
  assert.notEqual(r.code, 0, `expected a failure; stdout=${r.stdout} stderr=${r.stderr}`);
  const e = JSON.parse(r.stdout);
  assert.equal(typeof e.cniVersion, 'string');
  assert.equal(typeof e.code, 'number');
  assert.equal(typeof e.msg, 'string');
  assert.ok(e.msg.length > 0);
  return e;
}

interface FakeAgent {
  socket: string;
  requests: CniPodRequest[];
  respond: (req: CniPodRequest) => CniPodResponse | 'silent';
  close(): Promise<void>;
}

/** The stand-in for `ambit cni-agent` (see the header): one JSON line in, one out. */
async function startFakeAgent(socket: string): Promise<FakeAgent> {
  const agent: FakeAgent = {
    socket,
    requests: [],
    respond: () => ({ ok: true, enrolled: true }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const conns = new Set<net.Socket>();
  const server = net.createServer((c) => {
    conns.add(c);
    c.on('close', () => conns.delete(c));
    c.on('error', () => {});
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const req = JSON.parse(buf.slice(0, nl)) as CniPodRequest;
      agent.requests.push(req);
      const res = agent.respond(req);
      if (res !== 'silent') c.end(JSON.stringify(res) + '\n');
    });
  });
  agent.close = () =>
    new Promise((resolve) => {
      for (const c of conns) c.destroy();
      server.close(() => resolve());
    });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socket, () => resolve());
  });
  return agent;
}

/** A socket file nobody listens on (an agent that crashed): connecting gives ECONNREFUSED. */
async function staleSocket(socket: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  assert.ok(fs.existsSync(socket));
}

const SAMPLE_PREV = {
  cniVersion: '1.0.0',
  interfaces: [{ name: 'cni0', mac: '0a:58:0a:f4:01:01' }, { name: 'veth1', mac: '0a:58:0a:f4:01:02' }, { name: 'eth0', mac: '0a:58:0a:f4:01:03', sandbox: '/var/run/netns/x' }],
  ips: [{ interface: 2, address: '10.244.1.2/24', gateway: '10.244.1.1' }, { interface: 2, address: 'fd00:10:244:1::2/64' }],
  routes: [{ dst: '0.0.0.0/0' }],
  dns: {},
};

function conf(extra: Record<string, unknown>): string {
  return JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', type: 'ambit-cni', ...extra });
}

test('ambit-cni: VERSION lists the supported spec versions', { timeout: TEST_MS }, async () => {
  // Straight through the shebang, as a runtime executes it.
  const r = await new Promise<Run>((resolve) => {
    const p = spawn(AMBIT_CNI, [], { env: { PATH: process.env.PATH ?? '', CNI_COMMAND: 'VERSION' }, timeout: STEP_MS });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stdout, stderr, ms: 0 }));
    p.stdin.end('{"cniVersion":"1.0.0"}');
  });
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(v.cniVersion, '1.0.0');
  for (const want of ['0.3.0', '0.3.1', '0.4.0', '1.0.0']) assert.ok(v.supportedVersions.includes(want), want);
});

test('ambit-cni: bad input gets a clean CNI error with the spec code, and the agent is not asked', { timeout: TEST_MS }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-cni-'));
  let agent: FakeAgent | undefined;
  try {
    agent = await startFakeAgent(path.join(dir, 'agent.sock'));
    const netnsFile = path.join(dir, 'netns'); // only its existence matters before the agent is asked
    fs.writeFileSync(netnsFile, '');
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: netnsFile, CNI_IFNAME: 'eth0', CNI_PATH, CNI_ARGS: 'K8S_POD_NAME=a' };
    const good = { agentSocket: agent.socket, prevResult: SAMPLE_PREV };
    const cases: Array<[string, Record<string, string>, string, number, RegExp]> = [
      ['not JSON', env, '{"cniVersion": "1.0.0", ', 6, /decode/],
      ['a JSON list', env, '[1,2]', 6, /decode/],
      ['no prevResult', env, conf({ agentSocket: agent.socket }), 7, /needs prevResult.*chained after the primary network plugin/],
      ['prevResult not an object', env, conf({ ...good, prevResult: 'x' }), 7, /prevResult/],
      ['prevResult without ips', env, conf({ ...good, prevResult: { cniVersion: '1.0.0', ips: [] } }), 7, /no ips/],
      ['prevResult with a bad address', env, conf({ ...good, prevResult: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.300/24' }] } }), 7, /ips\[0\]\.address/],
      ['old cniVersion', env, conf({ ...good, cniVersion: '0.2.0' }), 1, /incompatible CNI versions.*0\.2\.0/],
      ['future cniVersion', env, conf({ ...good, cniVersion: '9.9.9' }), 1, /incompatible/],
      ['no cniVersion', env, JSON.stringify({ name: 'podnet', type: 'ambit-cni', ...good }), 7, /cniVersion is required/],
      ['no name', env, JSON.stringify({ cniVersion: '1.0.0', type: 'ambit-cni', ...good }), 7, /name is required/],
      ['bad name', env, conf({ ...good, name: '-x y' }), 7, /name "-x y"/],
      ['relative agentSocket', env, conf({ ...good, agentSocket: 'cni.sock' }), 7, /agentSocket must be an absolute path/],
      ['bad logLevel', env, conf({ ...good, logLevel: 'loud' }), 7, /logLevel/],
      ['CHECK on 0.3.1', { ...env, CNI_COMMAND: 'CHECK' }, conf({ ...good, cniVersion: '0.3.1' }), 1, /does not allow CHECK/],
      ['missing env', { CNI_COMMAND: 'ADD', CNI_PATH }, conf(good), 4, /CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME/],
      ['unknown command', { ...env, CNI_COMMAND: 'FROB' }, conf(good), 4, /unknown CNI_COMMAND/],
      ['bad CNI_ARGS', { ...env, CNI_ARGS: 'K8S_POD_NAME=a;junk' }, conf(good), 4, /CNI_ARGS: invalid pair "junk"/],
      ['bad labels', { ...env, CNI_ARGS: 'AMBIT_POD_LABELS=app%ZZ=x' }, conf(good), 4, /AMBIT_POD_LABELS/],
      ['bad container id', { ...env, CNI_CONTAINERID: 'a/b' }, conf(good), 4, /CNI_CONTAINERID/],
      ['bad ifname', { ...env, CNI_IFNAME: 'a-very-long-ifname0' }, conf(good), 4, /CNI_IFNAME/],
      ['netns missing', { ...env, CNI_NETNS: path.join(dir, 'gone') }, conf(good), 3, /does not exist/],
    ];
    for (const [what, e, stdin, code, msg] of cases) {
      const r = await runPlugin(AMBIT_CNI, e, stdin);
      const err = cniError(r);
      assert.equal(err.code, code, `${what}: ${r.stdout}`);
      assert.match(err.msg, msg, what);
      assert.match(r.stderr, /"level":"error"/, `${what}: logged on stderr`);
    }
    // An error for a supported version carries that version.
    const r = await runPlugin(AMBIT_CNI, env, conf({ cniVersion: '0.4.0', agentSocket: agent.socket }));
    assert.equal(cniError(r).cniVersion, '0.4.0');
    assert.equal(agent.requests.length, 0, 'no request reached the agent');

    // Result conversion between the spec's result shapes, on a canned prevResult.
    let ok = await runPlugin(AMBIT_CNI, env, conf({ ...good, cniVersion: '0.4.0' }));
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    const legacy = JSON.parse(ok.stdout);
    assert.equal(legacy.cniVersion, '0.4.0');
    assert.deepEqual(legacy.ips.map((i: { version: string }) => i.version), ['4', '6']);
    ok = await runPlugin(AMBIT_CNI, env, conf({ ...good, prevResult: legacy }));
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout), SAMPLE_PREV, '0.4.0 -> 1.0.0 drops ips[].version again');
    assert.deepEqual(agent.requests.map((q) => q.ips), [['10.244.1.2', 'fd00:10:244:1::2'], ['10.244.1.2', 'fd00:10:244:1::2']]);
  } finally {
    await agent?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('ambit-cni chained after bridge + host-local in real namespaces, against a fake agent', { skip: skipChain, timeout: TEST_MS }, async () => {
  const id = randomBytes(3).toString('hex');
  const host = `ambit-ct-host-${id}`;
  const pod = `ambit-ct-pod-${id}`;
  const podPath = `/var/run/netns/${pod}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-cni-'));
  const dataDir = path.join(dir, 'ipam');
  const socket = path.join(dir, 'agent.sock');
  const containerId = `ctr${id}`;
  const labels = { app: 'web', 'app.kubernetes.io/name': 'web', tier: 'a=b,c' };
  // libcni gives every plugin of a conflist the same CNI_ARGS, and the reference plugins
  // reject a second "=" in a pair, so the runtime encodes the label list once more as a whole.
  const cniArgs = [
    'IgnoreUnknown=1',
    'K8S_POD_NAMESPACE=demo',
    'K8S_POD_NAME=web-1',
    `K8S_POD_INFRA_CONTAINER_ID=${containerId}`,
    'K8S_POD_UID=1f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b',
    'AMBIT_POD_SERVICE_ACCOUNT=web-sa',
    `AMBIT_POD_LABELS=${encodeURIComponent(formatLabels(labels))}`,
  ].join(';');
  const env = (command: string, extra: Record<string, string> = {}) => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: podPath,
    CNI_IFNAME: 'eth0',
    CNI_PATH,
    CNI_ARGS: cniArgs,
    ...extra,
  });
  const bridgeConf = {
    cniVersion: '1.0.0',
    name: 'podnet',
    type: 'bridge',
    bridge: 'cni0',
    isGateway: true,
    ipMasq: false,
    ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24' }]], routes: [{ dst: '0.0.0.0/0' }], dataDir },
  };
  const sh = (args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', timeout: STEP_MS });
  const links = (ns: string): string[] =>
    sh(['-n', ns, '-o', 'link', 'show'])
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(':')[1].trim().split('@')[0]);
  const rulesIn = (ns: string): string[] =>
    execFileSync('ip', ['netns', 'exec', ns, 'iptables-save'], { encoding: 'utf8', timeout: STEP_MS })
      .split('\n')
      .filter((l) => l.startsWith('-A'));
  let agent: FakeAgent | undefined;
  try {
    sh(['netns', 'add', host]);
    sh(['netns', 'add', pod]);

    // 1. The primary plugin, exactly as NODE-DATAPATH-NOTES verified it.
    const bridge = await runPlugin(path.join(CNI_PATH, 'bridge'), env('ADD'), JSON.stringify(bridgeConf), host);
    assert.equal(bridge.code, 0, `bridge ADD: ${bridge.stdout} ${bridge.stderr}`);
    const prevResult = JSON.parse(bridge.stdout);
    const podIp = prevResult.ips[0].address.split('/')[0];
    assert.match(podIp, /^10\.244\.1\.\d+$/);
    const ambitConf = (extra: Record<string, unknown> = {}) =>
      JSON.stringify({ cniVersion: '1.0.0', name: 'podnet', type: 'ambit-cni', agentSocket: socket, logLevel: 'debug', prevResult, ...extra });

    // 2. ADD with the agent up: prevResult comes back unchanged, the agent got the pod.
    agent = await startFakeAgent(socket);
    let r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf(), host);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), prevResult);
    assert.equal(agent.requests.length, 1);
    const req = agent.requests[0];
    assert.equal(req.command, 'ADD');
    assert.equal(req.containerId, containerId);
    assert.equal(req.netns, podPath);
    assert.equal(req.ifName, 'eth0');
    assert.deepEqual(req.ips, [podIp]);
    assert.equal(req.args.K8S_POD_NAME, 'web-1');
    assert.equal(req.args.K8S_POD_NAMESPACE, 'demo');
    assert.equal(req.args.K8S_POD_UID, '1f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
    assert.equal(req.args.AMBIT_POD_SERVICE_ACCOUNT, 'web-sa');
    assert.equal(req.args.AMBIT_POD_LABELS, formatLabels(labels), 'labels reach the agent in the documented form');
    assert.doesNotMatch(r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l).level).join(','), /error/);

    // An agent that leaves the pod out of the mesh is not an error.
    agent.respond = () => ({ ok: true, enrolled: false });
    r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf(), host);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), prevResult);

    // An agent that refuses: its code and message reach the runtime.
    agent.respond = () => ({ ok: false, code: 101, msg: 'installing redirect rules failed', details: 'iptables-restore: line 3 failed' });
    r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf(), host);
    let e = cniError(r);
    assert.equal(e.code, 101);
    assert.match(e.msg, /ambit cni-agent refused ADD: installing redirect rules failed/);
    assert.equal(e.details, 'iptables-restore: line 3 failed');

    // An agent that never answers: bounded by agentTimeoutMs, code 11.
    agent.respond = () => 'silent';
    r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf({ agentTimeoutMs: 500 }), host);
    e = cniError(r);
    assert.equal(e.code, 11);
    assert.match(e.msg, /did not answer within 500 ms/);
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    agent.respond = () => ({ ok: true, enrolled: true });

    // CHECK asks the agent.
    const asked = agent.requests.length;
    r = await runPlugin(AMBIT_CNI, env('CHECK'), ambitConf(), host);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(agent.requests[asked].command, 'CHECK');
    assert.deepEqual(agent.requests[asked].ips, [podIp]);

    // DEL twice with the agent up: both succeed, print nothing, and tell the agent.
    for (let i = 0; i < 2; i++) {
      r = await runPlugin(AMBIT_CNI, env('DEL'), ambitConf(), host);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, '');
    }
    const dels = agent.requests.filter((q) => q.command === 'DEL');
    assert.equal(dels.length, 2);
    assert.deepEqual(dels[0], { command: 'DEL', containerId, netns: podPath, ifName: 'eth0', args: req.args, ips: [] });
    // DEL without a netns (the runtime lost it) still reaches the agent and succeeds.
    r = await runPlugin(AMBIT_CNI, env('DEL', { CNI_NETNS: '' }), ambitConf({ prevResult: undefined }), host);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(agent.requests[agent.requests.length - 1].netns, '');

    // 3. The agent goes down (crashed: its socket file is left, nobody listens).
    await agent.close();
    agent = undefined;
    await staleSocket(socket);
    const podLinks = links(pod);
    const hostLinks = links(host);
    const podRules = rulesIn(pod);
    const hostRules = rulesIn(host);
    const files = fs.readdirSync(dir).sort();
    r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf(), host);
    e = cniError(r);
    assert.equal(e.code, 11);
    assert.equal(e.msg, `ambit cni-agent is not reachable at ${socket}: ECONNREFUSED; is the agent running on this node?`);
    // Nothing left behind by the failed ADD.
    assert.deepEqual(links(pod), podLinks);
    assert.deepEqual(links(host), hostLinks);
    assert.deepEqual(rulesIn(pod), podRules);
    assert.deepEqual(rulesIn(host), hostRules);
    assert.deepEqual(fs.readdirSync(dir).sort(), files);
    // CHECK with the agent down fails; DEL succeeds, twice, and says why on stderr.
    r = await runPlugin(AMBIT_CNI, env('CHECK'), ambitConf(), host);
    assert.equal(cniError(r).code, 11);
    for (let i = 0; i < 2; i++) {
      r = await runPlugin(AMBIT_CNI, env('DEL'), ambitConf(), host);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /"level":"warn".*ECONNREFUSED/);
    }
    // No socket file at all: same error, with ENOENT.
    fs.rmSync(socket);
    r = await runPlugin(AMBIT_CNI, env('ADD'), ambitConf(), host);
    e = cniError(r);
    assert.equal(e.code, 11);
    assert.match(e.msg, /not reachable at .*: ENOENT; is the agent running on this node\?/);

    // 4. DEL of the primary plugin: the pod is back to bare, the host keeps only its bridge.
    const bdel = await runPlugin(path.join(CNI_PATH, 'bridge'), env('DEL'), JSON.stringify({ ...bridgeConf, prevResult }), host);
    assert.equal(bdel.code, 0, `bridge DEL: ${bdel.stdout} ${bdel.stderr}`);
    assert.deepEqual(links(pod), ['lo']);
    assert.deepEqual(links(host), ['lo', 'cni0'], 'the veth is gone (bridge keeps cni0 by design)');
    assert.deepEqual(rulesIn(pod), []);
    assert.deepEqual(rulesIn(host), []);
    const reserved = fs.readdirSync(path.join(dataDir, 'podnet')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
    assert.deepEqual(reserved, [], 'host-local released the address');
  } finally {
    await agent?.close();
    for (const ns of [pod, host]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: STEP_MS });
      } catch {
        /* already gone */
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
