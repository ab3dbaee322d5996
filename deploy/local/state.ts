import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../../lib/util/fs-atomic';
import { ClusterPaths } from './paths';
import type { ControlPlaneSpec, HostSpec } from './topology';

/**
 * The cluster's own records. cluster.json is written by `up` and `down` only; each pod
 * has its own file under pods/ (created exclusively, so concurrent `pod run`s of one
 * name cannot both win); processes.json belongs to the supervisor.
 */
export interface ClusterState {
  name: string;
  dir: string;
  /** creating while `up` runs; up when it finished. */
  phase: 'creating' | 'up';
  createdAt: string;
  nodes: number;
  hosts: HostSpec[];
  fabric: { netns: string; bridge: string };
  controlPlane: ControlPlaneSpec;
  supervisor?: { pid: number; startTime?: string };
  logLevel: string;
  /** The package that created it (bin/ambit the components run). */
  repo: string;
}

export interface PodRecord {
  name: string;
  namespace: string;
  node: string;
  uid: string;
  containerId: string;
  netns: string;
  serviceAccount: string;
  labels: Record<string, string>;
  phase: 'creating' | 'running' | 'deleting';
  ip?: string;
  ips: string[];
  /** The CNI result of the last plugin of the chain (cached for DEL, as the spec asks). */
  cniResult?: unknown;
  /** The plugins ADD succeeded for, in order: DEL runs them in reverse. */
  cniAdded: string[];
  command: string[];
  env: Record<string, string>;
  cwd: string;
  restart: 'always' | 'on-failure' | 'never';
  log: string;
  procId: string;
  createdAt: string;
}

export function readCluster(paths: ClusterPaths): ClusterState | undefined {
  let text: string;
  try {
    text = fs.readFileSync(paths.clusterFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as ClusterState;
  } catch {
    return undefined; // torn by a crash: `down` falls back to the naming convention
  }
}

export function writeCluster(paths: ClusterPaths, s: ClusterState): void {
  writeFileAtomic(paths.clusterFile, JSON.stringify(s, null, 2), 0o600);
}

/** Creates the pod's record; false when one exists already. */
export function createPodRecord(paths: ClusterPaths, p: PodRecord): boolean {
  fs.mkdirSync(paths.podsDir, { recursive: true, mode: 0o700 });
  try {
    fs.writeFileSync(paths.podRecord(p.namespace, p.name), JSON.stringify(p, null, 2), { flag: 'wx', mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

export function writePodRecord(paths: ClusterPaths, p: PodRecord): void {
  writeFileAtomic(paths.podRecord(p.namespace, p.name), JSON.stringify(p, null, 2), 0o600);
}

export function readPodRecord(paths: ClusterPaths, namespace: string, name: string): PodRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(paths.podRecord(namespace, name), 'utf8')) as PodRecord;
  } catch {
    return undefined;
  }
}

export function removePodRecord(paths: ClusterPaths, namespace: string, name: string): void {
  fs.rmSync(paths.podRecord(namespace, name), { force: true });
}

export function listPodRecords(paths: ClusterPaths): PodRecord[] {
  let files: string[];
  try {
    files = fs.readdirSync(paths.podsDir).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
  } catch {
    return [];
  }
  const out: PodRecord[] = [];
  for (const f of files) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(paths.podsDir, f), 'utf8')) as PodRecord);
    } catch {
      // being written or torn; skip
    }
  }
  return out.sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
}

/** What the host's cni agent decided about each pod (its pods.json), by container id. */
export function agentPods(paths: ClusterPaths, host: string): Map<string, { enrolled: boolean }> {
  try {
    const list = JSON.parse(fs.readFileSync(paths.hostAgentPods(host), 'utf8')) as Array<{ containerId: string; enrolled: boolean }>;
    return new Map(list.map((p) => [p.containerId, { enrolled: !!p.enrolled }]));
  } catch {
    return new Map();
  }
}
