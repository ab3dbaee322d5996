// L7 data plane overhead: no mesh vs Ambit L4 (ztunnels only) vs Ambit with a waypoint (HTTP port,
// and a TCP port the waypoint only carries as bytes), side by side in ONE run, on a local 2-host `ambit dev` cluster the bench brings up itself (unique name,
// its own state dir) and always tears down (normal end, error, deadline, SIGINT/SIGTERM).
//
//   nomesh   : client pod (node1) -> server pod (node2)                 namespace bench-plain (not enrolled), to the pod IP
//   l4       : client pod (node1) -> ztunnel node1 -> HBONE -> ztunnel node2 -> server pod (node2)
//                                                                       namespace bench-l4 (ambient), to the Service VIP
//   waypoint : client pod (node1) -> ztunnel node1 -> HBONE -> waypoint pod (--waypoint-node, default node2;
//              `ambit waypoint` in its own netns, L7) -> HBONE -> ztunnel node2 -> server pod (node2)
//                                                                       namespace bench-wp (ambient + istio.io/use-waypoint), to the Service VIP
//   wptcp    : the same path, client, server and waypoint as `waypoint`, but to the VIP of a second Service
//              (bench-wp/raw, port 8080 with appProtocol: tcp, same server pod): the waypoint carries the
//              bytes between its two HBONE legs without parsing HTTP. waypoint - wptcp is the waypoint's HTTP
//              processing; wptcp - l4 the extra hop through a Node process; wptcp's waypoint CPU the floor.
//
// Same hosts, same programs (dataplane-l4-pod.js server / load), same commands; only the
// namespace (and the address: a Service VIP where a mesh can resolve one) differs. Measured:
// latency at a fixed rate (default 1,000 req/s, 1 KiB bodies both ways, 16 keep-alive HTTP/1.1
// connections) with the open-loop generator of the L4 bench, and CPU-s per 1,000 requests of the
// waypoint process and of both ztunnels (/proc/<pid>/stat over the measured window).
//
// Before measuring, the path is checked: the ztunnels' istio_tcp_connections_opened_total grows for
// the mesh namespaces only, the waypoint's istio_requests_total (its :15020 in its pod netns) grows
// for the waypoint mode only, and its istio_tcp_connections_opened_total for Service raw for the
// wptcp mode only. --modes picks the modes (default all four); they rotate (ABCD, BCDA, ...);
// every figure is the median over --repeats runs. Each measured window waits for the machine to go
// quiet first; a window where processes outside the cluster used more than --idle-threshold cores
// is retried (--retries) and otherwise marked "disturbed". --cpu-prof DIR writes V8 profiles of the
// ztunnels and the waypoint; --perf DIR runs Linux perf on the waypoint (all threads, native, kernel).
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clusterPaths, httpGet, podGet, podList, podRun, status, up, waypointPodName, withAdmin, ZTUNNEL_METRICS_PORT } from '../deploy/local';
import type { PodInfo } from '../deploy/local';
import { NODE_ANNOTATION } from '../lib/api/annotations';
import { LABEL_DATAPLANE_MODE, LABEL_USE_WAYPOINT, Resource, WAYPOINT_GATEWAY_CLASS } from '../lib/api/resource';
import { AMBIT_BIN, loadAverage, machine, metric, mib, parseFlags, procSample, round, runBench, sleep } from './common';
import {
  Attempt, children, collectProfiles, CpuWatch, fmtNodes, inPod, log, logLines, Marks, measured as measuredIn, median, podSysctls, profileTop, ProfileSummary, registerClusterTeardown, requireTools,
} from './dataplane-common';

const USAGE = `usage: node dist/bench/dataplane-l7.js [flags]
L7 data plane: no mesh vs Ambit L4 vs Ambit with a waypoint (HTTP port, and a TCP port) on a local 2-host cluster (root).
--modes: comma list of nomesh, l4, waypoint (HTTP port through the waypoint), wptcp (appProtocol tcp port through the same waypoint).`;

const F = parseFlags(
  {
    /** Comma list of the modes to run, rotated per repeat in this canonical order: nomesh, l4, waypoint, wptcp. */
    modes: 'nomesh,l4,waypoint,wptcp',
    repeats: 3,
    rate: 1000,
    latencySeconds: 10,
    warmup: 2,
    /** Unmeasured seconds at --rate per mode before the first measured run (cold JIT in the proxies). */
    prewarm: 5,
    conns: 16,
    size: 1024,
    waypointNode: 'node2',
    waitIdle: 45,
    idleThreshold: 0.1,
    retries: 2,
    timeout: 900,
    json: '',
    cpuProf: '',
    /** DIR: Linux perf on the waypoint process over each measured window of the waypoint and wptcp modes (native and kernel time, syscalls per request). */
    perf: '',
    logLevel: 'info',
  },
  USAGE,
);

const POD_TOOL = path.join(__dirname, 'dataplane-l4-pod.js');
const ALL_MODES = ['nomesh', 'l4', 'waypoint', 'wptcp'] as const;
type Mode = (typeof ALL_MODES)[number];
/** The selected modes (--modes), in the canonical order: the rotation starts from it. */
const MODES: Mode[] = (() => {
  const want = F.modes.split(',').map((x) => x.trim()).filter(Boolean);
  const bad = want.filter((x) => !(ALL_MODES as readonly string[]).includes(x));
  if (bad.length || !want.length) throw new Error(`--modes: ${bad.length ? `unknown mode(s) ${bad.join(', ')}` : 'empty'}; pick from ${ALL_MODES.join(',')}`);
  return ALL_MODES.filter((m) => want.includes(m));
})();
const has = (m: Mode) => MODES.includes(m);
const NS: Record<Mode, string> = { nomesh: 'bench-plain', l4: 'bench-l4', waypoint: 'bench-wp', wptcp: 'bench-wp' };
const TITLE: Record<Mode, string> = { nomesh: 'no mesh', l4: 'Ambit L4', waypoint: 'Ambit + waypoint', wptcp: 'Ambit + waypoint, TCP port' };
/** The Service each mesh mode sends to (its VIP); no mesh sends to the server pod's IP. */
const SERVICE: Record<Mode, string> = { nomesh: '', l4: 'http', waypoint: 'http', wptcp: 'raw' };
/** The modes whose traffic goes through the waypoint (profiled with --cpu-prof, perf-recorded with --perf). */
const THROUGH_WAYPOINT: readonly Mode[] = ['waypoint', 'wptcp'];
const GATEWAY = 'waypoint';
const WAYPOINT_POD = waypointPodName(GATEWAY);
const WAYPOINT_METRICS = 'http://127.0.0.1:15020/metrics';
const INSPECTOR_PORT = 9229;
const PORT = 8080;

const t0 = Date.now();
let watch: CpuWatch;
let clusterDir = '';
const measured = <T>(what: string, fn: (w: Marks) => Promise<T>): Promise<Array<Attempt<T>>> => measuredIn(watch, F, what, fn);

// ---------------------------------------------------------------------------------------
// The measured processes: both ztunnels (PIDs from the supervisor's records via status()) and the
// waypoint (its pod's PID from podList(), i.e. the supervisor's processes.json).

interface Proxy {
  /** "ztunnel-node1", "ztunnel-node2", "waypoint". */
  key: string;
  pid: number;
  netns: string;
}

let ztunnels: Proxy[] = [];
let waypoint: Proxy & { pod: PodInfo };

