import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { writeFileAtomic } from '../../lib/util/fs-atomic';
import { ClusterPaths } from './paths';
import { startTimeOf } from './procs';
import type { ProcessesFile, ProcSpec, ProcStatus, SupervisorRequest, SupervisorResponse } from './supervisor-protocol';

/**
 * The supervisor: a detached process per cluster that plays kubelet for the processes of
 * the cluster (control plane, agents, ztunnels, pods). It starts them, appends their
 * output to log files, restarts the ones that end according to their policy with
 * exponential backoff (1 s doubling to 30 s; reset after 10 s of running), records
 * PIDs in processes.json, and stops them on request (SIGTERM to the process group, SIGKILL
 * after a grace period). It is run as `node supervisor.js <state dir>`; see
 * supervisor-client.ts for how the CLI starts and talks to it.
 */
const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const STABLE_AFTER_MS = 10_000;
const DEFAULT_GRACE_MS = 10_000;

interface Entry {
  spec: ProcSpec;
  status: ProcStatus;
  child?: ChildProcess;
  timer?: NodeJS.Timeout;
  failures: number;
  stopping: boolean;
  exited?: Promise<void>;
}

function now(): string {
  return new Date().toISOString();
}

export class Supervisor {
  private readonly entries = new Map<string, Entry>();
  private seq = 0;
  private server?: net.Server;
  private shuttingDown = false;
  private readonly startedAt = now();

  constructor(readonly paths: ClusterPaths, private readonly log: (msg: string) => void = (m) => process.stdout.write(`${now()} ${m}\n`)) {}

