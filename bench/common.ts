// Shared helpers of the benchmarks: a control plane in a child process (so its CPU and
// memory are its own), /proc sampling, metric scraping, flags, statistics, cleanup.
import { spawn, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..');
export const AMBIT_BIN = path.join(REPO, 'bin', 'ambit');

/** Linux USER_HZ: the unit of utime/stime in /proc/<pid>/stat (100 on every mainstream architecture). */
const CLOCK_TICKS = 100;

// ---------------------------------------------------------------------------------------
// Flags: --name value or --name=value; unknown flags are an error.

export function parseFlags<T extends Record<string, number | string | boolean>>(defaults: T, usage: string): T {
  const out: Record<string, number | string | boolean> = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(`${usage}\n\nflags (defaults):\n${Object.entries(defaults).map(([k, v]) => `  --${k} ${JSON.stringify(v)}`).join('\n')}\n`);
      process.exit(0);
    }
    const m = /^--([a-zA-Z][\w-]*)(?:=(.*))?$/.exec(a);
    if (!m) throw new Error(`unexpected argument "${a}" (try --help)`);
    const key = m[1].replace(/-([a-z])/g, (_s, c: string) => c.toUpperCase());
    if (!(key in defaults)) throw new Error(`unknown flag --${m[1]} (try --help)`);
    const def = defaults[key];
    if (typeof def === 'boolean' && m[2] === undefined) {
      out[key] = true;
      continue;
    }
    const raw = m[2] ?? argv[++i];
    if (raw === undefined) throw new Error(`--${m[1]} needs a value`);
    if (typeof def === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n)) throw new Error(`--${m[1]}: "${raw}" is not a number`);
      out[key] = n;
    } else if (typeof def === 'boolean') {
      out[key] = raw === 'true' || raw === '1';
    } else {
      out[key] = raw;
    }
  }
  return out as T;
}

// ---------------------------------------------------------------------------------------
// Cleanup: everything registered here runs once, on normal exit, on error, on a signal,
// and when the global deadline fires.

const cleanups: Array<() => void | Promise<void>> = [];
let cleaning: Promise<void> | undefined;

export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn);
}

export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        process.stderr.write(`cleanup: ${(err as Error).message}\n`);
      }
    }
  })();
  return cleaning;
}

/** Runs `main` with a hard deadline and cleanup whatever happens; sets the exit code. */
export function runBench(name: string, deadlineMs: number, main: () => Promise<void>): void {
  const deadline = setTimeout(() => {
    process.stderr.write(`${name}: gave up after ${Math.round(deadlineMs / 1000)} s (--timeout); cleaning up\n`);
    void cleanup().finally(() => process.exit(2));
  }, deadlineMs);
  deadline.unref();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`${name}: ${sig}; cleaning up\n`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  main()
    .then(
      () => cleanup().then(() => process.exit(process.exitCode ?? 0)),
      (err: unknown) => {
        process.stderr.write(`${name} failed: ${(err as Error)?.stack ?? String(err)}\n`);
        return cleanup().then(() => process.exit(1));
      },
    );
}

export function tmpDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ambit-bench-${prefix}-`));
  onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// ---------------------------------------------------------------------------------------
// The control plane as a child process.

export interface ChildControlPlane {
  proc: ChildProcess;
  pid: number;
  grpcPort: number;
  metricsPort: number;
  address: string;
  adminConfig: string;
  logFile: string;
  stop(): Promise<void>;
}

export async function spawnControlPlane(dataDir: string, extra: string[] = [], nodeArgs: string[] = []): Promise<ChildControlPlane> {
  const logFile = path.join(dataDir, '..', `${path.basename(dataDir)}.log`);
  const log = fs.openSync(logFile, 'a');
  const proc = spawn(
    process.execPath,
    [...nodeArgs, AMBIT_BIN, 'controlplane', '--data-dir', dataDir, '--grpc-addr', '127.0.0.1:0', '--monitoring-addr', '127.0.0.1:0', ...extra],
    { stdio: ['ignore', log, 'pipe'], cwd: REPO },
  );
  fs.closeSync(log);
  if (proc.pid === undefined) throw new Error('could not spawn the control plane');
  const pid = proc.pid;
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) =>
    proc.on('exit', (code, signal) => {
      exitCode = code ?? (signal ? -1 : null);
      resolve();
    }),
  );
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (exitCode !== undefined) return;
    process.kill(pid, 'SIGTERM');
    const t = setTimeout(() => {
      if (exitCode === undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }, 5000);
    await exited;
    clearTimeout(t);
  };
  onCleanup(stop);

  let err = '';
  const ports = await new Promise<[number, number]>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the control plane did not start within 60 s:\n${err}`)), 60_000);
    proc.stderr!.on('data', (d: Buffer) => {
      fs.appendFileSync(logFile, d);
      if (err.length < 64 * 1024) err += d.toString();
      const m = /control plane ready: gRPC on port (\d+), metrics on (\d+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve([Number(m[1]), Number(m[2])]);
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(`the control plane exited (code ${exitCode}) before it was ready:\n${err}`));
    });
  });
  return {
    proc, pid, grpcPort: ports[0], metricsPort: ports[1], address: `127.0.0.1:${ports[0]}`,
    adminConfig: path.join(dataDir, 'admin.yaml'), logFile, stop,
  };
}

