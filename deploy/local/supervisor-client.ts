import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ClusterPaths } from './paths';
import { isAlive, startTimeOf } from './procs';
import type { ProcessesFile, ProcSpec, ProcStatus, SupervisorRequest, SupervisorResponse } from './supervisor-protocol';

/** The CLI's side of the supervisor: start it detached, ask it things, read what it recorded. */
export function request(paths: ClusterPaths, req: SupervisorRequest, timeoutMs = 30_000): Promise<SupervisorResponse> {
  return new Promise((resolve, reject) => {
    const c = net.connect(paths.supervisorSocket);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`the supervisor did not answer "${req.op}" within ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d: string) => (buf += d));
    c.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot reach the supervisor at ${paths.supervisorSocket}: ${err.message}`));
    });
    c.on('close', () => {
      clearTimeout(timer);
      const line = buf.split('\n')[0];
      if (!line) return reject(new Error('the supervisor closed the connection without an answer'));
      try {
        resolve(JSON.parse(line) as SupervisorResponse);
      } catch {
        reject(new Error(`the supervisor answered something that is not JSON: ${line.slice(0, 200)}`));
      }
    });
  });
}

async function ask(paths: ClusterPaths, req: SupervisorRequest, timeoutMs?: number): Promise<SupervisorResponse & { ok: true }> {
  const res = await request(paths, req, timeoutMs);
  if (!res.ok) throw new Error(`supervisor: ${res.error}`);
  return res;
}

export async function startProc(paths: ClusterPaths, spec: ProcSpec): Promise<ProcStatus> {
  const res = await ask(paths, { op: 'start', spec });
  return res.status!;
}

export async function stopProc(paths: ClusterPaths, id: string, forget = false, timeoutMs = 30_000): Promise<ProcStatus | undefined> {
  const res = await request(paths, { op: 'stop', id, forget }, timeoutMs);
  return res.ok ? res.status : undefined;
}

export async function supervisorAlive(paths: ClusterPaths): Promise<boolean> {
  try {
    return (await request(paths, { op: 'ping' }, 3000)).ok;
  } catch {
    return false;
  }
}

export function readProcesses(paths: ClusterPaths): ProcessesFile | undefined {
  try {
    return JSON.parse(fs.readFileSync(paths.processesFile, 'utf8')) as ProcessesFile;
  } catch {
    return undefined;
  }
}

/** The recorded status of each process, with states corrected for PIDs that are gone (the supervisor died). */
export function procStatuses(paths: ClusterPaths): Record<string, ProcStatus & { alive: boolean }> {
  const f = readProcesses(paths);
  const supervisorUp = !!f && isAlive({ pid: f.supervisor.pid, startTime: f.supervisor.startTime });
  const out: Record<string, ProcStatus & { alive: boolean }> = {};
  for (const [id, s] of Object.entries(f?.procs ?? {})) {
    const alive = s.pid !== undefined && isAlive({ pid: s.pid, startTime: s.startTime });
    out[id] = { ...s, alive, state: s.state === 'running' && !alive ? 'exited' : s.state === 'backoff' && !supervisorUp ? 'exited' : s.state };
  }
  return out;
}

/** The caller's environment without what only concerns the caller (a test runner's context, credentials). */
function supervisorEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('NODE_TEST') || k === 'AMBIT_CONFIG' || k === 'AMBIT_BOOTSTRAP_TOKEN') delete env[k];
  return env;
}

/**
 * Starts the supervisor for the cluster in `paths.dir`, detached from the CLI (its own
 * session, no terminal, output to logs/supervisor.log), and waits until it answers.
 */
export async function spawnSupervisor(paths: ClusterPaths, env: NodeJS.ProcessEnv = supervisorEnv()): Promise<{ pid: number; startTime?: string }> {
  fs.mkdirSync(paths.logsDir, { recursive: true, mode: 0o700 });
  const fd = fs.openSync(paths.supervisorLog, 'a', 0o600);
  let pid: number | undefined;
  try {
    const child = spawn(process.execPath, [path.join(__dirname, 'supervisor.js'), paths.dir], {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: paths.dir,
      env,
    });
    pid = child.pid;
    child.unref();
  } finally {
    fs.closeSync(fd);
  }
  if (!pid) throw new Error('could not start the supervisor');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (await supervisorAlive(paths)) return { pid, startTime: startTimeOf(pid) };
    if (!isAlive({ pid })) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  let tail = '';
  try {
    tail = fs.readFileSync(paths.supervisorLog, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    // no log
  }
  throw new Error(`the supervisor did not come up (see ${paths.supervisorLog})${tail ? `:\n${tail}` : ''}`);
}
