// L4 data plane overhead: no mesh vs Ambit ambient (ztunnel + HBONE), side by side in one
// run, on a local 2-host `ambit dev` cluster the bench brings up itself (unique name, its
// own state dir) and always tears down (normal end, error, deadline, SIGINT/SIGTERM).
//
//   no mesh : client pod (node1) -> server pod (node2), namespace "bench-plain" (not enrolled)
//   ambient : client pod (node1) -> ztunnel node1 -> HBONE (mTLS, HTTP/2 CONNECT) -> ztunnel node2
//             -> server pod (node2), namespace "bench-mesh" (istio.io/dataplane-mode: ambient)
//
// Same hosts, same programs, same commands; only the namespace differs. Scenarios:
//   throughput  one iperf3 flow, client on node1, server on node2
//   latency     HTTP/1.1 at a fixed rate (default 1,000 req/s), 1 KiB bodies both ways, 16
//               keep-alive connections; open-loop generator measuring from the scheduled send
//               time (dataplane-l4-pod.ts); ztunnel CPU-s per 1,000 requests from /proc/<pid>/stat
//   connrate    new connections per second: wrk with `Connection: close` (connect + 1 request
//               + close per request), 1 and 8 connections in flight
//   rss         VmRSS of node1's ztunnel with 0, 1, 50, 100 enrolled `sleep infinity` pods
//               (fresh ztunnel, before any traffic), and of both ztunnels after the traffic
//
// Every measured window is preceded by a wait for the machine to go quiet and records the CPU
// used by processes outside the bench's cluster ("others"); a window where others used more
// than --idle-threshold cores is retried (--retries) and otherwise marked "disturbed".
// All traffic stays inside the cluster's own network namespaces.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  clusterNetnsPattern, clusterPaths, down, httpGet, listNetns, podDelete, podGet, podRun, status, up, withAdmin, ZTUNNEL_METRICS_PORT,
} from '../deploy/local';
import type { PodInfo } from '../deploy/local';
import { loadAverage, machine, metric, mib, onCleanup, parseFlags, pool, procSample, round, runBench, sleep } from './common';
import {
  Attempt, children, collectProfiles, CpuWatch, fmtNodes, inPod, log, logLines, Marks, measured as measuredIn, median, podSysctls, ProfileSummary,
} from './dataplane-common';

const USAGE = `usage: node dist/bench/dataplane-l4.js [flags]
L4 data plane: no mesh vs Ambit ambient on a local 2-host cluster (root; needs iperf3 and wrk).`;

const F = parseFlags(
  {
    repeats: 3,
    iperfSeconds: 8,
    rate: 1000,
    latencySeconds: 10,
    warmup: 2,
    conns: 16,
    size: 1024,
    connSeconds: 5,
    connConcurrency: '1,8',
    rssPods: '1,50,100',
    skip: '',
    waitIdle: 45,
    idleThreshold: 0.1,
    retries: 2,
    timeout: 1800,
    json: '',
    cpuProf: '',
    logLevel: 'info',
  },
  USAGE,
);

const CLOCK_TICKS = 100;
const POD_TOOL = path.join(__dirname, 'dataplane-l4-pod.js');
const MODES = ['nomesh', 'mesh'] as const;
type Mode = (typeof MODES)[number];
const NS: Record<Mode, string> = { nomesh: 'bench-plain', mesh: 'bench-mesh' };
const RSS_NS = 'bench-rss';
const skip = new Set(F.skip.split(',').map((s) => s.trim()).filter(Boolean));

const t0 = Date.now();
let watch: CpuWatch;

// ---------------------------------------------------------------------------------------
// ztunnels: PIDs (from the supervisor's records), CPU and memory from /proc, metrics.

interface Ztunnel {
  node: string;
  netns: string;
  pid: number;
}

let ztunnels: Ztunnel[] = [];
let clusterDir = '';

async function refreshZtunnels(): Promise<Ztunnel[]> {
  const s = await status({ dir: clusterDir });
  if (!s) throw new Error('the cluster disappeared');
  const out: Ztunnel[] = [];
  for (const h of s.hosts) {
    const z = h.components.ztunnel;
    if (z.pid === undefined) throw new Error(`the ztunnel of ${h.name} is not running (${z.state}, ${z.restarts} restarts): see ${z.log}`);
    out.push({ node: h.name, netns: h.netns, pid: z.pid });
  }
  if (ztunnels.length > 0) {
    for (const z of out) {
      const was = ztunnels.find((x) => x.node === z.node);
      if (was && was.pid !== z.pid) throw new Error(`the ztunnel of ${z.node} restarted during the bench (pid ${was.pid} -> ${z.pid}): see its log`);
    }
  }
  ztunnels = out;
  return out;
}

function zCpu(): Record<string, number> {
  return Object.fromEntries(ztunnels.map((z) => [z.node, procSample(z.pid).cpuSeconds]));
}

function zCpuDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, round(b[k] - a[k], 2)]));
}

async function zMetrics(z: Ztunnel): Promise<string> {
  const r = await httpGet(z.netns, `http://127.0.0.1:${ZTUNNEL_METRICS_PORT}/metrics`, 10_000);
  if (r.status !== 200) throw new Error(`ztunnel ${z.node} metrics: ${r.status}`);
  return r.body;
}