async function findZtunnels(): Promise<Proxy[]> {
  const s = await status({ dir: clusterDir });
  if (!s) throw new Error('the cluster disappeared');
  return s.hosts.map((h) => {
    const z = h.components.ztunnel;
    if (z.pid === undefined) throw new Error(`the ztunnel of ${h.name} is not running (${z.state}, ${z.restarts} restarts): see ${z.log}`);
    return { key: `ztunnel-${h.name}`, pid: z.pid, netns: h.netns };
  });
}

function findWaypoint(): Proxy & { pod: PodInfo } {
  const pod = podList({ dir: clusterDir, namespace: NS.waypoint }).find((p) => p.name === WAYPOINT_POD);
  if (!pod) throw new Error(`no waypoint pod ${NS.waypoint}/${WAYPOINT_POD}: the cluster's waypoint controller did not start it`);
  if (pod.pid === undefined) throw new Error(`waypoint pod ${NS.waypoint}/${WAYPOINT_POD} is ${pod.state} (${pod.restarts} restarts): see ${pod.log}`);
  // The pod's PID is the `ambit waypoint` node process itself (ip netns exec, unshare and sh all exec).
  const cmdline = fs.readFileSync(`/proc/${pod.pid}/cmdline`, 'utf8').split('\0');
  if (!cmdline.includes('waypoint') || !cmdline.includes(GATEWAY) || !/node$/.test(path.basename(cmdline[0]))) {
    throw new Error(`pid ${pod.pid} of pod ${WAYPOINT_POD} is not the waypoint's node process: ${cmdline.join(' ')}`);
  }
  return { key: 'waypoint', pid: pod.pid, netns: pod.netns, pod };
}

/** The same processes as at the start: a restart during the bench would void every figure. */
async function checkSameProcesses(): Promise<void> {
  for (const z of await findZtunnels()) {
    const was = ztunnels.find((x) => x.key === z.key);
    if (was && was.pid !== z.pid) throw new Error(`${z.key} restarted during the bench (pid ${was.pid} -> ${z.pid}): see its log`);
  }
  const w = findWaypoint();
  if (w.pid !== waypoint.pid) throw new Error(`the waypoint restarted during the bench (pid ${waypoint.pid} -> ${w.pid}): see ${w.pod.log}`);
}

function proxies(): Proxy[] {
  return [...ztunnels, waypoint];
}

function cpuNow(): Record<string, number> {
  return Object.fromEntries(proxies().map((p) => [p.key, procSample(p.pid).cpuSeconds]));
}

/**
 * CPU seconds of each thread of a process, user and system apart, by thread: "main" (tid = pid:
 * the event loop, all JS) and the others by name (V8's GC and compiler helpers, libuv's pool,
 * the inspector). A V8 CPU profile sees only the main thread, so this says how much it covers.
 */
function threadCpu(pid: number): Record<string, { user: number; system: number }> {
  const out: Record<string, { user: number; system: number }> = {};
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let st: string;
    try {
      st = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // thread ended
    }
    const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const k = Number(tid) === pid ? 'main' : comm.replace(/\d+$/, '').trim() || 'thread';
    const t = (out[k] ??= { user: 0, system: 0 });
    t.user += Number(f[11]) / 100;
    t.system += Number(f[12]) / 100;
  }
  return out;
}

function threadCpuDelta(a: Record<string, { user: number; system: number }>, b: Record<string, { user: number; system: number }>): Record<string, { user: number; system: number }> {
  return Object.fromEntries(Object.entries(b).map(([k, v]) => [k, { user: round(v.user - (a[k]?.user ?? 0), 2), system: round(v.system - (a[k]?.system ?? 0), 2) }]));
}

async function metricsOf(p: Proxy): Promise<string> {
  const url = p.key === 'waypoint' ? WAYPOINT_METRICS : `http://127.0.0.1:${ZTUNNEL_METRICS_PORT}/metrics`;
  const r = await httpGet(p.netns, url, 10_000);
  if (r.status !== 200) throw new Error(`${p.key} metrics: HTTP ${r.status}`);
  return r.body;
}

/**
 * What the path check compares: ztunnel connections opened, waypoint requests per destination
 * namespace, and the waypoint's opaque TCP connections (all, and to Service bench-wp/raw).
 */
async function pathCounters(): Promise<Record<string, number>> {
  const [z1, z2, wp] = await Promise.all([metricsOf(ztunnels[0]), metricsOf(ztunnels[1]), metricsOf(waypoint)]);
  const out: Record<string, number> = {
    [`${ztunnels[0].key} opened (source)`]: metric(z1, 'istio_tcp_connections_opened_total', { reporter: 'source' }),
    [`${ztunnels[1].key} opened (destination)`]: metric(z2, 'istio_tcp_connections_opened_total', { reporter: 'destination' }),
    'waypoint requests (all)': metric(wp, 'istio_requests_total'),
  };
  for (const ns of new Set(ALL_MODES.map((m) => NS[m]))) out[`waypoint requests to ${ns}`] = metric(wp, 'istio_requests_total', { destination_service_namespace: ns });
  out['waypoint 200s to bench-wp'] = metric(wp, 'istio_requests_total', { destination_service_namespace: NS.waypoint, response_code: '200' });
  out['waypoint TCP opened (all)'] = metric(wp, 'istio_tcp_connections_opened_total', { reporter: 'waypoint' });
  out[RAW_OPENED] = metric(wp, 'istio_tcp_connections_opened_total', rawLabels);
  out[RAW_CLOSED] = metric(wp, 'istio_tcp_connections_closed_total', rawLabels);
  return out;
}

const rawLabels = { reporter: 'waypoint', destination_service_name: SERVICE.wptcp, destination_service_namespace: NS.wptcp };
const RAW_OPENED = `waypoint TCP opened to ${NS.wptcp}/${SERVICE.wptcp}`;
const RAW_CLOSED = `waypoint TCP closed to ${NS.wptcp}/${SERVICE.wptcp}`;

function counterDelta(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, b[k] - (a[k] ?? 0)]));
}

// ---------------------------------------------------------------------------------------
// The latency run.

interface Target {
  client: PodInfo;
  server: PodInfo;
  /** Where the client sends: the server pod's IP (no mesh) or the Service's VIP (mesh modes). */
  host: string;
}

const targets = {} as Record<Mode, Target>;

interface LoadResult {
  /** Connections the generator opened at the start (it opens one more per reconnect). */
  conns: number;
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
  cpuS: Record<string, number>;
  cpuSPer1000Req: Record<string, number>;
  /** The waypoint's CPU-s over the window per thread (main = the event loop), user and system. */
  waypointThreadsCpuS: Record<string, { user: number; system: number }>;
}

async function loadRun(mode: Mode, rate: number, seconds: number, warmup: number, w?: Marks, perfOut?: string): Promise<LatencyRun> {
  const t = targets[mode];
  let stopPerf: (() => Promise<void>) | undefined;
  let c0: Record<string, number> | undefined;
  let c1: Record<string, number> | undefined;
  let th0: ReturnType<typeof threadCpu> = {};
  let th1: ReturnType<typeof threadCpu> = {};
  const r = await inPod(
    t.client,
    [process.execPath, POD_TOOL, 'load', '--host', t.host, '--port', String(PORT), '--rate', String(rate), '--duration', String(seconds), '--warmup', String(warmup), '--conns', String(F.conns), '--size', String(F.size)],
    (seconds + warmup + 40) * 1000,
    (line) => {
      if (line === 'MEASURE_START') {
        c0 = cpuNow();
        th0 = threadCpu(waypoint.pid);
        if (perfOut) stopPerf = startPerf(waypoint.pid, perfOut);
        w?.start();
      } else if (line === 'MEASURE_END') {
        w?.stop();
        c1 = cpuNow();
        th1 = threadCpu(waypoint.pid);
        void stopPerf?.();
      }
    },
  );
  await stopPerf?.();
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let res: LoadResult;
  try {
    res = JSON.parse(last) as LoadResult;
  } catch {
    throw new Error(`load generator (${mode}) failed (exit ${r.code}): ${r.stderr.trim().slice(-800) || last}`);
  }
  if (!c0 || !c1) throw new Error(`load generator (${mode}) did not mark its measured window`);
  const cpu = Object.fromEntries(Object.keys(c1).map((k) => [k, round(c1![k] - c0![k], 2)]));
  if (perfOut) perfRuns.push({ run: path.basename(perfOut), ...perfSummary(perfOut, res.completed) });
  return {
    ...res,
    cpuS: cpu,
    cpuSPer1000Req: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, round((v / Math.max(1, res.completed)) * 1000, 3)])),
    waypointThreadsCpuS: threadCpuDelta(th0, th1),
  };
}

