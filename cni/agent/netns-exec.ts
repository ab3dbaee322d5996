import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * Runs a command inside a network namespace given by path (/var/run/netns/NAME or
 * /proc/PID/ns/net) with `nsenter --net=PATH`. Synchronous and bounded in time: the callers
 * are short iptables-save/iptables-restore runs. Errors name the netns, the command and its stderr.
 */
export class NetnsCommandError extends Error {
  constructor(
    readonly netns: string,
    readonly command: string,
    readonly stderr: string,
    msg: string,
  ) {
    super(msg);
    this.name = 'NetnsCommandError';
  }
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** iptables lives in /usr/sbin, which a non-login PATH may lack. */
const EXTRA_PATH = '/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin';

/** false when the path is absent; other failures (EACCES...) throw, naming the netns. */
export function netnsExists(netns: string): boolean {
  try {
    fs.statSync(netns);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw new NetnsCommandError(netns, '', '', `cannot open netns ${netns}: ${code ?? (err as Error).message}`);
  }
}

/**
 * Refuses the netns this process itself runs in (or init's): pod rules must never land in
 * the host's own tables, whatever path a caller hands us.
 */
export function assertNotHostNetns(netns: string): void {
  const target = fs.statSync(netns);
  for (const own of ['/proc/self/ns/net', '/proc/1/ns/net']) {
    let st: fs.Stats;
    try {
      st = fs.statSync(own);
    } catch {
      continue;
    }
    if (st.ino === target.ino && st.dev === target.dev) {
      throw new NetnsCommandError(netns, '', '', `refusing to touch netns ${netns}: it is the host's own network namespace (${own}), not a pod's`);
    }
  }
}

export function runInNetns(netns: string, argv: string[], input?: string, timeoutMs = DEFAULT_TIMEOUT_MS): string {
  const command = argv.join(' ');
  const r = spawnSync('nsenter', [`--net=${netns}`, '--', ...argv], {
    input,
    encoding: 'utf8',
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
    env: { ...process.env, PATH: `${process.env.PATH ?? ''}:${EXTRA_PATH}`, LC_ALL: 'C' },
    maxBuffer: 64 << 20,
  });
  const stderr = (r.stderr ?? '').trim();
  if (r.error) {
    const why = (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT' ? `timed out after ${timeoutMs} ms` : r.error.message;
    throw new NetnsCommandError(netns, command, stderr, `${command} in netns ${netns} failed: ${why}${stderr ? `: ${stderr}` : ''}`);
  }
  if (r.status !== 0) {
    const how = r.status === null ? `killed by ${r.signal}` : `exit ${r.status}`;
    throw new NetnsCommandError(netns, command, stderr, `${command} in netns ${netns} failed (${how}): ${stderr || '(no stderr)'}`);
  }
  return r.stdout ?? '';
}