async function tcpOpened(z: Ztunnel, reporter: 'source' | 'destination'): Promise<number> {
  return metric(await zMetrics(z), 'istio_tcp_connections_opened_total', { reporter });
}

// ---------------------------------------------------------------------------------------

/** Runs a measurement after waiting for quiet; retries when others disturbed it. Returns every attempt, the one to use first. */
const measured = <T>(what: string, fn: (w: Marks) => Promise<T>): Promise<Array<Attempt<T>>> => measuredIn(watch, F, what, fn);

// ---------------------------------------------------------------------------------------
// Scenarios.

interface Pods {
  client: PodInfo;
  http: PodInfo;
  iperf: PodInfo;
}

const pods = {} as Record<Mode, Pods>;

interface IperfRun {
  gbps: number;
  mbytesPerS: number;
  retransmits: number;
  ztunnelCpuS: Record<string, number>;
  ztunnelCpuSPerGiB: Record<string, number>;
}

async function iperf(mode: Mode, seconds: number, w?: { start(): void; stop(): void }): Promise<IperfRun> {
  const p = pods[mode];
  const c0 = zCpu();
  w?.start();
  const r = await inPod(p.client, ['iperf3', '-c', p.iperf.ip, '-p', '5201', '-t', String(seconds), '-J'], (seconds + 30) * 1000);
  w?.stop();
  const c1 = zCpu();
  let j: { error?: string; end?: { sum_received?: { bits_per_second: number; bytes: number; seconds: number }; sum_sent?: { retransmits?: number } } };
  try {
    j = JSON.parse(r.stdout) as typeof j;
  } catch {
    throw new Error(`iperf3 (${mode}) printed no JSON (exit ${r.code}): ${r.stderr.trim() || r.stdout.slice(0, 300)}`);
  }
  if (j.error || !j.end?.sum_received) throw new Error(`iperf3 (${mode}): ${j.error ?? 'no result'}`);
  const bps = j.end.sum_received.bits_per_second;
  const cpu = zCpuDelta(c0, c1);
  const gib = j.end.sum_received.bytes / 2 ** 30;
  return {
    gbps: round(bps / 1e9, 2),
    mbytesPerS: round(bps / 8 / 1e6, 0),
    retransmits: j.end.sum_sent?.retransmits ?? 0,
    ztunnelCpuS: cpu,
    ztunnelCpuSPerGiB: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round(v / gib, 2)])),
  };
}

interface LoadResult {
  scheduled: number;
  completed: number;
  errors: number;
  incomplete: number;
  reconnects: number;
  achievedRate: number;
  latencyUs: Record<string, number>;
  serviceUs: Record<string, number>;
  lagUs: Record<string, number>;
}

interface LatencyRun extends LoadResult {
  ztunnelCpuS: Record<string, number>;
  ztunnelCpuSPer1000Req: Record<string, number>;
}

async function loadRun(mode: Mode, rate: number, seconds: number, warmup: number, w?: { start(): void; stop(): void }): Promise<LatencyRun> {
  const p = pods[mode];
  let c0: Record<string, number> | undefined;
  let c1: Record<string, number> | undefined;
  const r = await inPod(
    p.client,
    [process.execPath, POD_TOOL, 'load', '--host', p.http.ip, '--port', '8080', '--rate', String(rate), '--duration', String(seconds), '--warmup', String(warmup), '--conns', String(F.conns), '--size', String(F.size)],
    (seconds + warmup + 40) * 1000,
    (line) => {
      if (line === 'MEASURE_START') {
        c0 = zCpu();
        w?.start();
      } else if (line === 'MEASURE_END') {
        w?.stop();
        c1 = zCpu();
      }
    },
  );
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let res: LoadResult;
  try {
    res = JSON.parse(last) as LoadResult;
  } catch {
    throw new Error(`load generator (${mode}) failed (exit ${r.code}): ${r.stderr.trim().slice(-800) || last}`);
  }
  if (!c0 || !c1) throw new Error(`load generator (${mode}) did not mark its measured window`);
  const cpu = zCpuDelta(c0, c1);
  return {
    ...res,
    ztunnelCpuS: cpu,
    ztunnelCpuSPer1000Req: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round((v / Math.max(1, res.completed)) * 1000, 3)])),
  };
}

interface ConnRun {
  concurrency: number;
  connPerS: number;
  requests: number;
  socketErrors: Record<string, number>;
  non2xx: number;
  ztunnelCpuS: Record<string, number>;
  ztunnelCpuSPer1000Conn: Record<string, number>;
}

async function connRun(mode: Mode, concurrency: number, seconds: number, w?: { start(): void; stop(): void }): Promise<ConnRun> {
  const p = pods[mode];
  const c0 = zCpu();
  w?.start();
  const r = await inPod(p.client, ['wrk', '-t1', `-c${concurrency}`, `-d${seconds}s`, '-H', 'Connection: close', `http://${p.http.ip}:8080/`], (seconds + 30) * 1000);
  w?.stop();
  const c1 = zCpu();
  const out = r.stdout;
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const n = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
  if (r.code !== 0 || !rps || !n) throw new Error(`wrk (${mode}) failed (exit ${r.code}): ${r.stderr.trim() || out.slice(0, 500)}`);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const cpu = zCpuDelta(c0, c1);
  const requests = Number(n[1]);
  return {
    concurrency,
    connPerS: Math.round(Number(rps[1])),
    requests,
    socketErrors: se ? { connect: Number(se[1]), read: Number(se[2]), write: Number(se[3]), timeout: Number(se[4]) } : {},
    non2xx,
    ztunnelCpuS: cpu,
    ztunnelCpuSPer1000Conn: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round((v / Math.max(1, requests)) * 1000, 3)])),
  };
}