/**
 * Short runs through a mode until they work (servers listening, HBONE sessions up, and for the
 * waypoint modes the ztunnel sending the service's traffic to the waypoint), then one more whose
 * counters must show the path: ztunnels for the mesh modes only; the waypoint's requests for the
 * waypoint mode only; the waypoint's opaque TCP connections (to Service raw) for wptcp only.
 */
async function checkPath(mode: Mode): Promise<Record<string, unknown>> {
  const end = Date.now() + 90_000;
  let lastErr = '';
  const once = async () => {
    const a = await pathCounters();
    const r = await loadRun(mode, 200, 1, 0.2);
    await sleep(500); // the waypoint counts a request when its record closes, just after the response
    return { r, d: counterDelta(a, await pathCounters()) };
  };
  for (;;) {
    try {
      const { r, d } = await once();
      const ok = r.completed === r.scheduled && r.errors === 0;
      const conns = r.conns + r.reconnects;
      if (ok && mode === 'waypoint' && d[`waypoint requests to ${NS.waypoint}`] >= r.completed) break;
      if (ok && mode === 'wptcp' && d[RAW_OPENED] >= conns) break;
      if (ok && mode !== 'waypoint' && mode !== 'wptcp') break;
      lastErr = !ok ? `${r.completed}/${r.scheduled} completed, ${r.errors} errors`
        : mode === 'waypoint' ? `the waypoint counted ${d[`waypoint requests to ${NS.waypoint}`]} of ${r.completed} requests (not bound to it yet?)`
          : `the waypoint counted ${d[RAW_OPENED]} TCP connections to ${NS.wptcp}/${SERVICE.wptcp} of ${conns} (not bound to it yet?)`;
    } catch (err) {
      lastErr = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`HTTP through ${mode} never worked: ${lastErr}`);
    await sleep(1000);
  }
  const { r, d } = await once();
  const z1 = d[`${ztunnels[0].key} opened (source)`];
  const z2 = d[`${ztunnels[1].key} opened (destination)`];
  const wpAll = d['waypoint requests (all)'];
  const wpMine = d[`waypoint requests to ${NS.waypoint}`];
  const tcpAll = d['waypoint TCP opened (all)'];
  const tcpRaw = d[RAW_OPENED];
  const sent = Math.round(0.2 * 200) + r.scheduled;
  const conns = r.conns + r.reconnects;
  const problems: string[] = [];
  if (r.completed !== r.scheduled || r.errors) problems.push(`${r.completed}/${r.scheduled} completed, ${r.errors} errors`);
  if (mode === 'nomesh' && (z1 !== 0 || z2 !== 0)) problems.push(`plain traffic went through a ztunnel (opened: node1 +${z1}, node2 +${z2})`);
  if (mode !== 'nomesh' && z1 === 0) problems.push(`the client's ztunnel opened no connection (node1 source +${z1})`);
  if (mode === 'l4' && z2 === 0) problems.push(`the server's ztunnel opened no connection (node2 destination +${z2})`);
  if (mode !== 'waypoint' && mode !== 'wptcp' && wpAll !== 0) problems.push(`the waypoint counted ${wpAll} requests of ${mode} traffic`);
  if (mode === 'waypoint' && (wpMine !== sent || wpAll !== wpMine || d['waypoint 200s to bench-wp'] !== sent)) {
    problems.push(`the waypoint counted ${wpMine} requests to ${NS.waypoint} (${d['waypoint 200s to bench-wp']} with 200) and ${wpAll} in all; ${sent} were sent`);
  }
  if (mode !== 'wptcp' && tcpAll !== 0) problems.push(`the waypoint counted ${tcpAll} opaque TCP connections (${tcpRaw} to ${NS.wptcp}/${SERVICE.wptcp}) of ${mode} traffic`);
  if (mode === 'wptcp') {
    // The TCP port must be carried as bytes: no HTTP request counted, one TCP connection per client connection.
    if (wpAll !== 0) problems.push(`the waypoint parsed HTTP on the TCP port: it counted ${wpAll} requests (${wpMine} to ${NS.wptcp}); expected none`);
    if (tcpRaw < conns) problems.push(`the waypoint counted ${tcpRaw} TCP connections to ${NS.wptcp}/${SERVICE.wptcp}; the client opened ${conns}`);
    if (tcpAll !== tcpRaw) problems.push(`the waypoint counted ${tcpAll} TCP connections in all, ${tcpRaw} of them to ${NS.wptcp}/${SERVICE.wptcp}`);
  }
  if (problems.length) throw new Error(`path check of ${mode} failed: ${problems.join('; ')}`);
  log(`${mode}: path checked: ${sent} requests on ${conns} connections; ${Object.entries(d).filter(([, v]) => v !== 0).map(([k, v]) => `${k} +${v}`).join(', ') || 'no ztunnel or waypoint counter moved'}`);
  return { requestsSent: sent, clientConnections: conns, counterDeltas: d };
}

// ---------------------------------------------------------------------------------------
// --perf DIR: Linux perf on the waypoint over each measured window of the modes through it (waypoint, wptcp). A V8 profile
// sees only the main thread's JS and the native code JS calls; perf sees everything the process
// costs: kernel (socket I/O, epoll, wake-ups), OpenSSL, nghttp2, llhttp, V8 and its GC, libc.
// JIT-compiled JS shows as [JIT] (the pod's node has no --perf-basic-prof).

const PERF_EVENTS = [
  'task-clock', 'context-switches', 'syscalls:sys_enter_read', 'syscalls:sys_enter_write', 'syscalls:sys_enter_writev',
  'syscalls:sys_enter_epoll_pwait', 'syscalls:sys_enter_epoll_ctl', 'syscalls:sys_enter_futex',
];
const perfRuns: Array<Record<string, unknown>> = [];

function startPerf(pid: number, out: string): () => Promise<void> {
  const opts = { stdio: ['ignore', 'ignore', 'pipe'] as Array<'ignore' | 'pipe'> };
  const rec = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '997', '-g', '-p', String(pid), '-o', `${out}.data`], opts);
  const stat = spawn('perf', ['stat', '-x', ',', '-e', PERF_EVENTS.join(','), '-p', String(pid), '-o', `${out}.stat.csv`], opts);
  const all = [rec, stat];
  for (const c of all) children.add(c);
  const closed = all.map((c) => new Promise<void>((r) => c.on('close', () => {
    children.delete(c);
    r();
  })));
  return async () => {
    for (const c of all) c.kill('SIGINT');
    await Promise.all(closed);
  };
}