// ---------------------------------------------------------------------------------------
// Process figures from /proc.

export interface ProcSample {
  /** utime + stime, seconds (all threads, workers included). */
  cpuSeconds: number;
  rssBytes: number;
  /** Peak RSS so far (VmHWM). */
  hwmBytes: number;
}

export function procSample(pid: number): ProcSample {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; the fields after it are space-separated.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { cpuSeconds: (utime + stime) / CLOCK_TICKS, rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** Whole-machine CPU counters from /proc/stat, seconds summed over all cores. */
export interface MachineCpu {
  busy: number;
  steal: number;
}

export function machineCpu(): MachineCpu {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return { busy: (user + nice + system + irq + softirq) / CLOCK_TICKS, steal: (steal ?? 0) / CLOCK_TICKS };
}

/**
 * Watches a measured window for CPU used by processes other than the ones measured (other
 * work on a shared machine skews every figure): start() before, stop() after.
 */
export class Interference {
  private m0?: MachineCpu;
  private ours0 = 0;
  private t0 = 0;
  constructor(private readonly pids: number[]) {}

  private ours(): number {
    return [process.pid, ...this.pids].reduce((n, pid) => n + procSample(pid).cpuSeconds, 0);
  }

  start(): this {
    this.m0 = machineCpu();
    this.ours0 = this.ours();
    this.t0 = Date.now();
    return this;
  }

  /** Cores used on average by other processes, and lost to the hypervisor, during the window. */
  stop(): { otherCores: number; stealCores: number } {
    const m1 = machineCpu();
    const wall = Math.max(0.001, (Date.now() - this.t0) / 1000);
    const other = m1.busy - this.m0!.busy - (this.ours() - this.ours0);
    return { otherCores: round(Math.max(0, other) / wall, 2), stealCores: round((m1.steal - this.m0!.steal) / wall, 2) };
  }
}

/**
 * Waits (at most `maxSeconds`) until processes other than ours use under `threshold` cores
 * over a 2 s window, so that a measured window starts on a quiet machine. Returns whether
 * it got quiet; 0 seconds skips the wait.
 */
export async function waitForIdle(maxSeconds: number, ourPids: number[], what: string, threshold = 0.1): Promise<boolean> {
  if (maxSeconds <= 0) return true;
  const end = Date.now() + maxSeconds * 1000;
  let warned = false;
  while (Date.now() < end) {
    const w = new Interference(ourPids).start();
    await sleep(2000);
    const { otherCores } = w.stop();
    if (otherCores < threshold) return true;
    if (!warned) process.stderr.write(`  (${what}: other processes use ${otherCores} cores; waiting up to ${maxSeconds} s for the machine to go quiet)\n`);
    warned = true;
  }
  process.stderr.write(`  (${what}: the machine did not go quiet; measuring anyway, see otherProcessesCores)\n`);
  return false;
}

export function loadAverage(): number[] {
  return os.loadavg().map((x) => round(x, 2));
}

// ---------------------------------------------------------------------------------------
// Prometheus text scraping (loopback only).

export function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('metrics scrape timed out')));
    req.on('error', reject);
  });
}

/** Value of one sample, e.g. metric('ambit_xds_push_latency_seconds_count', {type: 'ztunnel'}); 0 when absent. */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  return found ? sum : 0;
}

/** Cumulative histogram buckets: le -> count. */
export function histogram(text: string, name: string, labels: Record<string, string> = {}): Array<{ le: number; count: number }> {
  const out: Array<{ le: number; count: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m || m[1] !== `${name}_bucket`) continue;
    const have = Object.fromEntries([...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (!Object.entries(labels).every(([k, v]) => have[k] === v)) continue;
    out.push({ le: have.le === '+Inf' ? Infinity : Number(have.le), count: Number(m[3]) });
  }
  return out.sort((a, b) => a.le - b.le);
}

// ---------------------------------------------------------------------------------------
// Statistics and output.

/** Nearest-rank percentile of a non-empty list. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export function mib(bytes: number): number {
  return round(bytes / (1024 * 1024), 1);
}

export function table(rows: Array<[string, string | number]>): string {
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs `n` tasks with at most `concurrency` in flight. */
export async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, concurrency) }, worker));
  return out;
}

export function machine(): { cpus: number; cpuModel: string; node: string; platform: string; memGiB: number } {
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    memGiB: round(os.totalmem() / 1024 ** 3, 1),
  };
}