  async listen(): Promise<void> {
    try {
      fs.unlinkSync(this.paths.supervisorSocket);
    } catch {
      // not there
    }
    this.server = net.createServer((c) => this.serve(c));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.paths.supervisorSocket, () => resolve());
    });
    fs.chmodSync(this.paths.supervisorSocket, 0o600);
    this.persist();
    this.log(`supervisor ${process.pid} listening on ${this.paths.supervisorSocket}`);
  }

  private serve(c: net.Socket): void {
    c.on('error', () => undefined);
    const rl = readline.createInterface({ input: c });
    rl.once('line', (line) => {
      rl.close();
      let req: SupervisorRequest;
      try {
        req = JSON.parse(line) as SupervisorRequest;
      } catch {
        c.end(`${JSON.stringify({ ok: false, error: 'request is not JSON' })}\n`);
        return;
      }
      this.handle(req).then(
        (res) => c.end(`${JSON.stringify(res)}\n`),
        (err: Error) => c.end(`${JSON.stringify({ ok: false, error: err.message })}\n`),
      );
    });
  }

  async handle(req: SupervisorRequest): Promise<SupervisorResponse> {
    switch (req.op) {
      case 'ping':
        return { ok: true, pid: process.pid };
      case 'status':
        return { ok: true, procs: this.all() };
      case 'start':
        if (this.shuttingDown) return { ok: false, error: 'the supervisor is shutting down' };
        return { ok: true, status: this.start(req.spec) };
      case 'stop': {
        const status = await this.stop(req.id, !!req.forget);
        return status ? { ok: true, status } : { ok: false, error: `no process "${req.id}"` };
      }
      case 'shutdown':
        setImmediate(() => void this.shutdown());
        return { ok: true, pid: process.pid };
      default:
        return { ok: false, error: `unknown op ${(req as { op?: unknown }).op}` };
    }
  }

  all(): ProcStatus[] {
    return [...this.entries.values()].map((e) => ({ ...e.status })).sort((a, b) => a.seq - b.seq);
  }

  start(spec: ProcSpec): ProcStatus {
    if (!spec || typeof spec.id !== 'string' || !Array.isArray(spec.argv) || spec.argv.length === 0 || typeof spec.log !== 'string') {
      throw new Error('start needs a spec with id, argv and log');
    }
    const old = this.entries.get(spec.id);
    if (old && (old.child || old.timer)) return { ...old.status };
    const entry: Entry = {
      spec,
      status: { id: spec.id, argv: spec.argv, log: spec.log, restart: spec.restart, state: 'running', restarts: 0, seq: old?.status.seq ?? ++this.seq },
      failures: 0,
      stopping: false,
    };
    this.entries.set(spec.id, entry);
    this.launch(entry);
    return { ...entry.status };
  }

  private launch(entry: Entry): void {
    const { spec, status } = entry;
    entry.timer = undefined;
    let fd: number | undefined;
    try {
      fs.mkdirSync(path.dirname(spec.log), { recursive: true });
      fd = fs.openSync(spec.log, 'a', 0o600);
      if (spec.logHeader !== false) fs.writeSync(fd, `--- ${now()} ambit dev supervisor: start${status.restarts > 0 ? ` (restart ${status.restarts})` : ''}: ${spec.argv.join(' ')}\n`);
    } catch (err) {
      this.log(`${spec.id}: cannot open log ${spec.log}: ${(err as Error).message}`);
    }
    let child: ChildProcess;
    try {
      child = spawn(spec.argv[0], spec.argv.slice(1), {
        env: spec.env ?? process.env,
        cwd: spec.cwd,
        stdio: ['ignore', fd ?? 'ignore', fd ?? 'ignore'],
        detached: true, // its own process group: stop() signals the whole group
      });
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    entry.child = child;
    const started = Date.now();
    status.state = 'running';
    status.pid = child.pid;
    status.startTime = child.pid ? startTimeOf(child.pid) : undefined;
    status.startedAt = now();
    status.nextStartAt = undefined;
    let done!: () => void;
    entry.exited = new Promise<void>((r) => (done = r));
    let ended = false;
    const onEnd = (code: number | null, sig: string | null, error?: Error) => {
      if (ended) return;
      ended = true;
      entry.child = undefined;
      status.pid = undefined;
      status.startTime = undefined;
      status.lastExit = { code, signal: sig, at: now() };
      this.log(`${spec.id}: ${error ? `could not start: ${error.message}` : `exited (${sig ? `signal ${sig}` : `code ${code}`})`}`);
      if (error) {
        try {
          fs.appendFileSync(spec.log, `--- ${now()} ambit dev supervisor: could not start: ${error.message}\n`);
        } catch {
          // ignore
        }
      }
      const failed = error !== undefined || code !== 0;
      if (entry.stopping || this.shuttingDown) {
        status.state = 'stopped';
      } else if (spec.restart === 'always' || (spec.restart === 'on-failure' && failed)) {
        entry.failures = Date.now() - started >= STABLE_AFTER_MS ? 1 : entry.failures + 1;
        const delay = Math.min(BACKOFF_BASE_MS * 2 ** (entry.failures - 1), BACKOFF_MAX_MS);
        status.state = 'backoff';
        status.nextStartAt = new Date(Date.now() + delay).toISOString();
        entry.timer = setTimeout(() => {
          status.restarts++;
          this.launch(entry);
        }, delay);
      } else {
        status.state = failed ? 'failed' : 'exited';
      }
      this.persist();
      done();
    };
    child.once('exit', (code, sig) => onEnd(code, sig));
    child.once('error', (err) => onEnd(null, null, err));
    this.log(`${spec.id}: started pid ${child.pid ?? '?'}: ${spec.argv.join(' ')}`);
    this.persist();
  }

  async stop(id: string, forget: boolean): Promise<ProcStatus | undefined> {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    entry.stopping = true;
    if (entry.timer) {
      clearTimeout(entry.timer);
      entry.timer = undefined;
      entry.status.state = 'stopped';
      entry.status.nextStartAt = undefined;
    }
    const child = entry.child;
    if (child?.pid) {
      const pid = child.pid;
      const kill = (sig: NodeJS.Signals) => {
        try {
          process.kill(-pid, sig);
        } catch {
          try {
            process.kill(pid, sig);
          } catch {
            // gone
          }
        }
      };
      kill('SIGTERM');
      const grace = entry.spec.stopGraceMs ?? DEFAULT_GRACE_MS;
      const timedOut = await Promise.race([entry.exited!.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), grace))]);
      if (timedOut) {
        this.log(`${id}: did not stop within ${grace} ms; SIGKILL`);
        kill('SIGKILL');
        await Promise.race([entry.exited, new Promise((r) => setTimeout(r, 3000))]);
      }
      // Whatever it left in its process group goes too.
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // none left
      }
    }
    const status = { ...entry.status };
    if (forget) this.entries.delete(id);
    this.persist();
    return status;
  }

  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.log('shutting down');
    const ids = this.all().map((s) => s.id).reverse();
    const tiers = [
      ids.filter((id) => id.startsWith('pod/')),
      ids.filter((id) => id.endsWith('/ztunnel')),
      ids.filter((id) => id.endsWith('/cni-agent')),
    ];
    const rest = ids.filter((id) => !tiers.some((t) => t.includes(id)));
    for (const t of tiers) await Promise.all(t.map((id) => this.stop(id, false)));
    for (const id of rest) await this.stop(id, false);
    this.server?.close();
    try {
      fs.unlinkSync(this.paths.supervisorSocket);
    } catch {
      // gone
    }
    this.persist();
    this.log('stopped everything; exiting');
    process.exit(0);
  }

  private persist(): void {
    const file: ProcessesFile = {
      supervisor: { pid: process.pid, startTime: startTimeOf(process.pid), startedAt: this.startedAt, socket: this.paths.supervisorSocket },
      procs: Object.fromEntries(this.all().map((s) => [s.id, s])),
    };
    try {
      writeFileAtomic(this.paths.processesFile, JSON.stringify(file, null, 2), 0o600);
    } catch (err) {
      // The state dir is gone (a `down` that could not reach us): nothing left to supervise for.
      this.log(`cannot write ${this.paths.processesFile}: ${(err as Error).message}`);
    }
  }
}

export async function runSupervisor(dir: string): Promise<void> {
  const s = new Supervisor(new ClusterPaths(dir));
  process.on('SIGTERM', () => void s.shutdown());
  process.on('SIGINT', () => void s.shutdown());
  process.on('SIGHUP', () => undefined);
  await s.listen();
}

if (require.main === module) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: supervisor.js <cluster state dir>\n');
    process.exit(2);
  }
  runSupervisor(dir).catch((err: Error) => {
    process.stderr.write(`supervisor: ${err.message}\n`);
    process.exit(1);
  });
}