/** Share of the samples by where they ran, the top symbols, and the perf stat counts per request. */
function perfSummary(out: string, requests: number): Record<string, unknown> {
  const report = (sort: string) => spawnSync('perf', ['report', '-i', `${out}.data`, '--no-children', '--sort', sort, '--stdio', '-g', 'none'], { encoding: 'utf8', maxBuffer: 64 << 20 }).stdout ?? '';
  const rows = (text: string) => text.split('\n').map((l) => /^\s*([\d.]+)%\s+(.*\S)\s*$/.exec(l)).filter((m): m is RegExpExecArray => m !== null).map((m) => ({ pct: Number(m[1]), what: m[2].replace(/\s+/g, ' ') }));
  const bySym = rows(report('dso,sym'));
  const area = new Map<string, number>();
  for (const r of bySym) {
    const [dso, , ...rest] = r.what.split(' ');
    const sym = rest.join(' ');
    const a = dso.startsWith('[kernel') ? 'kernel'
      : dso.startsWith('[JIT]') ? 'JS (JIT code)'
        : /^lib(c|stdc)/.test(dso) ? 'libc/libstdc++ (malloc, memcpy)'
          : sym.startsWith('Builtins_') ? 'V8 builtins (interpreter, inline caches, strings)'
            : /Scaveng|Marking|Sweep|Heap::|Evacuat|Compact/.test(sym) ? 'V8 GC'
              : /aes|gcm|ghash|ssl|SSL|EVP|ossl|OSSL|CRYPTO|BIO_|sha256|bn_/.test(sym) ? 'OpenSSL'
                : /nghttp2|http2/.test(sym) ? 'nghttp2 + node http2'
                  : /llhttp|Parser/.test(sym) ? 'llhttp + node http parser'
                    : /^uv_|^uv__/.test(sym) ? 'libuv'
                      : sym.startsWith('v8::') ? 'V8 runtime (other)'
                        : sym.startsWith('node::') ? 'node C++ (streams, TLS wrap, buffers)' : 'other';
    area.set(a, (area.get(a) ?? 0) + r.pct);
  }
  const counts: Record<string, number> = {};
  try {
    for (const l of fs.readFileSync(`${out}.stat.csv`, 'utf8').split('\n')) {
      const f = l.split(',');
      if (f.length < 3 || l.startsWith('#')) continue;
      const v = Number(f[0]);
      if (Number.isFinite(v)) counts[f[2].replace(/^syscalls:sys_enter_/, '')] = v;
    }
  } catch {
    // no stat
  }
  return {
    files: [`${out}.data`, `${out}.stat.csv`],
    byArea: [...area.entries()].sort((a, b) => b[1] - a[1]).map(([a, pct]) => ({ area: a, pct: round(pct, 1) })),
    topSymbols: bySym.slice(0, 25),
    perRequest: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, k === 'task-clock' ? round(v / requests, 4) : round(v / requests, 2)])),
    perRequestNote: 'task-clock in ms of CPU per request; the others are counts per request',
  };
}

// ---------------------------------------------------------------------------------------
// CPU profiles (--cpu-prof DIR): the ztunnels through the preloaded cpu-profile-preload.js
// (SIGUSR2), the waypoint through its inspector (SIGUSR1 opens it on 127.0.0.1:9229 in its pod
// netns; the pod tool's `cpuprof` drives V8's profiler over it), over each mesh mode's runs (the
// waypoint over the runs of the modes through it).

const profiles: Record<string, Record<string, unknown>> = {};

async function profiled<T>(scenario: string, mode: Mode, fn: () => Promise<T>): Promise<T> {
  if (!F.cpuProf || mode === 'nomesh') return fn();
  const dir = path.resolve(F.cpuProf);
  const wpFile = path.join(dir, `waypoint-${scenario}.cpuprofile`);
  let helper: ChildProcess | undefined;
  let helperDone: Promise<unknown> | undefined;
  if (THROUGH_WAYPOINT.includes(mode)) {
    let started!: () => void;
    const profiling = new Promise<void>((r) => (started = r));
    helperDone = inPod(waypoint, [process.execPath, '--experimental-websocket', '--no-warnings', POD_TOOL, 'cpuprof', '--port', String(INSPECTOR_PORT), '--out', wpFile], 600_000, (line) => {
      if (line === 'PROFILING') started();
    }, (c) => (helper = c)).then((r) => {
      started();
      if (r.code !== 0) log(`  waypoint profiler exited ${r.code}: ${r.stderr.trim().slice(-300)}`);
      return r;
    });
    await profiling;
  }
  for (const z of ztunnels) process.kill(z.pid, 'SIGUSR2');
  try {
    return await fn();
  } finally {
    for (const z of ztunnels) process.kill(z.pid, 'SIGUSR2');
    helper?.kill('SIGTERM');
    await helperDone;
    profiles[scenario] = await collectProfiles(dir, scenario, ztunnels.map((z) => ({ pid: z.pid, name: z.key })), 40);
    if (THROUGH_WAYPOINT.includes(mode)) profiles[scenario].waypoint = fs.existsSync(wpFile) ? { file: wpFile, ...profileTop(wpFile, 60) } : { error: 'the waypoint profiler wrote no profile' };
  }
}

// ---------------------------------------------------------------------------------------

