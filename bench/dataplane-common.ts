// Shared by the data plane benchmarks (dataplane-l4.ts, dataplane-l7.ts), which run on a local
// `ambit dev` cluster: commands inside pods, CPU accounting of the cluster against the rest of
// the machine, quiet-machine waits and retries of disturbed windows, CPU profile summaries,
// and bringing a bench cluster up and always down again.
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { clusterNetnsPattern, down, listNetns } from '../deploy/local';
import type { PodInfo } from '../deploy/local';
import { onCleanup, round, sleep } from './common';

const CLOCK_TICKS = 100;

export function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${line}\n`);
}

// ---------------------------------------------------------------------------------------
// Processes in pods: `ip netns exec <pod netns> argv`, output streamed line by line, bounded
// in time, and killed (by PID) on cleanup.

export const children = new Set<ChildProcess>();
onCleanup(() => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      // gone
    }
  }
});

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `ip netns exec <pod netns> argv` (ip execs the command itself, so the child's PID is the
 * command's: a signal sent to it reaches the command). `onSpawn` gets the child, e.g. to signal it.
 */
export function inPod(pod: Pick<PodInfo, 'netns'>, argv: string[], timeoutMs: number, onLine?: (line: string) => void, onSpawn?: (c: ChildProcess) => void): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const env = { PATH: `${path.dirname(process.execPath)}:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin`, HOME: process.env.HOME ?? '/root', LANG: 'C' };
    const c = spawn('ip', ['netns', 'exec', pod.netns, ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    onSpawn?.(c);
    let stdout = '';
    let stderr = '';
    let partial = '';
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (!onLine) return;
      partial += d;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        onLine(partial.slice(0, i));
        partial = partial.slice(i + 1);
      }
    });
    c.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d.length + stderr.length < 1 << 20 ? d : ''));
    c.on('error', (err) => {
      clearTimeout(timer);
      children.delete(c);
      reject(err);
    });
    c.on('close', (code) => {
      clearTimeout(timer);
      children.delete(c);
      resolve({ code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------
// CPU accounting: ours (every process inside the cluster's netns, plus this process and the
// cluster's supervisor with their reaped children) vs the rest of the machine.

export interface ProcCpu {
  ticks: number;
  /** Reaped children (cutime + cstime). */
  childTicks: number;
}

export function readStat(pid: number | string): { ppid: number; ticks: number; childTicks: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]), childTicks: Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

export function machineTicks(): { busy: number; steal: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return { busy: user + nice + system + irq + softirq, steal: steal ?? 0 };
}

export class CpuWatch {
  constructor(private readonly clusterName: string, private readonly supervisorPid: () => number | undefined) {}

  private inodes(): Set<string> {
    const out = new Set<string>();
    for (const n of listNetns()) {
      if (!clusterNetnsPattern(this.clusterName).test(n)) continue;
      try {
        out.add(String(fs.statSync(`/var/run/netns/${n}`).ino));
      } catch {
        // just removed
      }
    }
    return out;
  }

  /** Per-PID CPU ticks of ours and of kernel threads, and the machine's counters. */
  snapshot(): { at: number; m: { busy: number; steal: number }; ours: Map<number, ProcCpu>; kthreads: Map<number, ProcCpu> } {
    const inodes = this.inodes();
    const ours = new Map<number, ProcCpu>();
    const kthreads = new Map<number, ProcCpu>();
    const special = new Set([process.pid, this.supervisorPid() ?? -1]);
    const m = machineTicks();
    for (const e of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(e)) continue;
      const pid = Number(e);
      const st = readStat(pid);
      if (!st) continue;
      if (special.has(pid)) {
        ours.set(pid, { ticks: st.ticks, childTicks: st.childTicks });
        continue;
      }
      if (pid === 2 || st.ppid === 2) {
        kthreads.set(pid, { ticks: st.ticks, childTicks: 0 });
        continue;
      }
      let ns = '';
      try {
        ns = /net:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/ns/net`))?.[1] ?? '';
      } catch {
        continue;
      }
      if (inodes.has(ns)) ours.set(pid, { ticks: st.ticks, childTicks: 0 });
    }
    return { at: Date.now(), m, ours, kthreads };
  }

  static delta(a: Map<number, ProcCpu>, b: Map<number, ProcCpu>): number {
    let n = 0;
    for (const [pid, v] of b) {
      const was = a.get(pid);
      n += was ? v.ticks - was.ticks + (v.childTicks - was.childTicks) : v.ticks + v.childTicks;
    }
    return n;
  }
}

export interface Window {
  wallS: number;
  /** Cores used on average during the window by the bench's cluster (its netns), the bench and the cluster's supervisor. */
  oursCores: number;
  /** Everything else the machine was busy with (user, system, irq): other people's work. */
  othersCores: number;
  /** Kernel threads (ksoftirqd, kworkers), whoever caused them: not counted in either. */
  kernelThreadCores: number;
  stealCores: number;
}

