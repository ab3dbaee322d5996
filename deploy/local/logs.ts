import fs from 'node:fs';
import { ClusterOptions, openCluster } from './cluster';
import { COMPONENTS, ComponentName, componentLog } from './components';
import { podLogPath } from './pods';

/** Log files: one per pod, one per component (per host for agents and ztunnels), one for the supervisor. */
export interface LogsOptions extends ClusterOptions {
  pod?: string;
  namespace?: string;
  component?: string;
  node?: string;
}

export function logPath(o: LogsOptions): string {
  if (o.component) {
    const { paths, state } = openCluster(o);
    if (o.component === 'supervisor') return paths.supervisorLog;
    if (!(COMPONENTS as readonly string[]).includes(o.component)) {
      throw new Error(`unknown component "${o.component}" (one of ${[...COMPONENTS, 'supervisor'].join(', ')})`);
    }
    const c = o.component as ComponentName;
    if (c === 'controlplane' || c === 'cp-proxy') return componentLog(paths, c);
    const node = o.node ?? 'node1';
    if (!state.hosts.some((h) => h.name === node)) throw new Error(`no host "${node}" in the cluster (hosts: ${state.hosts.map((h) => h.name).join(', ')})`);
    return componentLog(paths, c, node);
  }
  if (!o.pod) throw new Error('give a pod name, or --component controlplane|cp-proxy|cni-agent|ztunnel|supervisor (with --node for the last two)');
  return podLogPath({ ...o, name: o.pod });
}

/** The last `lines` lines (all when undefined). */
export function readLog(file: string, lines?: number): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw err;
  }
  if (lines === undefined) return text;
  const all = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  return lines <= 0 ? '' : `${all.slice(-lines).join('\n')}\n`;
}

/** Calls `write` with what is appended to the file, until the returned function is called. */
export function follow(file: string, from: number, write: (s: string) => void, intervalMs = 300): () => void {
  let pos = from;
  const timer = setInterval(() => {
    let size: number;
    try {
      size = fs.statSync(file).size;
    } catch {
      return;
    }
    if (size < pos) pos = 0; // truncated
    if (size === pos) return;
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(size - pos);
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      pos += n;
      write(buf.subarray(0, n).toString('utf8'));
    } finally {
      fs.closeSync(fd);
    }
  }, intervalMs);
  return () => clearInterval(timer);
}