function ambitCli(adminConfig: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [AMBIT_BIN, ...args], { env: { ...process.env, AMBIT_CONFIG: adminConfig }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

runBench('dataplane-l7', F.timeout * 1000, async () => {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  if (!['node1', 'node2'].includes(F.waypointNode)) throw new Error('--waypoint-node must be node1 or node2');
  if (F.perf) {
    await requireTools([['perf', ['--version']]]);
    fs.mkdirSync(F.perf, { recursive: true });
  }
  const name = `abl7-${randomBytes(3).toString('hex')}`;
  clusterDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-bench-l7-'));
  let supervisorPid: number | undefined;
  watch = new CpuWatch(name, () => supervisorPid);
  registerClusterTeardown(name, clusterDir);

  if (F.cpuProf) {
    fs.mkdirSync(F.cpuProf, { recursive: true });
    // As in dataplane-l4.ts: the processes `up` starts (ztunnels among them) preload the SIGUSR2
    // profiler. Pods (the waypoint) do not inherit it; the waypoint is profiled through its inspector.
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(__dirname, 'cpu-profile-preload.js')}`.trim();
    process.env.AMBIT_BENCH_CPU_PROF_DIR = path.resolve(F.cpuProf);
  }
  log(`bringing up cluster ${name} (2 hosts) in ${clusterDir}`);
  const loadAtStart = loadAverage();
  const u = await up({ dir: clusterDir, name, nodes: 2, logLevel: F.logLevel, progress: (l) => log(`  ${l}`) });
  if (F.cpuProf) {
    delete process.env.NODE_OPTIONS;
    delete process.env.AMBIT_BENCH_CPU_PROF_DIR;
  }
  if (u.notReady.length) throw new Error(`ztunnels not ready: ${u.notReady.join(', ')}`);
  supervisorPid = (await status({ dir: clusterDir }))?.supervisor.pid;
  ztunnels = await findZtunnels();
  log(`ztunnels: ${ztunnels.map((z) => `${z.key} pid ${z.pid}`).join(', ')}`);

  // Namespaces, Services, and the waypoint: a Gateway of class istio-waypoint pinned to
  // --waypoint-node (the local waypoint controller honours the ambit.io/node annotation), and the
  // waypoint namespace labelled istio.io/use-waypoint, as `ambit waypoint apply --enroll-namespace` does.
  // The Gateway `ambit waypoint apply -n bench-wp` writes, plus ambit.io/node (the local waypoint controller's host pin).
  const gw: Resource = {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: GATEWAY, namespace: NS.waypoint, labels: { 'istio.io/waypoint-for': 'service' }, annotations: { [NODE_ANNOTATION]: F.waypointNode } },
    spec: { gatewayClassName: WAYPOINT_GATEWAY_CLASS, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
  const service = (ns: string) => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'http', namespace: ns },
    spec: { selector: { app: 'http' }, ports: [{ name: 'http', port: PORT, targetPort: PORT }] },
  });
  // wptcp: a second Service on the same server pod whose port is declared opaque TCP (Istio's
  // explicit protocol selection), so the waypoint carries its bytes without detecting or parsing HTTP.
  // Always applied (like the waypoint), so the waypoint mode runs with it present.
  const rawService = {
    apiVersion: 'v1', kind: 'Service', metadata: { name: SERVICE.wptcp, namespace: NS.wptcp },
    spec: { selector: { app: 'http' }, ports: [{ name: 'raw', port: PORT, targetPort: PORT, appProtocol: 'tcp' }] },
  };
  await withAdmin(clusterPaths({ dir: clusterDir }), async (c) => {
    await c.apply([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.nomesh } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.l4, labels: { [LABEL_DATAPLANE_MODE]: 'ambient' } } },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.waypoint, labels: { [LABEL_DATAPLANE_MODE]: 'ambient' } } },
      service(NS.l4),
      service(NS.waypoint),
      rawService,
      gw,
    ]);
    await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS.waypoint, labels: { [LABEL_DATAPLANE_MODE]: 'ambient', [LABEL_USE_WAYPOINT]: GATEWAY } } }]);
  });
  const vips = await withAdmin(clusterPaths({ dir: clusterDir }), async (c) => {
    const out: Partial<Record<Mode, string>> = {};
    for (const m of ['l4', 'waypoint', 'wptcp'] as const) {
      const s = (await c.list('Service', NS[m])).find((x) => x.metadata.name === SERVICE[m]);
      const ip = (s?.spec as { clusterIP?: string } | undefined)?.clusterIP;
      if (!ip) throw new Error(`Service ${NS[m]}/${SERVICE[m]} has no clusterIP`);
      out[m] = ip;
    }
    return out;
  });

  // Traffic pods: the same programs in each namespace; client on node1, server on node2. Only in the
  // namespaces of the selected modes; waypoint and wptcp share the pods of bench-wp.
  const podsByNs = new Map<string, { client: PodInfo; server: PodInfo }>();
  for (const mode of MODES) {
    const ns = NS[mode];
    const same = podsByNs.get(ns);
    if (same) {
      targets[mode] = { ...same, host: vips[mode]! };
      log(`${mode}: client ${same.client.ip} (node1) -> Service ${ns}/${SERVICE[mode]} VIP ${targets[mode].host}:${PORT} (same client and server pods as above)`);
      continue;
    }
    const server = await podRun({ dir: clusterDir, name: 'http', namespace: ns, node: 'node2', labels: { app: 'http' }, command: [process.execPath, POD_TOOL, 'server', '--port', String(PORT), '--size', String(F.size)], cwd: '/' });
    const client = await podRun({ dir: clusterDir, name: 'client', namespace: ns, node: 'node1', command: ['sleep', 'infinity'], cwd: '/' });
    for (const p of [client, server]) podSysctls(p);
    const want = mode !== 'nomesh';
    for (const p of [server, client]) {
      const g = podGet({ dir: clusterDir, name: p.name, namespace: ns });
      if (g.enrolled !== want) throw new Error(`pod ${ns}/${p.name} enrolled=${g.enrolled}, expected ${want}`);
    }
    podsByNs.set(ns, { client, server });
    targets[mode] = { client, server, host: mode === 'nomesh' ? server.ip : vips[mode]! };
    log(`${mode}: client ${client.ip} (node1) -> ${mode === 'nomesh' ? 'pod' : `Service ${ns}/${SERVICE[mode]} VIP`} ${targets[mode].host}:${PORT} (server pod ${server.ip} on node2); enrolled: ${want}`);
  }

  // The waypoint: Programmed (as `ambit waypoint status --wait` reports it), and its process.
  const st = ambitCli(u.adminConfig, ['waypoint', 'status', '-n', NS.waypoint, '--wait', '90s']);
  if (st.code !== 0) throw new Error(`ambit waypoint status -n ${NS.waypoint} --wait 90s exited ${st.code}:\n${st.out}`);
  for (const l of st.out.split('\n')) log(`  ${l}`);
  waypoint = findWaypoint();
  if (waypoint.pod.node !== F.waypointNode) throw new Error(`the waypoint pod runs on ${waypoint.pod.node}, not on ${F.waypointNode}`);
  if (waypoint.pod.enrolled !== false) throw new Error(`the waypoint pod must not be captured (enrolled=${waypoint.pod.enrolled})`);
  log(`waypoint: pod ${NS.waypoint}/${WAYPOINT_POD} on ${waypoint.pod.node}, ${waypoint.pod.ip}, pid ${waypoint.pid}`);

  const git = (args: string[]) => spawnSync('git', args, { cwd: path.resolve(__dirname, '..', '..'), encoding: 'utf8' }).stdout?.trim() ?? '';
  const result: Record<string, unknown> = {
    bench: 'dataplane-l7', startedAt: new Date(t0).toISOString(), machine: machine(), loadAverageAtStart: loadAtStart, cluster: name,
    commit: git(['rev-parse', '--short', 'HEAD']) || 'unknown', uncommittedChanges: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    config: { ...F, podTool: POD_TOOL },
    topology: {
      client: 'node1', server: 'node2', waypointNode: waypoint.pod.node,
      waypoint: { pod: `${NS.waypoint}/${WAYPOINT_POD}`, ip: waypoint.pod.ip, pid: waypoint.pid },
      ztunnels: Object.fromEntries(ztunnels.map((z) => [z.key, z.pid])),
      modes: Object.fromEntries(MODES.map((m) => [m, { namespace: NS[m], ...(SERVICE[m] ? { service: SERVICE[m] } : {}), target: `${targets[m].host}:${PORT}`, serverPod: targets[m].server.ip }])),
      waypointStatus: st.out,
    },
  };

  // Path check, then an unmeasured warm-up at the measured rate (the first thousands of requests
  // through a proxy run cold code).
  const pathCheck: Record<string, unknown> = {};
  for (const mode of MODES) pathCheck[mode] = await checkPath(mode);
  result.pathCheck = pathCheck;
  if (F.cpuProf) {
    process.kill(waypoint.pid, 'SIGUSR1'); // opens the waypoint's inspector on 127.0.0.1:9229 in its pod netns
    await sleep(500);
  }
  if (F.prewarm > 0) {
    for (const mode of MODES) {
      const r = await loadRun(mode, F.rate, F.prewarm, 0);
      log(`warm-up ${mode}: ${r.completed}/${r.scheduled} in ${F.prewarm} s, p50 ${r.latencyUs.p50} us`);
    }
  }

  // Latency at a fixed rate, CPU per 1,000 requests: the selected modes rotate (ABCD, BCDA, CDAB, ...).
  const runs: Array<{ mode: Mode; rep: number; attempts: Array<Attempt<LatencyRun>> }> = [];
  for (let rep = 0; rep < F.repeats; rep++) {
    const order = MODES.map((_m, i) => MODES[(i + rep) % MODES.length]);
    for (const mode of order) {
      const perfOut = F.perf && THROUGH_WAYPOINT.includes(mode) ? path.join(path.resolve(F.perf), `${mode}-perf-${rep + 1}`) : undefined;
      const attempts = await profiled(`latency-${mode}-${rep + 1}`, mode, () => measured(`latency ${mode} #${rep + 1}`, (w) => loadRun(mode, F.rate, F.latencySeconds, F.warmup, w, perfOut)));
      runs.push({ mode, rep, attempts });
      const a = attempts[0].value;
      log(`latency ${mode.padEnd(8)} #${rep + 1}: ${a.completed}/${a.scheduled} ok at ${a.achievedRate}/s; from schedule p50/p90/p99 ${a.latencyUs.p50}/${a.latencyUs.p90}/${a.latencyUs.p99} us; service p50/p99 ${a.serviceUs.p50}/${a.serviceUs.p99} us; lag p50 ${a.lagUs.p50} us; CPU-s/1000 req ${fmtNodes(a.cpuSPer1000Req)}; others ${attempts[0].window.othersCores}${attempts[0].disturbed ? ' DISTURBED' : ''}`);
      if (a.errors || a.incomplete) log(`  WARNING: ${a.errors} errors, ${a.incomplete} incomplete`);
    }
  }
  await checkSameProcesses();

  const keys = ['p50', 'p90', 'p99', 'p999'];
  const used = (mode: Mode) => runs.filter((r) => r.mode === mode).map((r) => r.attempts[0]);
  const med = (mode: Mode) => {
    const xs = used(mode).map((x) => x.value);
    const pick = (f: (x: LatencyRun) => Record<string, number>) => Object.fromEntries(keys.map((k) => [k, Math.round(median(xs.map((x) => f(x)[k])))]));
    return {
      latencyUs: pick((x) => x.latencyUs), serviceUs: pick((x) => x.serviceUs), lagUs: pick((x) => x.lagUs),
      cpuSPer1000Req: Object.fromEntries(proxies().map((p) => [p.key, round(median(xs.map((x) => x.cpuSPer1000Req[p.key])), 3)])),
      waypointThreadsCpuSPer1000Req: Object.fromEntries([...new Set(xs.flatMap((x) => Object.keys(x.waypointThreadsCpuS)))].sort().map((k) => {
        const per = (f: (t: { user: number; system: number }) => number) => round(median(xs.map((x) => (f(x.waypointThreadsCpuS[k] ?? { user: 0, system: 0 }) / Math.max(1, x.completed)) * 1000)), 3);
        return [k, { user: per((t) => t.user), system: per((t) => t.system) }];
      })),
      completed: xs.reduce((n, x) => n + x.completed, 0),
      scheduled: xs.reduce((n, x) => n + x.scheduled, 0),
      errors: xs.reduce((n, x) => n + x.errors + x.incomplete, 0),
      achievedRate: Math.round(median(xs.map((x) => x.achievedRate))),
      disturbedRuns: used(mode).filter((x) => x.disturbed).length,
    };
  };
  type Med = ReturnType<typeof med>;
  const m = Object.fromEntries(MODES.map((x) => [x, med(x)])) as Partial<Record<Mode, Med>>;
  // A derived figure is null in the JSON (n/a in the table) when one of its modes was not selected (--modes).
  const diff = (a: Mode, b: Mode, f: (x: Med) => Record<string, number>) => {
    const x = m[a];
    const y = m[b];
    return x && y ? Object.fromEntries(keys.map((k) => [k, f(x)[k] - f(y)[k]])) : null;
  };
  const ratio = (a: Mode, b: Mode) => {
    const x = m[a];
    const y = m[b];
    return x && y ? Object.fromEntries(keys.map((k) => [k, round(x.latencyUs[k] / y.latencyUs[k], 2)])) : null;
  };
  const cpuDiff = (a: number | null | undefined, b: number | null | undefined) => (a != null && b != null ? round(a - b, 3) : null);
  // Per repeat (the modes of a repeat run within about a minute), to show the spread.
  const pairs = Array.from({ length: F.repeats }, (_v, rep) => {
    const v = (mode: Mode) => runs.find((r) => r.rep === rep && r.mode === mode)?.attempts[0].value;
    const d = (a: Mode, b: Mode, f: (x: LatencyRun) => number) => {
      const x = v(a);
      const y = v(b);
      return x && y ? f(x) - f(y) : null;
    };
    const p50 = (x: LatencyRun) => x.latencyUs.p50;
    return {
      rep: rep + 1,
      order: MODES.map((_m, i) => MODES[(i + rep) % MODES.length]).join(','),
      l4AddedP50Us: d('l4', 'nomesh', p50),
      waypointAddedP50Us: d('waypoint', 'nomesh', p50),
      waypointHopP50Us: d('waypoint', 'l4', p50),
      waypointHopServiceP50Us: d('waypoint', 'l4', (x) => x.serviceUs.p50),
      waypointCpuSPer1000Req: v('waypoint')?.cpuSPer1000Req.waypoint ?? null,
      wptcpAddedP50Us: d('wptcp', 'nomesh', p50),
      wptcpHopP50Us: d('wptcp', 'l4', p50),
      waypointHttpP50Us: d('waypoint', 'wptcp', p50),
      wptcpCpuSPer1000Req: v('wptcp')?.cpuSPer1000Req.waypoint ?? null,
      waypointHttpCpuSPer1000Req: cpuDiff(v('waypoint')?.cpuSPer1000Req.waypoint, v('wptcp')?.cpuSPer1000Req.waypoint),
    };
  });
  const hop = diff('waypoint', 'l4', (x) => x.latencyUs);
  const wpCpu = m.waypoint?.cpuSPer1000Req.waypoint ?? null;
  const tcpCpu = m.wptcp?.cpuSPer1000Req.waypoint ?? null;
  const mainCpu = (x: Med | undefined) => (x?.waypointThreadsCpuSPer1000Req.main ? round(x.waypointThreadsCpuSPer1000Req.main.user + x.waypointThreadsCpuSPer1000Req.main.system, 3) : null);
  result.latency = {
    tool: `dataplane-l4-pod.js load: open-loop ${F.rate} req/s, POST ${F.size} B -> ${F.size} B, ${F.conns} keep-alive HTTP/1.1 connections, ${F.warmup} s warm-up + ${F.latencySeconds} s measured; latency from the scheduled send time`,
    modes: MODES,
    ...m,
    addedUs: {
      l4: diff('l4', 'nomesh', (x) => x.latencyUs), waypoint: diff('waypoint', 'nomesh', (x) => x.latencyUs), waypointHop: hop,
      wptcp: diff('wptcp', 'nomesh', (x) => x.latencyUs), wptcpHop: diff('wptcp', 'l4', (x) => x.latencyUs), waypointHttp: diff('waypoint', 'wptcp', (x) => x.latencyUs),
    },
    addedServiceUs: {
      l4: diff('l4', 'nomesh', (x) => x.serviceUs), waypoint: diff('waypoint', 'nomesh', (x) => x.serviceUs), waypointHop: diff('waypoint', 'l4', (x) => x.serviceUs),
      wptcp: diff('wptcp', 'nomesh', (x) => x.serviceUs), wptcpHop: diff('wptcp', 'l4', (x) => x.serviceUs), waypointHttp: diff('waypoint', 'wptcp', (x) => x.serviceUs),
    },
    ratio: { l4: ratio('l4', 'nomesh'), waypoint: ratio('waypoint', 'nomesh'), waypointToL4: ratio('waypoint', 'l4'), wptcp: ratio('wptcp', 'nomesh'), wptcpToL4: ratio('wptcp', 'l4') },
    derived: {
      /** waypoint - wptcp: what the waypoint's HTTP processing costs on top of carrying the bytes. */
      waypointHttpProcessing: {
        cpuSPer1000Req: cpuDiff(wpCpu, tcpCpu),
        mainThreadCpuSPer1000Req: cpuDiff(mainCpu(m.waypoint), mainCpu(m.wptcp)),
        latencyUs: diff('waypoint', 'wptcp', (x) => x.latencyUs),
        serviceUs: diff('waypoint', 'wptcp', (x) => x.serviceUs),
      },
      /** wptcp: the waypoint's CPU when it only carries the bytes between its two HBONE legs. */
      waypointByteFloor: {
        cpuSPer1000Req: tcpCpu,
        mainThreadCpuSPer1000Req: mainCpu(m.wptcp),
        shareOfWaypointMode: tcpCpu != null && wpCpu ? round(tcpCpu / wpCpu, 3) : null,
        /** wptcp - l4: the extra HBONE hop through the waypoint process, without HTTP. */
        hopOverL4Us: diff('wptcp', 'l4', (x) => x.latencyUs),
      },
    },
    pairs,
    targets: {
      waypointCpuPer1000Req: { maxCpuS: 0.25, valueCpuS: wpCpu, perRepeat: pairs.map((p) => p.waypointCpuSPer1000Req), met: wpCpu == null ? null : wpCpu <= 0.25 },
      waypointHopAddedP50: { maxUs: 1000, valueUs: hop?.p50 ?? null, perRepeat: pairs.map((p) => p.waypointHopP50Us), met: hop ? hop.p50 <= 1000 : null },
    },
    runs: runs.map((r) => ({ mode: r.mode, rep: r.rep + 1, ...r.attempts[0].value, window: r.attempts[0].window, disturbed: r.attempts[0].disturbed, discardedAttempts: r.attempts.slice(1).map((x) => ({ window: x.window, latencyUs: x.value.latencyUs })) })),
  };

  // Memory after the traffic, and what the proxies logged.
  result.memoryAfterTraffic = Object.fromEntries(proxies().map((p) => {
    const s = procSample(p.pid);
    return [p.key, { rssMiB: mib(s.rssBytes), hwmMiB: mib(s.hwmBytes) }];
  }));
  const wpMetrics = await metricsOf(waypoint);
  result.waypointCounters = {
    requestsToBenchWp: metric(wpMetrics, 'istio_requests_total', { destination_service_namespace: NS.waypoint }),
    requestsAll: metric(wpMetrics, 'istio_requests_total'),
    non200: metric(wpMetrics, 'istio_requests_total') - metric(wpMetrics, 'istio_requests_total', { response_code: '200' }),
    tcpConnectionsToRaw: { opened: metric(wpMetrics, 'istio_tcp_connections_opened_total', rawLabels), closed: metric(wpMetrics, 'istio_tcp_connections_closed_total', rawLabels) },
    tcpConnectionsAll: metric(wpMetrics, 'istio_tcp_connections_opened_total', { reporter: 'waypoint' }),
    restarts: podGet({ dir: clusterDir, name: WAYPOINT_POD, namespace: NS.waypoint }).restarts,
  };
  result.logs = {
    waypoint: logLines(waypoint.pod.log),
    ...Object.fromEntries(ztunnels.map((z) => [z.key, logLines(path.join(clusterDir, 'logs', `${z.key.replace(/^ztunnel-/, '')}-ztunnel.log`))])),
  };
  result.durationS = round((Date.now() - t0) / 1000, 0);
  if (F.cpuProf) result.cpuProfiles = profiles;
  if (F.perf) result.perf = perfRuns;
  report(result);
});