export function windowOf(a: ReturnType<CpuWatch['snapshot']>, b: ReturnType<CpuWatch['snapshot']>): Window {
  const wall = Math.max(0.001, (b.at - a.at) / 1000);
  const ours = CpuWatch.delta(a.ours, b.ours) / CLOCK_TICKS;
  const kth = CpuWatch.delta(a.kthreads, b.kthreads) / CLOCK_TICKS;
  const busy = (b.m.busy - a.m.busy) / CLOCK_TICKS;
  // The residual, not a sum over other processes: a parent's cutime jumps by the whole life of a
  // child it reaps, which would count minutes of someone's test run into a 2 s window.
  return {
    wallS: round(wall, 2),
    oursCores: round(ours / wall, 2),
    othersCores: round(Math.max(0, busy - ours - kth) / wall, 2),
    kernelThreadCores: round(kth / wall, 2),
    stealCores: round((b.m.steal - a.m.steal) / CLOCK_TICKS / wall, 2),
  };
}

// ---------------------------------------------------------------------------------------
// CPU profiles (--cpu-prof DIR): self time per function in a .cpuprofile file.

export interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Self time per function. */
  top: Array<{ selfMs: number; pct: number; fn: string }>;
  /** Self time per area: a Node core module, a package, a directory of Ambit, or V8's (program)/(garbage collector). */
  byArea: Array<{ area: string; selfMs: number; pct: number }>;
  /** Inclusive time (self + callees) of Ambit's own functions. */
  ambitInclusive: Array<{ ms: number; pct: number; fn: string }>;
}

export function profileTop(file: string, n = 20): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: ProfNode[]; samples: number[]; timeDeltas: number[] };
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const short = (url: string) => url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/');
  const keyOf = (cf: ProfNode['callFrame']) => `${cf.functionName || '(anonymous)'}${cf.url ? ` ${short(cf.url)}:${cf.lineNumber + 1}` : ''}`;
  const areaOf = (cf: ProfNode['callFrame']) => {
    if (cf.url === '') return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
    if (cf.url.startsWith('node:')) return cf.url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
    const pkg = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(cf.url)?.[1];
    return pkg ?? short(cf.url).replace(/^dist\//, '').split('/').slice(0, 2).join('/');
  };
  const fns = new Map<string, number>();
  const areas = new Map<string, number>();
  const incl = new Map<string, number>();
  let total = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') continue;
    total += us;
    fns.set(keyOf(cf), (fns.get(keyOf(cf)) ?? 0) + us);
    areas.set(areaOf(cf), (areas.get(areaOf(cf)) ?? 0) + us);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const c = byId.get(cur)!.callFrame;
      if (!c.url.includes('/dist/') || c.url.includes('/dist/bench/')) continue;
      const k = keyOf(c);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + us);
    }
  }
  const topOf = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  const pct = (us: number) => round((100 * us) / Math.max(1, total), 1);
  return {
    totalMs: Math.round(total / 1000),
    top: topOf(fns).map(([fn, us]) => ({ selfMs: Math.round(us / 1000), pct: pct(us), fn })),
    byArea: topOf(areas).map(([area, us]) => ({ area, selfMs: Math.round(us / 1000), pct: pct(us) })),
    ambitInclusive: topOf(incl).map(([fn, us]) => ({ ms: Math.round(us / 1000), pct: pct(us), fn })),
  };
}

// ---------------------------------------------------------------------------------------

export function fmtNodes(r: Record<string, number>, unit = ''): string {
  return Object.entries(r).map(([k, v]) => `${k} ${v}${unit}`).join(', ');
}

// ---------------------------------------------------------------------------------------
// Quiet machine: wait for it before each measured window, retry a window others disturbed.

export interface QuietOptions {
  /** Seconds to wait at most for the machine to go quiet (--wait-idle). */
  waitIdle: number;
  /** Cores of other processes above which a window counts as disturbed (--idle-threshold). */
  idleThreshold: number;
  /** Re-measurements of a disturbed window (--retries). */
  retries: number;
}

/** Waits (at most waitIdle s) until processes outside the cluster use < idleThreshold cores over 2 s. */
export async function waitQuiet(watch: CpuWatch, o: QuietOptions, what: string): Promise<number> {
  const end = Date.now() + o.waitIdle * 1000;
  let warned = false;
  let last = 0;
  for (;;) {
    const a = watch.snapshot();
    await sleep(2000);
    last = windowOf(a, watch.snapshot()).othersCores;
    if (last < o.idleThreshold) return last;
    if (Date.now() > end) {
      log(`  (${what}: other processes still use ${last} cores after ${o.waitIdle} s; measuring anyway)`);
      return last;
    }
    if (!warned) log(`  (${what}: other processes use ${last} cores; waiting up to ${o.waitIdle} s for the machine to go quiet)`);
    warned = true;
  }
}

export interface Attempt<T> {
  value: T;
  window: Window;
  disturbed: boolean;
}

export interface Marks {
  start(): void;
  stop(): void;
}

