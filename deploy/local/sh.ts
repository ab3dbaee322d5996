import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';

/** Running system commands (ip, iptables-save, the CNI plugins), bounded in time, with errors that say what failed. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin';

/** PATH for children: node's own directory first (bin/ambit and bin/ambit-cni are `#!/usr/bin/env node`). */
export function childPath(extra = process.env.PATH): string {
  const parts = [path.dirname(process.execPath), ...(extra ?? '').split(':'), ...SYSTEM_PATH.split(':')].filter((p) => p !== '');
  return [...new Set(parts)].join(':');
}

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number | null,
    readonly stdout: string,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Do not throw on a non-zero exit. */
  allowFail?: boolean;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function describe(argv: string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** Synchronous: for short commands (ip, sysctl). */
export function run(argv: string[], o: RunOptions = {}): RunResult {
  const r = spawnSync(argv[0], argv.slice(1), {
    input: o.input,
    env: o.env ?? { ...process.env, PATH: childPath() },
    timeout: o.timeoutMs ?? 15_000,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (r.error) {
    const e = r.error as NodeJS.ErrnoException;
    const why = e.code === 'ETIMEDOUT' ? `timed out after ${o.timeoutMs ?? 15_000} ms` : e.message;
    throw new CommandError(argv, null, r.stdout ?? '', r.stderr ?? '', `${describe(argv)}: ${why}`);
  }
  const res = { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (res.code !== 0 && !o.allowFail) {
    const detail = (res.stderr.trim() || res.stdout.trim()).split('\n').slice(-5).join('\n');
    throw new CommandError(argv, res.code, res.stdout, res.stderr, `${describe(argv)} failed (exit ${r.status ?? r.signal}): ${detail}`);
  }
  return res;
}

/** Asynchronous, for commands that take a while or run in parallel (CNI plugins, node one-liners). */
export function runAsync(argv: string[], o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const timeoutMs = o.timeoutMs ?? 30_000;
    const p = spawn(argv[0], argv.slice(1), { env: o.env ?? { ...process.env, PATH: childPath() }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      p.kill('SIGKILL');
    }, timeoutMs);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.stdin.on('error', () => undefined);
    p.stdin.end(o.input ?? '');
    p.on('error', (err) => {
      clearTimeout(timer);
      reject(new CommandError(argv, null, stdout, stderr, `${describe(argv)}: ${err.message}`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) return reject(new CommandError(argv, null, stdout, stderr, `${describe(argv)}: timed out after ${timeoutMs} ms`));
      if (code !== 0 && !o.allowFail) {
        const detail = (stderr.trim() || stdout.trim()).split('\n').slice(-5).join('\n');
        return reject(new CommandError(argv, code, stdout, stderr, `${describe(argv)} failed (exit ${code ?? signal}): ${detail}`));
      }
      resolve({ code, stdout, stderr });
    });
  });
}

/** argv that runs `argv` inside the named netns (`ip netns exec` also applies /etc/netns/<name>/). */
export function inNetns(netns: string, argv: string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...argv];
}

export function has(cmd: string, args: string[] = ['--version']): boolean {
  try {
    return run([cmd, ...args], { allowFail: true, timeoutMs: 5000 }).code === 0;
  } catch {
    return false;
  }
}