// ---------------------------------------------------------------------------------------

function report(r: Record<string, unknown>): void {
  const json = JSON.stringify(r, null, 2);
  process.stdout.write(`${json}\n`);
  if (F.json) fs.writeFileSync(F.json, `${json}\n`);
  type Med = {
    latencyUs: Record<string, number>; serviceUs: Record<string, number>; cpuSPer1000Req: Record<string, number>; disturbedRuns: number; completed: number; scheduled: number; errors: number;
    waypointThreadsCpuSPer1000Req: Record<string, { user: number; system: number }>;
  };
  type Figures = Record<string, Record<string, number> | null>;
  const l = r.latency as Partial<Record<Mode, Med>> & {
    addedUs: Figures; addedServiceUs: Figures; ratio: Figures;
    targets: { waypointCpuPer1000Req: { met: boolean | null }; waypointHopAddedP50: { met: boolean | null } };
    derived: {
      waypointHttpProcessing: { cpuSPer1000Req: number | null; mainThreadCpuSPer1000Req: number | null; latencyUs: Record<string, number> | null; serviceUs: Record<string, number> | null };
      waypointByteFloor: { cpuSPer1000Req: number | null; shareOfWaypointMode: number | null; hopOverL4Us: Record<string, number> | null };
    };
  };
  const M = (mode: Mode) => l[mode]!;
  const mem = r.memoryAfterTraffic as Record<string, { rssMiB: number; hwmMiB: number }>;
  const NA = 'n/a';
  const sign = (n: number) => (n >= 0 ? `+${n}` : `${n}`);
  const us = (f: Record<string, number> | null, k: string) => (f ? `${sign(f[k])} us` : NA);
  const us2 = (f: Record<string, number> | null) => (f ? `${sign(f.p50)} / ${sign(f.p99)} us` : NA);
  const x = (f: Record<string, number> | null, k: string) => (f ? `x${f[k]}` : NA);
  const met = (v: boolean | null) => (v == null ? NA : v ? 'met' : 'NOT met');
  /** The waypoint's CPU per 1,000 requests split: main thread user + system, other threads. */
  const split = (mode: Mode) => {
    const th = M(mode).waypointThreadsCpuSPer1000Req;
    const others = Object.entries(th).filter(([k]) => k !== 'main').reduce((n, [, v]) => n + v.user + v.system, 0);
    return `${th.main?.user ?? '?'} + ${th.main?.system ?? '?'}, ${round(others, 3)}`;
  };
  const through = (mode: Mode) => THROUGH_WAYPOINT.includes(mode);
  /** The six columns after the modes' (ratios, added, hop, target), empty. */
  const blank = ['', '', '', '', '', ''];
  const rows: string[][] = [['', ...MODES.map((m) => TITLE[m]), 'L4 / no mesh', 'waypoint / no mesh', 'added by L4', 'added with waypoint', 'waypoint hop (waypoint - L4)', 'target']];
  for (const k of ['p50', 'p90', 'p99']) {
    rows.push([
      `latency ${k} @ ${F.rate}/s (from schedule)`, ...MODES.map((m) => `${M(m).latencyUs[k]} us`),
      x(l.ratio.l4, k), x(l.ratio.waypoint, k), us(l.addedUs.l4, k), us(l.addedUs.waypoint, k), us(l.addedUs.waypointHop, k), k === 'p50' ? `hop <= +1000 us: ${met(l.targets.waypointHopAddedP50.met)}` : '',
    ]);
  }
  rows.push([
    'service time p50 / p99 (write -> response)', ...MODES.map((m) => `${M(m).serviceUs.p50} / ${M(m).serviceUs.p99} us`),
    '', '', us2(l.addedServiceUs.l4), us2(l.addedServiceUs.waypoint), us2(l.addedServiceUs.waypointHop), '',
  ]);
  rows.push([
    'waypoint CPU-s per 1,000 requests', ...MODES.map((m) => (through(m) ? `${M(m).cpuSPer1000Req.waypoint}` : `(idle) ${M(m).cpuSPer1000Req.waypoint}`)),
    '', '', '', '', '', `<= 0.25: ${met(l.targets.waypointCpuPer1000Req.met)}`,
  ]);
  rows.push(['  of which main thread user + system, other threads', ...MODES.map((m) => (through(m) ? split(m) : '')), ...blank]);
  rows.push(['ztunnel CPU-s per 1,000 requests', ...MODES.map((m) => `node1 ${M(m).cpuSPer1000Req['ztunnel-node1']}, node2 ${M(m).cpuSPer1000Req['ztunnel-node2']}`), ...blank]);
  rows.push(['completed / scheduled (errors)', ...MODES.map((m) => `${M(m).completed}/${M(m).scheduled} (${M(m).errors})`), ...blank]);
  // RSS: the ztunnels' under L4 (else the first mesh mode), the waypoint's under the waypoint mode (else wptcp).
  const zCol = has('l4') ? 'l4' : MODES.find((m) => m !== 'nomesh');
  const wCol = has('waypoint') ? 'waypoint' : has('wptcp') ? 'wptcp' : undefined;
  const zRss = `ztunnels ${mem['ztunnel-node1'].rssMiB} (${mem['ztunnel-node1'].hwmMiB}) / ${mem['ztunnel-node2'].rssMiB} (${mem['ztunnel-node2'].hwmMiB})`;
  const wRss = `waypoint ${mem.waypoint.rssMiB} (${mem.waypoint.hwmMiB})`;
  if (zCol || wCol) {
    rows.push(['RSS after the traffic (peak), MiB', ...MODES.map((m) => [m === zCol ? zRss : '', m === wCol ? wRss : ''].filter(Boolean).join(', ')), ...blank]);
  }
  const w = rows[0].map((_h, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const lines = rows.map((row) => row.map((cell, i) => (cell ?? '').padEnd(w[i])).join('  ').trimEnd());
  lines.splice(1, 0, w.map((n) => '-'.repeat(n)).join('  '));
  const topo = r.topology as { waypointNode: string };
  process.stdout.write(`\nL7 data plane, ${MODES.map((m) => TITLE[m]).join(' vs ')} (2 hosts; client node1, server node2, waypoint ${topo.waypointNode}; ${F.rate} req/s, ${F.size} B bodies, ${F.conns} keep-alive connections; medians of ${F.repeats} runs)\n${lines.join('\n')}\n`);
  // The waypoint with and without HTTP processing (waypoint vs wptcp): what the HTTP work costs, and the floor.
  const http = l.derived.waypointHttpProcessing;
  const floor = l.derived.waypointByteFloor;
  const cpu = (v: number | null) => (v == null ? NA : `${v}`);
  process.stdout.write(
    `waypoint HTTP processing (waypoint - waypoint TCP port): CPU-s per 1,000 requests ${cpu(http.cpuSPer1000Req)} (main thread ${cpu(http.mainThreadCpuSPer1000Req)}); ` +
      `latency p50 ${us(http.latencyUs, 'p50')}, p99 ${us(http.latencyUs, 'p99')}; service time p50 ${us(http.serviceUs, 'p50')}\n`,
  );
  process.stdout.write(
    `waypoint byte-carrying floor (TCP port): CPU-s per 1,000 requests ${cpu(floor.cpuSPer1000Req)}${has('wptcp') ? ` (main thread user + system, other threads: ${split('wptcp')})` : ''}` +
      `, ${floor.shareOfWaypointMode == null ? NA : `${Math.round(floor.shareOfWaypointMode * 100)} %`} of the waypoint mode's; ` +
      `its hop over L4 (TCP port - L4): latency p50 ${us(floor.hopOverL4Us, 'p50')}, p99 ${us(floor.hopOverL4Us, 'p99')}\n`,
  );
  const disturbed = MODES.reduce((n, m) => n + M(m).disturbedRuns, 0);
  process.stdout.write(disturbed ? `disturbed by other processes (> ${F.idleThreshold} cores): ${disturbed} of ${MODES.length * F.repeats} measured windows\n` : `no measured window was disturbed by other processes (> ${F.idleThreshold} cores)\n`);
  type Pair = {
    rep: number; order: string; l4AddedP50Us: number | null; waypointHopP50Us: number | null; waypointCpuSPer1000Req: number | null;
    wptcpHopP50Us: number | null; waypointHttpP50Us: number | null; wptcpCpuSPer1000Req: number | null;
  };
  const pairs = (r.latency as { pairs: Pair[] }).pairs;
  const s = (v: number | null) => (v == null ? NA : sign(v));
  const c = (v: number | null) => (v == null ? NA : `${v}`);
  process.stdout.write(
    `per repeat (order; p50 added by L4, by the waypoint hop, by the TCP-port hop (TCP port - L4), by HTTP processing (waypoint - TCP port); waypoint CPU-s/1000 req, waypoint / TCP port mode): ` +
      `${pairs.map((p) => `#${p.rep} (${p.order}) ${s(p.l4AddedP50Us)}, ${s(p.waypointHopP50Us)}, ${s(p.wptcpHopP50Us)}, ${s(p.waypointHttpP50Us)} us, ${c(p.waypointCpuSPer1000Req)} / ${c(p.wptcpCpuSPer1000Req)}`).join('; ')}\n`,
  );
  for (const p of (r.perf as Array<{ run: string; byArea: Array<{ area: string; pct: number }>; perRequest: Record<string, number>; topSymbols: Array<{ pct: number; what: string }> }> | undefined) ?? []) {
    process.stdout.write(`\nperf, ${p.run} (waypoint process, all threads): ${p.byArea.map((a) => `${a.area} ${a.pct}%`).join(', ')}\n`);
    process.stdout.write(`  per request: ${Object.entries(p.perRequest).map(([k, v]) => `${k} ${v}`).join(', ')} (task-clock in ms)\n`);
    for (const x of p.topSymbols.slice(0, 12)) process.stdout.write(`  ${String(x.pct).padStart(5)}%  ${x.what}\n`);
  }
  type Prof = Partial<ProfileSummary> & { error?: string };
  const prof = r.cpuProfiles as undefined | Record<string, Record<string, Prof>>;
  for (const [scenario, byProc] of Object.entries(prof ?? {})) {
    if (!scenario.endsWith('-1')) continue; // first repeat only; every profile is in the JSON
    for (const [proc, p] of Object.entries(byProc)) {
      if (!p.top) {
        process.stdout.write(`\n${scenario}, ${proc}: ${p.error}\n`);
        continue;
      }
      process.stdout.write(`\n${scenario}, ${proc} CPU profile (${p.totalMs} ms non-idle); self time by area: ${p.byArea!.slice(0, 10).map((a) => `${a.area} ${a.pct}%`).join(', ')}\n`);
      for (const f of p.top.slice(0, proc === 'waypoint' ? 25 : 10)) process.stdout.write(`  ${String(f.pct).padStart(5)}%  ${String(f.selfMs).padStart(6)} ms  ${f.fn}\n`);
      const incl = p.ambitInclusive ?? [];
      const mine = proc === 'waypoint' ? incl.filter((f) => f.fn.includes('dist/waypoint/')) : incl;
      process.stdout.write(`  ${proc === 'waypoint' ? 'waypoint/' : 'Ambit'} functions, inclusive: ${mine.slice(0, proc === 'waypoint' ? 25 : 8).map((f) => `${f.fn} ${f.pct}%`).join('; ')}\n`);
      if (proc === 'waypoint') process.stdout.write(`  other Ambit functions, inclusive: ${incl.filter((f) => !f.fn.includes('dist/waypoint/')).slice(0, 12).map((f) => `${f.fn} ${f.pct}%`).join('; ')}\n`);
    }
  }
}