/** A short run through each path until it works: servers listening, HBONE sessions up. */
async function warm(mode: Mode): Promise<void> {
  const end = Date.now() + 60_000;
  let lastErr = '';
  for (;;) {
    try {
      const r = await loadRun(mode, 200, 1, 0.2);
      if (r.completed === r.scheduled && r.errors === 0) break;
      lastErr = `${r.completed}/${r.scheduled} completed, ${r.errors} errors`;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`HTTP through ${mode} never worked: ${lastErr}`);
    await sleep(1000);
  }
  for (;;) {
    try {
      await iperf(mode, 1);
      break;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`iperf3 through ${mode} never worked: ${lastErr}`);
    await sleep(1000);
  }
}

// ---------------------------------------------------------------------------------------
// RSS with N enrolled pods on node1.

interface MemFigures {
  /** Median of the VmRSS samples (10 over 5 s), and their range. */
  rssMiB: number;
  rssMinMiB: number;
  rssMaxMiB: number;
  /** VmHWM: the peak RSS of the process so far. */
  hwmMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
}

interface RssPoint {
  enrolledPods: number;
  node1: MemFigures;
  node2: MemFigures;
  createSeconds?: number;
}

/** RSS moves by +-10 MiB with garbage collection and heap shrinking: sample it 10 times over 5 s. */
async function memOf(z: Ztunnel, samples = 10): Promise<MemFigures> {
  const rss: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await sleep(500);
    rss.push(procSample(z.pid).rssBytes);
  }
  const s = procSample(z.pid);
  const m = await zMetrics(z);
  return {
    rssMiB: mib(median(rss)), rssMinMiB: mib(Math.min(...rss)), rssMaxMiB: mib(Math.max(...rss)), hwmMiB: mib(s.hwmBytes),
    heapUsedMiB: mib(metric(m, 'nodejs_heap_size_used_bytes')), externalMiB: mib(metric(m, 'nodejs_external_memory_bytes')),
  };
}

/** Seconds since the process started (/proc/<pid>/stat field 22 against /proc/uptime). */
function procAgeS(pid: number): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[19]) / CLOCK_TICKS;
  return Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]) - start;
}

async function enrolledOn(z: Ztunnel): Promise<number> {
  return metric(await zMetrics(z), 'ambit_ztunnel_enrolled_pods');
}

async function waitEnrolled(z: Ztunnel, n: number): Promise<void> {
  const end = Date.now() + 120_000;
  for (;;) {
    const have = await enrolledOn(z);
    if (have === n) return;
    if (Date.now() > end) throw new Error(`ztunnel ${z.node} serves ${have} pods, expected ${n}, after 120 s`);
    await sleep(500);
  }
}

async function rssScenario(counts: number[]): Promise<{ points: RssPoint[]; afterDelete?: RssPoint; startupHeapShrunk: boolean }> {
  const z1 = ztunnels.find((z) => z.node === 'node1')!;
  const z2 = ztunnels.find((z) => z.node === 'node2')!;
  const points: RssPoint[] = [];
  const settle = async (n: number, createSeconds?: number) => {
    await waitEnrolled(z1, n);
    await sleep(2000);
    const [m1, m2] = await Promise.all([memOf(z1), memOf(z2)]);
    const p = { enrolledPods: n, node1: m1, node2: m2, createSeconds };
    points.push(p);
    log(`  rss: ${n} pods enrolled on node1: node1 ztunnel RSS ${p.node1.rssMiB} MiB (${p.node1.rssMinMiB}-${p.node1.rssMaxMiB}; heap used ${p.node1.heapUsedMiB}), node2 ztunnel ${p.node2.rssMiB} MiB`);
    return p;
  };
  // A fresh Node process keeps its start-up heap (~85 MiB RSS here) until V8's memory reducer
  // shrinks it once allocation goes quiet, typically 15-60 s after start (then ~70 MiB).
  // Measure the steady state: wait (at most 120 s) for node1's ztunnel to drop from its start-up level.
  const startRss = procSample(z1.pid).rssBytes;
  const shrinkEnd = Date.now() + 120_000;
  log(`  rss: node1 ztunnel at ${mib(startRss)} MiB; waiting up to 120 s for V8 to shrink the start-up heap`);
  let shrunk = false;
  while (Date.now() < shrinkEnd) {
    if (procSample(z1.pid).rssBytes < startRss - 5 * 1024 * 1024) {
      shrunk = true;
      break;
    }
    await sleep(1000);
  }
  log(shrunk ? `  rss: shrunk to ${mib(procSample(z1.pid).rssBytes)} MiB after ${round(procAgeS(z1.pid), 0)} s` : '  rss: no shrink within 120 s; measuring anyway');
  await settle(0);
  let have = 0;
  const names: string[] = [];
  for (const n of counts) {
    const t = Date.now();
    const todo = Array.from({ length: n - have }, (_v, i) => `rss-${have + i + 1}`);
    await pool(todo.length, 4, async (i) => {
      const p = await podRun({ dir: clusterDir, name: todo[i], namespace: RSS_NS, node: 'node1', command: ['sleep', 'infinity'], cwd: '/' });
      if (p.enrolled === false) throw new Error(`pod ${RSS_NS}/${todo[i]} was not enrolled`);
      names.push(todo[i]);
    });
    have = n;
    await settle(n, round((Date.now() - t) / 1000, 1));
  }
  const t = Date.now();
  await pool(names.length, 4, (i) => podDelete({ dir: clusterDir, name: names[i], namespace: RSS_NS }));
  log(`  rss: deleted ${names.length} pods in ${round((Date.now() - t) / 1000, 1)} s`);
  const afterDelete = await settle(0);
  points.pop();
  return { points, afterDelete, startupHeapShrunk: shrunk };
}

