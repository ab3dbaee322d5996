// deploy/local (`ambit dev ...`) end to end: a 2-host cluster of network namespaces with
// the real control plane, cni agents, ztunnels and CNI plugins (bridge + host-local +
// ambit-cni). Root only. The cluster has a unique name (every netns it makes starts with
// it) and its own temp state dir, so it does not collide with another cluster on the
// machine; it is always brought down in `finally`, and the test checks that none of its
// namespaces, processes or files remain. Traffic only goes between the cluster's pods.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { down, listNetns, podExec, status } from '../../deploy/local';
import { hasCommand } from '../helpers/netns';

const TEST_MS = 240_000;
const STEP_MS = 120_000;

const has = hasCommand;

const skip = process.getuid?.() !== 0
  ? 'needs root (network namespaces, veth, bridges, iptables)'
  : !has('ip', ['-V'])
    ? 'needs `ip` (iproute2; scripts/setup.sh installs it)'
    : !has('iptables-save', ['--version'])
      ? 'needs iptables (scripts/setup.sh installs it)'
      : !fs.existsSync('/usr/lib/cni/bridge') || !fs.existsSync('/usr/lib/cni/host-local')
        ? 'needs the reference CNI plugins in /usr/lib/cni (apt-get install containernetworking-plugins; scripts/setup.sh installs it)'
        : false;