/** Runs a measurement after waiting for quiet; retries when others disturbed it. Returns every attempt, the one to use first. */
export async function measured<T>(watch: CpuWatch, o: QuietOptions, what: string, fn: (w: Marks) => Promise<T>): Promise<Array<Attempt<T>>> {
  const attempts: Array<Attempt<T>> = [];
  for (let i = 0; i <= o.retries; i++) {
    await waitQuiet(watch, o, what);
    let a: ReturnType<CpuWatch['snapshot']> | undefined;
    let b: ReturnType<CpuWatch['snapshot']> | undefined;
    const value = await fn({ start: () => (a = watch.snapshot()), stop: () => (b = watch.snapshot()) });
    if (!a || !b) throw new Error(`${what}: the measured window was not marked`);
    const window = windowOf(a, b);
    const disturbed = window.othersCores > o.idleThreshold;
    attempts.push({ value, window, disturbed });
    if (!disturbed) break;
    log(`  ${what}: disturbed (others used ${window.othersCores} cores)${i < o.retries ? '; measuring again' : '; keeping it, marked disturbed'}`);
  }
  // The one used: the first undisturbed, else the least disturbed.
  attempts.sort((x, y) => Number(x.disturbed) - Number(y.disturbed) || (x.disturbed ? x.window.othersCores - y.window.othersCores : 0));
  return attempts;
}

// ---------------------------------------------------------------------------------------

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Same settings in every traffic pod of every mode: TIME_WAIT sockets of connection-rate runs must not exhaust ports. */
export function podSysctls(p: PodInfo): void {
  const r = spawnSync('ip', ['netns', 'exec', p.netns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=16000 65000'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sysctl in ${p.netns}: ${r.stderr}`);
}

/**
 * Registers the removal of a bench cluster (before `up`, so a half-created one goes too):
 * kill the bench's pod commands, `down`, warn about netns left behind, remove the state dir.
 * Cleanups run in reverse order of registration.
 */
export function registerClusterTeardown(name: string, dir: string): void {
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  let tornDown = false;
  onCleanup(async () => {
    if (tornDown) return;
    tornDown = true;
    for (const c of children) c.kill('SIGKILL');
    log(`tearing down cluster ${name}`);
    const r = await down({ dir, name });
    if (r.problems.length) log(`  down: ${r.problems.join('; ')}`);
    const left = listNetns().filter((n) => clusterNetnsPattern(name).test(n));
    if (left.length) log(`  WARNING: netns left behind: ${left.join(' ')}`);
  });
}

/** Exits with a helpful error when a tool the bench runs is missing. */
export async function requireTools(tools: Array<[string, string[]]>): Promise<void> {
  for (const [tool, args] of tools) {
    const r = await new Promise<number | null>((res) => spawn(tool, [...args], { stdio: 'ignore' }).on('error', () => res(-1)).on('close', (c) => res(c)));
    if (r === -1) throw new Error(`${tool} is missing: apt-get install -y ${tool} (scripts/setup.sh installs it)`);
  }
}

/** What a component's JSON log says: its access-log line count, and its warnings and errors grouped by message. */
export function logLines(file: string): { accessLogLines: number; warningsAndErrors: Array<{ count: number; msg: string }> } {
  let lines: string[] = [];
  try {
    lines = fs.readFileSync(file, 'utf8').split('\n');
  } catch {
    // no log
  }
  const msgs = new Map<string, number>();
  let access = 0;
  for (const l of lines) {
    const m = /"level":(\d+)/.exec(l);
    if (!m) continue;
    if (l.includes('"type":"access"')) access++;
    if (Number(m[1]) < 40) continue;
    const msg = /"msg":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 120);
    const err = /"err":"([^"]{0,160})/.exec(l)?.[1];
    const k = err ? `${msg}: ${err}` : msg;
    msgs.set(k, (msgs.get(k) ?? 0) + 1);
  }
  return { accessLogLines: access, warningsAndErrors: [...msgs.entries()].map(([msg, count]) => ({ count, msg })) };
}

/**
 * Collects the profiles cpu-profile-preload.js wrote (`cpu-<pid>.cpuprofile`, on the second
 * SIGUSR2) for the given processes, renamed to `<name>-<scenario>.cpuprofile`, with their top
 * functions, keyed by `key` (default: the name).
 */
export async function collectProfiles(dir: string, scenario: string, procs: Array<{ pid: number; name: string; key?: string }>, top = 20): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const p of procs) {
    const f = path.join(dir, `cpu-${p.pid}.cpuprofile`);
    const end = Date.now() + 20_000;
    while (!fs.existsSync(f) && Date.now() < end) await sleep(200);
    if (!fs.existsSync(f)) {
      out[p.key ?? p.name] = { error: `${p.name} wrote no profile` };
      continue;
    }
    const to = path.join(dir, `${p.name}-${scenario}.cpuprofile`);
    fs.renameSync(f, to);
    out[p.key ?? p.name] = { file: to, ...profileTop(to, top) };
  }
  return out;
}