const profiles: Record<string, Record<string, unknown>> = {};

/** With --cpu-prof: profiles both ztunnels over `fn` (SIGUSR2 starts, SIGUSR2 stops and writes). */
async function profiled<T>(scenario: string, fn: () => Promise<T>): Promise<T> {
  if (!F.cpuProf || !scenario.includes('-mesh-')) return fn();
  const dir = path.resolve(F.cpuProf);
  for (const z of ztunnels) process.kill(z.pid, 'SIGUSR2');
  try {
    return await fn();
  } finally {
    for (const z of ztunnels) process.kill(z.pid, 'SIGUSR2');
    profiles[scenario] = await collectProfiles(dir, scenario, ztunnels.map((z) => ({ pid: z.pid, name: `ztunnel-${z.node}`, key: z.node })));
  }
}

runBench('dataplane-l4', F.timeout * 1000, async () => {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  for (const [tool, args] of [['iperf3', ['--version']], ['wrk', ['-v']]] as const) {
    const r = await new Promise<number | null>((res) => spawn(tool, [...args], { stdio: 'ignore' }).on('error', () => res(-1)).on('close', (c) => res(c)));
    if (r === -1) throw new Error(`${tool} is missing: apt-get install -y ${tool} (scripts/setup.sh installs it)`);
  }
  const name = `abl4-${randomBytes(3).toString('hex')}`;
  clusterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-bench-l4-'));
  let supervisorPid: number | undefined;
  watch = new CpuWatch(name, () => supervisorPid);
  // Registered before `up`: a half-created cluster is removed too. Cleanups run in reverse order.
  onCleanup(() => fs.rmSync(clusterDir, { recursive: true, force: true }));
  let tornDown = false;
  const teardown = async () => {
    if (tornDown) return;
    tornDown = true;
    for (const c of children) c.kill('SIGKILL');
    log(`tearing down cluster ${name}`);
    const r = await down({ dir: clusterDir, name });
    if (r.problems.length) log(`  down: ${r.problems.join('; ')}`);
    const left = listNetns().filter((n) => clusterNetnsPattern(name).test(n));
    if (left.length) log(`  WARNING: netns left behind: ${left.join(' ')}`);
  };
  onCleanup(teardown);

  if (F.cpuProf) {
    fs.mkdirSync(F.cpuProf, { recursive: true });
    // Node 20 refuses --cpu-prof in NODE_OPTIONS: a preloaded module profiles on SIGUSR2 instead.
    // Only the processes `up` starts (supervisor, control plane, agents, ztunnels) inherit it.
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(__dirname, 'cpu-profile-preload.js')}`.trim();
    process.env.AMBIT_BENCH_CPU_PROF_DIR = path.resolve(F.cpuProf);
  }
  log(`bringing up cluster ${name} (2 hosts) in ${clusterDir}`);
  const loadAtStart = loadAverage();
  await up({ dir: clusterDir, name, nodes: 2, logLevel: F.logLevel, progress: (l) => log(`  ${l}`) });
  if (F.cpuProf) {
    delete process.env.NODE_OPTIONS;
    delete process.env.AMBIT_BENCH_CPU_PROF_DIR;
  }
  const st = await status({ dir: clusterDir });
  supervisorPid = st?.supervisor.pid;
  await refreshZtunnels();
  log(`ztunnels: ${ztunnels.map((z) => `${z.node} pid ${z.pid}`).join(', ')}`);
  const paths = clusterPaths({ dir: clusterDir });
  await withAdmin(paths, (c) => c.apply([
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.nomesh } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.mesh, labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: RSS_NS, labels: { 'istio.io/dataplane-mode': 'ambient' } } },
  ]));

  const git = (args: string[]) => spawnSync('git', args, { cwd: path.resolve(__dirname, '..', '..'), encoding: 'utf8' }).stdout?.trim() ?? '';
  const result: Record<string, unknown> = {
    bench: 'dataplane-l4', startedAt: new Date(t0).toISOString(), machine: machine(), loadAverageAtStart: loadAtStart, cluster: name,
    commit: git(['rev-parse', '--short', 'HEAD']) || 'unknown', uncommittedChanges: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    config: { ...F, podTool: POD_TOOL },
  };

  // 1. RSS first, on a fresh ztunnel (no traffic yet, no other pods on node1).
  const rssCounts = F.rssPods.split(',').map(Number).filter((n) => n > 0).sort((a, b) => a - b);
  if (!skip.has('rss')) {
    log(`rss: ${rssCounts.join(', ')} enrolled pods (sleep infinity) in namespace ${RSS_NS} on node1`);
    result.rss = await rssScenario(rssCounts);
  }

  // 2. Traffic pods: the same programs in both namespaces.
  for (const mode of MODES) {
    const ns = NS[mode];
    const http = await podRun({ dir: clusterDir, name: 'http', namespace: ns, node: 'node2', command: [process.execPath, POD_TOOL, 'server', '--port', '8080', '--size', String(F.size)], cwd: '/' });
    const iperfPod = await podRun({ dir: clusterDir, name: 'iperf', namespace: ns, node: 'node2', command: ['iperf3', '-s', '-p', '5201'], cwd: '/' });
    const client = await podRun({ dir: clusterDir, name: 'client', namespace: ns, node: 'node1', command: ['sleep', 'infinity'], cwd: '/' });
    pods[mode] = { client, http, iperf: iperfPod };
    for (const p of [client, http, iperfPod]) podSysctls(p);
    const want = mode === 'mesh';
    for (const p of [http, iperfPod, client]) {
      const g = podGet({ dir: clusterDir, name: p.name, namespace: ns });
      if (g.enrolled !== want) throw new Error(`pod ${ns}/${p.name} enrolled=${g.enrolled}, expected ${want}`);
    }
    log(`${mode}: client ${client.ip} (node1) -> http ${http.ip}:8080, iperf3 ${iperfPod.ip}:5201 (node2); enrolled: ${want}`);
  }
  const z1 = ztunnels.find((z) => z.node === 'node1')!;
  const z2 = ztunnels.find((z) => z.node === 'node2')!;
  for (const mode of MODES) {
    const o1 = await tcpOpened(z1, 'source');
    const o2 = await tcpOpened(z2, 'destination');
    await warm(mode);
    const d1 = (await tcpOpened(z1, 'source')) - o1;
    const d2 = (await tcpOpened(z2, 'destination')) - o2;
    // Proof of the path: ambient traffic is counted by both ztunnels, plain traffic by neither.
    if (mode === 'mesh' && (d1 === 0 || d2 === 0)) throw new Error(`mesh traffic did not go through the ztunnels (opened: node1 source +${d1}, node2 destination +${d2})`);
    if (mode === 'nomesh' && (d1 !== 0 || d2 !== 0)) throw new Error(`plain traffic went through a ztunnel (opened: node1 +${d1}, node2 +${d2})`);
    log(`${mode}: path checked (ztunnel connections opened: node1 +${d1}, node2 +${d2})`);
  }

  const order = (rep: number): Mode[] => (rep % 2 === 0 ? ['nomesh', 'mesh'] : ['mesh', 'nomesh']);
  const summarize = <T>(runs: Array<{ mode: Mode; rep: number; attempts: Array<Attempt<T>> }>, mode: Mode) => runs.filter((r) => r.mode === mode).map((r) => r.attempts[0]);

  // 3. Throughput.
  if (!skip.has('throughput')) {
    const runs: Array<{ mode: Mode; rep: number; attempts: Array<Attempt<IperfRun>> }> = [];
    for (let rep = 0; rep < F.repeats; rep++) {
      for (const mode of order(rep)) {
        const attempts = await profiled(`throughput-${mode}-${rep + 1}`, () => measured(`throughput ${mode} #${rep + 1}`, (w) => iperf(mode, F.iperfSeconds, w)));
        runs.push({ mode, rep, attempts });
        const a = attempts[0];
        log(`throughput ${mode.padEnd(6)} #${rep + 1}: ${a.value.gbps} Gbit/s (${a.value.mbytesPerS} MB/s), retransmits ${a.value.retransmits}, ztunnel CPU-s ${fmtNodes(a.value.ztunnelCpuS)}; others ${a.window.othersCores} cores${a.disturbed ? ' DISTURBED' : ''}`);
      }
    }
    const med = (mode: Mode) => {
      const xs = summarize(runs, mode);
      return {
        gbps: round(median(xs.map((x) => x.value.gbps)), 2),
        mbytesPerS: Math.round(median(xs.map((x) => x.value.mbytesPerS))),
        ztunnelCpuSPerGiB: Object.fromEntries(ztunnels.map((z) => [z.node, round(median(xs.map((x) => x.value.ztunnelCpuSPerGiB[z.node])), 2)])),
        runsGbps: xs.map((x) => x.value.gbps),
        disturbedRuns: xs.filter((x) => x.disturbed).length,
      };
    };
    const nm = med('nomesh');
    const m = med('mesh');
    const ratio = round(m.gbps / nm.gbps, 3);
    result.throughput = {
      tool: `iperf3 -c <server> -p 5201 -t ${F.iperfSeconds} -J (one TCP flow; receiver-side rate)`,
      nomesh: nm, mesh: m, ratio, target: { minRatio: 0.35, met: ratio >= 0.35 },
      runs: runs.map((r) => ({ mode: r.mode, rep: r.rep + 1, ...r.attempts[0].value, window: r.attempts[0].window, disturbed: r.attempts[0].disturbed, discardedAttempts: r.attempts.slice(1).map((x) => ({ gbps: x.value.gbps, window: x.window })) })),
    };
  }

  // 4. Latency at a fixed rate, and ztunnel CPU per 1,000 requests.
  if (!skip.has('latency')) {
    const runs: Array<{ mode: Mode; rep: number; attempts: Array<Attempt<LatencyRun>> }> = [];
    for (let rep = 0; rep < F.repeats; rep++) {
      for (const mode of order(rep)) {
        const attempts = await profiled(`latency-${mode}-${rep + 1}`, () => measured(`latency ${mode} #${rep + 1}`, (w) => loadRun(mode, F.rate, F.latencySeconds, F.warmup, w)));
        runs.push({ mode, rep, attempts });
        const a = attempts[0].value;
        log(`latency ${mode.padEnd(6)} #${rep + 1}: ${a.completed}/${a.scheduled} ok at ${a.achievedRate}/s; from schedule p50/p90/p99 ${a.latencyUs.p50}/${a.latencyUs.p90}/${a.latencyUs.p99} us; service p50/p99 ${a.serviceUs.p50}/${a.serviceUs.p99} us; lag p50 ${a.lagUs.p50} us; ztunnel CPU-s/1000 req ${fmtNodes(a.ztunnelCpuSPer1000Req)}; others ${attempts[0].window.othersCores}${attempts[0].disturbed ? ' DISTURBED' : ''}`);
        if (a.errors || a.incomplete) log(`  WARNING: ${a.errors} errors, ${a.incomplete} incomplete`);
      }
    }
    const keys = ['p50', 'p90', 'p99', 'p999'];
    const med = (mode: Mode) => {
      const xs = summarize(runs, mode).map((x) => x.value);
      const pick = (f: (x: LatencyRun) => Record<string, number>) => Object.fromEntries(keys.map((k) => [k, Math.round(median(xs.map((x) => f(x)[k])))]));
      return {
        latencyUs: pick((x) => x.latencyUs), serviceUs: pick((x) => x.serviceUs), lagUs: pick((x) => x.lagUs),
        ztunnelCpuSPer1000Req: Object.fromEntries(ztunnels.map((z) => [z.node, round(median(xs.map((x) => x.ztunnelCpuSPer1000Req[z.node])), 3)])),
        errors: xs.reduce((n, x) => n + x.errors + x.incomplete, 0),
        achievedRate: Math.round(median(xs.map((x) => x.achievedRate))),
        disturbedRuns: summarize(runs, mode).filter((x) => x.disturbed).length,
      };
    };
    const nm = med('nomesh');
    const m = med('mesh');
    const added = (f: (x: typeof nm) => Record<string, number>) => Object.fromEntries(keys.map((k) => [k, f(m)[k] - f(nm)[k]]));
    const ratio = (f: (x: typeof nm) => Record<string, number>) => Object.fromEntries(keys.map((k) => [k, round(f(m)[k] / f(nm)[k], 2)]));
    // Added p50 per repeat (pairs run back to back), to show the spread.
    const pairs = Array.from({ length: F.repeats }, (_v, rep) => {
      const a = runs.find((r) => r.rep === rep && r.mode === 'nomesh')!.attempts[0].value;
      const b = runs.find((r) => r.rep === rep && r.mode === 'mesh')!.attempts[0].value;
      return { rep: rep + 1, addedP50Us: b.latencyUs.p50 - a.latencyUs.p50, addedServiceP50Us: b.serviceUs.p50 - a.serviceUs.p50 };
    });
    const addedUs = added((x) => x.latencyUs);
    const cpuMax = Math.max(...Object.values(m.ztunnelCpuSPer1000Req));
    result.latency = {
      tool: `dataplane-l4-pod.js load: open-loop ${F.rate} req/s, POST ${F.size} B -> ${F.size} B, ${F.conns} keep-alive HTTP/1.1 connections, ${F.warmup} s warm-up + ${F.latencySeconds} s measured; latency from the scheduled send time`,
      nomesh: nm, mesh: m, addedUs, ratio: ratio((x) => x.latencyUs), addedServiceUs: added((x) => x.serviceUs), pairs,
      targets: {
        addedP50: { maxUs: 300, valueUs: addedUs.p50, met: addedUs.p50 <= 300 },
        cpuPer1000Req: { maxCpuS: 0.15, perZtunnel: m.ztunnelCpuSPer1000Req, met: cpuMax <= 0.15 },
      },
      runs: runs.map((r) => ({ mode: r.mode, rep: r.rep + 1, ...r.attempts[0].value, window: r.attempts[0].window, disturbed: r.attempts[0].disturbed, discardedAttempts: r.attempts.length - 1 })),
    };
  }

  // 5. New connections per second.
  if (!skip.has('connrate')) {
    const out: Record<string, unknown> = {};
    // Unmeasured warm-up: the first thousands of connections through a ztunnel run cold (JIT) code.
    for (const mode of MODES) await connRun(mode, 8, 3);
    for (const conc of F.connConcurrency.split(',').map(Number).filter((n) => n > 0)) {
      const runs: Array<{ mode: Mode; rep: number; attempts: Array<Attempt<ConnRun>> }> = [];
      for (let rep = 0; rep < F.repeats; rep++) {
        for (const mode of order(rep)) {
          const attempts = await profiled(`connrate-c${conc}-${mode}-${rep + 1}`, () => measured(`connrate c${conc} ${mode} #${rep + 1}`, (w) => connRun(mode, conc, F.connSeconds, w)));
          runs.push({ mode, rep, attempts });
          const a = attempts[0].value;
          log(`connrate c=${conc} ${mode.padEnd(6)} #${rep + 1}: ${a.connPerS} conn/s (${a.requests} in ${F.connSeconds} s, errors ${JSON.stringify(a.socketErrors)}, non-2xx ${a.non2xx}); ztunnel CPU-s/1000 conn ${fmtNodes(a.ztunnelCpuSPer1000Conn)}; others ${attempts[0].window.othersCores}${attempts[0].disturbed ? ' DISTURBED' : ''}`);
        }
      }
      const med = (mode: Mode) => {
        const xs = summarize(runs, mode).map((x) => x.value);
        return {
          connPerS: Math.round(median(xs.map((x) => x.connPerS))),
          runs: xs.map((x) => x.connPerS),
          ztunnelCpuSPer1000Conn: Object.fromEntries(ztunnels.map((z) => [z.node, round(median(xs.map((x) => x.ztunnelCpuSPer1000Conn[z.node])), 3)])),
          errors: xs.reduce((n, x) => n + Object.values(x.socketErrors).reduce((a, b) => a + b, 0) + x.non2xx, 0),
          disturbedRuns: summarize(runs, mode).filter((x) => x.disturbed).length,
        };
      };
      const nm = med('nomesh');
      const m = med('mesh');
      out[`c${conc}`] = {
        tool: `wrk -t1 -c${conc} -d${F.connSeconds}s -H 'Connection: close' (one request per connection)`,
        nomesh: nm, mesh: m, ratio: round(m.connPerS / nm.connPerS, 3),
        runs: runs.map((r) => ({ mode: r.mode, rep: r.rep + 1, ...r.attempts[0].value, window: r.attempts[0].window, disturbed: r.attempts[0].disturbed })),
      };
    }
    result.connRate = out;
  }

  // 6. Memory after the traffic.
  await refreshZtunnels();
  result.ztunnelMemoryAfterTraffic = Object.fromEntries(await Promise.all(ztunnels.map(async (z) => [z.node, { ...(await memOf(z)), enrolledPods: await enrolledOn(z) }] as const)));
  if (result.rss) {
    const r = result.rss as { points: RssPoint[] };
    const at100 = r.points.find((p) => p.enrolledPods === Math.max(...rssCounts));
    // Judged on the highest of the samples: the target is a ceiling. 80 MB read as 80 MiB (83.9 MB), the lenient reading.
    if (at100) (result.rss as Record<string, unknown>).target = { pods: at100.enrolledPods, maxMiB: 80, rssMaxMiB: at100.node1.rssMaxMiB, met: at100.node1.rssMaxMiB <= 80 };
  }
  // What the ztunnels complained about (warnings and errors in their logs).
  result.ztunnelLogs = Object.fromEntries(ztunnels.map((z) => [z.node, logLines(path.join(clusterDir, 'logs', `${z.node}-ztunnel.log`))]));
  result.durationS = round((Date.now() - t0) / 1000, 0);

  if (F.cpuProf) result.cpuProfiles = profiles;

  report(result);
});

