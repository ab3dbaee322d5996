import fs from 'node:fs';
import { killAndWait } from './procs';
import { inNetns, run } from './sh';

/** Named network namespaces (`ip netns`): the only kind of namespace the local cluster creates. */
export const NETNS_DIR = '/var/run/netns';

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

export function listNetns(): string[] {
  try {
    return fs.readdirSync(NETNS_DIR).filter((n) => !n.startsWith('.'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

export function netnsExists(name: string): boolean {
  return fs.existsSync(netnsPath(name));
}

export function addNetns(name: string): void {
  run(['ip', 'netns', 'add', name]);
  run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

/** PIDs of the processes inside the netns (`ip netns pids`). */
export function netnsPids(name: string): number[] {
  const r = run(['ip', 'netns', 'pids', name], { allowFail: true });
  if (r.code !== 0) return [];
  return r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number).filter((p) => p !== process.pid);
}

/**
 * Ends every process still inside the netns (SIGTERM, then SIGKILL), by PID, then deletes
 * it. A netns with a process in it would outlive its name. Absent: nothing to do.
 */
export async function deleteNetns(name: string, graceMs = 3000): Promise<void> {
  if (!netnsExists(name)) return;
  const pids = netnsPids(name);
  if (pids.length > 0) await killAndWait(pids.map((pid) => ({ pid })), graceMs);
  const r = run(['ip', 'netns', 'del', name], { allowFail: true });
  if (r.code !== 0 && netnsExists(name)) throw new Error(`ip netns del ${name}: ${r.stderr.trim()}`);
}

export function sysctl(netns: string, key: string, value: string): void {
  run(inNetns(netns, ['sysctl', '-q', '-w', `${key}=${value}`]));
}

export interface IfAddress {
  ifname: string;
  address: string;
}

/** IPv4 addresses inside the netns, without lo. */
export function addresses(netns: string): IfAddress[] {
  const r = run(['ip', '-n', netns, '-j', '-4', 'addr', 'show'], { allowFail: true });
  if (r.code !== 0) return [];
  try {
    const links = JSON.parse(r.stdout) as Array<{ ifname: string; addr_info?: Array<{ local: string; prefixlen: number }> }>;
    return links.filter((l) => l.ifname !== 'lo').flatMap((l) => (l.addr_info ?? []).map((a) => ({ ifname: l.ifname, address: `${a.local}/${a.prefixlen}` })));
  } catch {
    return [];
  }
}
