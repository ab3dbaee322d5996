import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

export function haveTools(...tools: string[]): boolean {
  return tools.every((t) => {
    try {
      execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}

/** Whether a command runs successfully here: how netns tests decide to skip with a reason. */
export function hasCommand(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function uniq(): string {
  return randomBytes(3).toString('hex');
}

/**
 * A small L2 network of "pods" for tests: a bridge in its own netns and one netns per pod
 * with a veth into it. Everything is named with a random suffix and removed by destroy().
 */
export class TestNet {
  readonly id = uniq();
  readonly fabric = `amb-t${this.id}-br`;
  readonly pods: Array<{ name: string; netns: string; ip: string; ifName: string }> = [];
  private readonly procs: ChildProcess[] = [];

  constructor(private readonly subnet = `10.77.${Math.floor(Math.random() * 200) + 20}`) {
    sh('ip', ['netns', 'add', this.fabric]);
    sh('ip', ['-n', this.fabric, 'link', 'add', 'br0', 'type', 'bridge']);
    sh('ip', ['-n', this.fabric, 'link', 'set', 'br0', 'up']);
    sh('ip', ['-n', this.fabric, 'link', 'set', 'lo', 'up']);
  }

  addPod(name: string): { name: string; netns: string; ip: string; path: string } {
    const i = this.pods.length + 2;
    const netns = `amb-t${this.id}-${name}`;
    const ip = `${this.subnet}.${i}`;
    const hostIf = `vt${this.id}${i}`;
    sh('ip', ['netns', 'add', netns]);
    sh('ip', ['link', 'add', hostIf, 'netns', this.fabric, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    sh('ip', ['-n', this.fabric, 'link', 'set', hostIf, 'master', 'br0', 'up']);
    sh('ip', ['-n', netns, 'addr', 'add', `${ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    // Service VIPs and anything else leave through eth0, so routing works before NAT rewrites them.
    sh('ip', ['-n', netns, 'route', 'add', 'default', 'dev', 'eth0']);
    this.pods.push({ name, netns, ip, ifName: hostIf });
    return { name, netns, ip, path: `/var/run/netns/${netns}` };
  }

  /** A long-running process inside a pod; killed by destroy(). */
  spawnIn(netns: string, cmd: string, args: string[]): ChildProcess {
    const p = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    return p;
  }

  /** Runs a command inside a pod and returns its output and exit code. */
  execIn(netns: string, cmd: string, args: string[], timeoutMs = 20_000): Promise<{ code: number | null; out: string; err: string }> {
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('close', (code) => resolve({ code, out, err }));
    });
  }

  destroy(): void {
    for (const p of this.procs) {
      if (p.exitCode === null && p.pid) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const p of this.pods) {
      try {
        sh('ip', ['netns', 'del', p.netns]);
      } catch {
        // already gone
      }
    }
    try {
      sh('ip', ['netns', 'del', this.fabric]);
    } catch {
      // already gone
    }
  }
}

/** A node one-liner HTTP client for inside a pod: prints the body, exits 0 on 2xx. */
export function httpGetScript(url: string, timeoutMs = 5000): string[] {
  // exitCode 3 first: a request that neither answers nor fails lets the loop drain (the timeout timer is unref'd).
  return ['-e', `process.exitCode = 3; fetch(${JSON.stringify(url)}, { signal: AbortSignal.timeout(${timeoutMs}) }).then(async (r) => { process.stdout.write(await r.text()); process.exit(r.ok ? 0 : 2); }, (e) => { process.stderr.write(String(e && (e.cause || e))); process.exit(1); })`];
}

/** A node one-liner HTTP server for inside a pod: answers with a fixed text. */
export function httpServerScript(port: number, text: string): string[] {
  return ['-e', `require('http').createServer((q, s) => { s.end(${JSON.stringify(text)}); }).listen(${port}, '0.0.0.0', () => console.log('listening'))`];
}

/** Polls `fn` every 250 ms until it returns something truthy; the timeout error names `what` and the last failure. */
export async function eventually<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