// ---------------------------------------------------------------------------------------

function report(r: Record<string, unknown>): void {
  const json = JSON.stringify(r, null, 2);
  process.stdout.write(`${json}\n`);
  if (F.json) fs.writeFileSync(F.json, `${json}\n`);
  const rows: string[][] = [['', 'no mesh', 'Ambit L4', 'mesh / no mesh', 'added', 'target']];
  const t = r.throughput as undefined | { nomesh: { gbps: number; mbytesPerS: number }; mesh: { gbps: number; mbytesPerS: number; ztunnelCpuSPerGiB: Record<string, number> }; ratio: number; target: { met: boolean } };
  if (t) {
    rows.push(['throughput, 1 flow (iperf3)', `${t.nomesh.gbps} Gbit/s (${t.nomesh.mbytesPerS} MB/s)`, `${t.mesh.gbps} Gbit/s (${t.mesh.mbytesPerS} MB/s)`, `${round(t.ratio * 100, 1)} %`, '', `>= 35 %: ${t.target.met ? 'met' : 'NOT met'}`]);
  }
  const l = r.latency as undefined | {
    nomesh: { latencyUs: Record<string, number>; serviceUs: Record<string, number>; ztunnelCpuSPer1000Req: Record<string, number> };
    mesh: { latencyUs: Record<string, number>; serviceUs: Record<string, number>; ztunnelCpuSPer1000Req: Record<string, number> };
    addedUs: Record<string, number>; addedServiceUs: Record<string, number>; ratio: Record<string, number>;
    targets: { addedP50: { met: boolean }; cpuPer1000Req: { met: boolean } };
  };
  if (l) {
    for (const k of ['p50', 'p90', 'p99']) {
      rows.push([`latency ${k} @ ${F.rate}/s (from schedule)`, `${l.nomesh.latencyUs[k]} us`, `${l.mesh.latencyUs[k]} us`, `x${l.ratio[k]}`, `+${l.addedUs[k]} us`, k === 'p50' ? `<= +300 us: ${l.targets.addedP50.met ? 'met' : 'NOT met'}` : '']);
    }
    rows.push([`service time p50 / p99 (write -> response)`, `${l.nomesh.serviceUs.p50} / ${l.nomesh.serviceUs.p99} us`, `${l.mesh.serviceUs.p50} / ${l.mesh.serviceUs.p99} us`, '', `+${l.addedServiceUs.p50} / +${l.addedServiceUs.p99} us`, '']);
    rows.push(['ztunnel CPU-s per 1,000 requests', fmtNodes(l.nomesh.ztunnelCpuSPer1000Req), fmtNodes(l.mesh.ztunnelCpuSPer1000Req), '', '', `<= 0.15 each: ${l.targets.cpuPer1000Req.met ? 'met' : 'NOT met'}`]);
  }
  const c = r.connRate as undefined | Record<string, { nomesh: { connPerS: number }; mesh: { connPerS: number }; ratio: number }>;
  if (c) for (const [k, v] of Object.entries(c)) rows.push([`new connections/s, ${k.slice(1)} in flight (wrk)`, `${v.nomesh.connPerS}/s`, `${v.mesh.connPerS}/s`, `${round(v.ratio * 100, 1)} %`, '', '']);
  if (t) rows.push(['ztunnel CPU-s per GiB (iperf3)', '', fmtNodes(t.mesh.ztunnelCpuSPerGiB), '', '', '']);
  const rss = r.rss as undefined | { points: RssPoint[]; afterDelete?: RssPoint; target?: { met: boolean } };
  if (rss) {
    const fmt = (m: MemFigures) => `${m.rssMiB} MiB (${m.rssMinMiB}-${m.rssMaxMiB}; heap ${m.heapUsedMiB})`;
    for (const p of rss.points) rows.push([`ztunnel RSS, ${p.enrolledPods} pods on node1`, '', fmt(p.node1), '', '', p === rss.points[rss.points.length - 1] && rss.target ? `max <= 80 MiB: ${rss.target.met ? 'met' : 'NOT met'}` : '']);
    if (rss.afterDelete) rows.push(['ztunnel RSS, pods deleted again', '', fmt(rss.afterDelete.node1), '', '', '']);
  }
  const after = r.ztunnelMemoryAfterTraffic as Record<string, MemFigures> | undefined;
  if (after) rows.push(['ztunnel RSS after the traffic (peak)', '', Object.entries(after).map(([k, v]) => `${k} ${v.rssMiB} (${v.hwmMiB}) MiB`).join(', '), '', '', '']);
  const w = rows[0].map((_h, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const lines = rows.map((row) => row.map((cell, i) => (cell ?? '').padEnd(w[i])).join('  ').trimEnd());
  lines.splice(1, 0, w.map((n) => '-'.repeat(n)).join('  '));
  process.stdout.write(`\nL4 data plane, no mesh vs Ambit ambient (2 hosts; client node1, server node2; medians of ${F.repeats} runs)\n${lines.join('\n')}\n`);
  const disturbed: string[] = [];
  for (const key of ['throughput', 'latency'] as const) {
    const x = r[key] as undefined | { nomesh: { disturbedRuns: number }; mesh: { disturbedRuns: number } };
    if (x && x.nomesh.disturbedRuns + x.mesh.disturbedRuns > 0) disturbed.push(`${key}: ${x.nomesh.disturbedRuns + x.mesh.disturbedRuns} run(s)`);
  }
  process.stdout.write(disturbed.length ? `disturbed by other processes (> ${F.idleThreshold} cores): ${disturbed.join(', ')}\n` : `no measured window was disturbed by other processes (> ${F.idleThreshold} cores)\n`);
  type Prof = Partial<ProfileSummary> & { error?: string };
  const prof = r.cpuProfiles as undefined | Record<string, Record<string, Prof>>;
  for (const [scenario, byNode] of Object.entries(prof ?? {})) {
    if (!scenario.endsWith('-1')) continue; // first repeat only; every profile is in the JSON
    for (const [node, p] of Object.entries(byNode)) {
      if (!p.top) {
        process.stdout.write(`\n${scenario}, ztunnel ${node}: ${p.error}\n`);
        continue;
      }
      process.stdout.write(`\n${scenario}, ztunnel ${node} CPU profile (${p.totalMs} ms non-idle); self time by area: ${p.byArea!.slice(0, 8).map((a) => `${a.area} ${a.pct}%`).join(', ')}\n`);
      for (const f of p.top.slice(0, 12)) process.stdout.write(`  ${String(f.pct).padStart(5)}%  ${String(f.selfMs).padStart(6)} ms  ${f.fn}\n`);
      process.stdout.write(`  Ambit functions, inclusive: ${(p.ambitInclusive ?? []).slice(0, 8).map((f) => `${f.fn} ${f.pct}%`).join('; ')}\n`);
    }
  }
}