const ROOT = path.resolve(__dirname, '..', '..', '..');
/** `ambit dev ...` through cli/dev.ts's registerDevCommands, in a process of its own as the real CLI would be. */
const RUNNER = `
const { Command } = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'commander'))});
const { registerDevCommands } = require(${JSON.stringify(path.join(ROOT, 'dist', 'cli', 'dev.js'))});
const program = new Command().name('ambit').exitOverride();
registerDevCommands(program, (s) => process.stdout.write(s));
program.parseAsync(process.argv.slice(1), { from: 'user' }).catch((e) => { process.stderr.write('error: ' + e.message + '\\n'); process.exitCode = 1; });
`;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(env: NodeJS.ProcessEnv, args: string[], timeoutMs = STEP_MS): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['-e', RUNNER, '--', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function ok(r: CliResult, what: string): CliResult {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function eventually<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}`);
    await sleep(250);
  }
}

/** Exists and is not a zombie (a reparented zombie waits for the machine's init to reap it). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function dumpLogs(dir: string): void {
  const logs = path.join(dir, 'logs');
  try {
    for (const f of fs.readdirSync(logs)) {
      const text = fs.readFileSync(path.join(logs, f), 'utf8').trimEnd().split('\n').slice(-20).join('\n');
      process.stderr.write(`----- ${f} (last lines)\n${text}\n`);
    }
  } catch {
    // no logs
  }
}

test('ambit dev: two hosts, pods on both, plain routing across hosts, pod lifecycle, supervisor restarts, clean teardown', { skip, timeout: TEST_MS }, async () => {
  const id = randomBytes(3).toString('hex');
  const name = `ambit-t${id}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-dev-'));
  const env: NodeJS.ProcessEnv = { ...process.env, AMBIT_DEV_DIR: dir, AMBIT_DEV_NAME: name };
  delete env.AMBIT_CONFIG;
  for (const k of Object.keys(env)) if (k.startsWith('NODE_TEST')) delete env[k];
  const ns = `plain-${id}`;
  const mine = () => listNetns().filter((n) => n.startsWith(`${name}-`));
  let pids: number[] = [];
  let failed = true;
  try {
    // up
    const upr = ok(await cli(env, ['dev', 'up', '--nodes', '2']), 'dev up');
    assert.match(upr.stdout, /is up/);
    assert.match(upr.stdout, new RegExp(`export AMBIT_CONFIG=${dir}/admin.yaml`));
    assert.match(upr.stdout, /node1\s+ambit-t\w+-node1\s+10\.250\.0\.11\s+10\.244\.1\.0\/24/);
    assert.match(upr.stdout, /node2\s+ambit-t\w+-node2\s+10\.250\.0\.12\s+10\.244\.2\.0\/24/);
    assert.deepEqual(mine().sort(), [`${name}-cp`, `${name}-fabric`, `${name}-node1`, `${name}-node2`]);
    assert.match(ok(await cli(env, ['dev', 'up']), 'second dev up').stdout, /already up/);

    // status
    const st = JSON.parse(ok(await cli(env, ['dev', 'status', '-o', 'json']), 'dev status').stdout) as NonNullable<Awaited<ReturnType<typeof status>>>;
    assert.equal(st.name, name);
    assert.equal(st.hosts.length, 2);
    assert.equal(st.supervisor.running, true);
    assert.equal(st.controlPlane.components.controlplane.state, 'running');
    assert.equal(st.controlPlane.address, '10.250.0.2');
    for (const [i, h] of st.hosts.entries()) {
      assert.equal(h.name, `node${i + 1}`);
      assert.equal(h.netns, `${name}-node${i + 1}`);
      assert.equal(h.podCidr, `10.244.${i + 1}.0/24`);
      assert.ok(h.addresses.some((a) => a.address === `10.250.0.${11 + i}/24`), JSON.stringify(h.addresses));
      assert.equal(h.components['cni-agent'].state, 'running');
      assert.equal(h.components.ztunnel.state, 'running');
      assert.ok(h.components['cni-agent'].pid && h.components.ztunnel.pid);
    }
    pids = [st.supervisor.pid!, st.controlPlane.components.controlplane.pid!, ...st.hosts.flatMap((h) => [h.components['cni-agent'].pid!, h.components.ztunnel.pid!])];

    // pods: a server on node2 and a client on node1, in a namespace without the ambient label
    const server = `require('http').createServer((q, s) => s.end('hello from ' + process.env.POD_NAME + '\\n')).listen(8080, '0.0.0.0', () => console.log('listening'))`;
    const srv = ok(await cli(env, ['dev', 'pod', 'run', 'server', '-n', ns, '--node', 'node2', '-l', 'app=server', '--', 'node', '-e', server]), 'pod run server');
    const serverIp = srv.stdout.trim();
    assert.match(serverIp, /^10\.244\.2\.\d+$/);
    assert.match(srv.stderr, /not in the mesh/);
    const cl = ok(await cli(env, ['dev', 'pod', 'run', 'client', '-n', ns, '--sa', 'client', '--', 'sleep', '600']), 'pod run client');
    const clientIp = cl.stdout.trim();
    assert.match(clientIp, /^10\.244\.1\.\d+$/);
    await eventually('the server listens', 30_000, async () => ((await cli(env, ['dev', 'logs', 'server', '-n', ns])).stdout.includes('listening') ? true : undefined));

    // plain routing across hosts: client (node1) -> server pod IP (node2)
    const fetchCmd = `fetch('http://${serverIp}:8080/', { signal: AbortSignal.timeout(5000) }).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 2); }, (e) => { console.error(String(e && (e.cause || e))); process.exit(1); })`;
    const got = ok(await cli(env, ['dev', 'exec', 'client', '-n', ns, '--', 'node', '-e', fetchCmd]), 'dev exec client fetch');
    assert.equal(got.stdout, 'hello from server\n');
    // the same through the module's API, as mesh tests will use it
    const viaApi = await podExec({ dir, name: 'client', namespace: ns, command: ['node', '-e', fetchCmd], timeoutMs: 20_000 });
    assert.equal(viaApi.code, 0, viaApi.stderr);
    assert.equal(viaApi.stdout, 'hello from server\n');
    // exec returns the command's exit code, and the pod sees its own resolv.conf
    assert.equal((await cli(env, ['dev', 'exec', 'client', '-n', ns, '--', 'sh', '-c', 'exit 7'])).code, 7);
    const resolv = ok(await cli(env, ['dev', 'exec', 'client', '-n', ns, '--', 'cat', '/etc/resolv.conf']), 'cat resolv.conf').stdout;
    assert.match(resolv, /^nameserver 10\.244\.1\.1$/m); // node1's pod gateway: refused at once outside the mesh
    assert.match(resolv, new RegExp(`^search ${ns}\\.svc\\.cluster\\.local svc\\.cluster\\.local cluster\\.local$`, 'm'));
    assert.match(resolv, /^options ndots:5$/m);
    // the pod's own hostname, as in Kubernetes
    assert.equal(ok(await cli(env, ['dev', 'exec', 'client', '-n', ns, '--', 'cat', '/proc/sys/kernel/hostname']), 'hostname').stdout.trim(), 'client');

    // pod list
    const pods = JSON.parse(ok(await cli(env, ['dev', 'pod', 'list', '-o', 'json']), 'pod list').stdout) as Array<{ name: string; namespace: string; node: string; ip: string; netns: string; enrolled: boolean; state: string }>;
    assert.deepEqual(pods.map((p) => [p.namespace, p.name, p.node, p.ip, p.netns, p.enrolled, p.state]), [
      [ns, 'client', 'node1', clientIp, `${name}-pod-${ns}-client`, false, 'running'],
      [ns, 'server', 'node2', serverIp, `${name}-pod-${ns}-server`, false, 'running'],
    ]);
    assert.match(ok(await cli(env, ['dev', 'pod', 'list']), 'pod list table').stdout, /NAMESPACE\s+NAME\s+NODE\s+IP\s+NETNS\s+ENROLLED/);

    // the supervisor restarts a crashed component (as kubelet would)
    const z1 = st.hosts[0].components.ztunnel.pid!;
    process.kill(z1, 'SIGKILL');
    await eventually('ztunnel on node1 restarted', 30_000, async () => {
      const s = await status({ dir });
      const z = s?.hosts[0].components.ztunnel;
      return z && z.state === 'running' && z.pid !== z1 && z.restarts >= 1 ? true : undefined;
    });

    // component logs
    assert.match(ok(await cli(env, ['dev', 'logs', '--component', 'cni-agent', '--node', 'node2']), 'agent log').stdout, /cni agent ready/);

    // pod delete: process, CNI DEL, netns and /etc/netns go
    ok(await cli(env, ['dev', 'pod', 'delete', 'server', '-n', ns]), 'pod delete');
    assert.equal(fs.existsSync(`/var/run/netns/${name}-pod-${ns}-server`), false);
    assert.equal(fs.existsSync(`/etc/netns/${name}-pod-${ns}-server`), false);
    const after = JSON.parse(ok(await cli(env, ['dev', 'pod', 'list', '-o', 'json']), 'pod list after delete').stdout) as Array<{ name: string }>;
    assert.deepEqual(after.map((p) => p.name), ['client']);
    const gone = await podExec({ dir, name: 'client', namespace: ns, command: ['node', '-e', fetchCmd], timeoutMs: 20_000 });
    assert.notEqual(gone.code, 0, 'the deleted server still answers');

    // down
    const dr = ok(await cli(env, ['dev', 'down']), 'dev down');
    assert.match(dr.stdout, /removed/);
    failed = false;
  } finally {
    if (failed) dumpLogs(dir);
    const r = await down({ dir, name });
    assert.deepEqual(r.problems, []);
    assert.deepEqual(mine(), [], 'network namespaces of the cluster remain');
    const etc = fs.existsSync('/etc/netns') ? fs.readdirSync('/etc/netns') : [];
    assert.deepEqual(etc.filter((n) => n.startsWith(`${name}-`)), [], '/etc/netns entries remain');
    for (const pid of pids) assert.equal(running(pid), false, `process ${pid} still runs`);
    assert.equal(fs.existsSync(dir), false, 'the state dir remains');
  }
});
