import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ensureNamespace } from './admin';
import { cniAdd, cniDel, PodNetworkArgs, readConflist, resultIps } from './cni';
import { ClusterOptions, openCluster } from './cluster';
import { addNetns, deleteNetns, netnsExists, netnsPath } from './netns';
import { ClusterPaths, etcNetnsDir } from './paths';
import { killAndWait } from './procs';
import { childPath, has, inNetns } from './sh';
import { agentPods, ClusterState, createPodRecord, listPodRecords, PodRecord, readPodRecord, removePodRecord, writePodRecord } from './state';
import { procStatuses, startProc, stopProc, supervisorAlive } from './supervisor-client';
import type { RestartPolicy } from './supervisor-protocol';
import { checkNamespace, checkPodName, hostIndex, POD_IF, podNameserver, podNetns } from './topology';

/**
 * The container runtime + kubelet for pods: a pod is a netns attached to its host by the
 * CNI chain, with one process (run by the supervisor) inside it.
 */
export interface PodRef extends ClusterOptions {
  name: string;
  /** Default "default". */
  namespace?: string;
}

export interface PodRunOptions extends PodRef {
  /** Default node1. */
  node?: string;
  /** Default "default". */
  serviceAccount?: string;
  labels?: Record<string, string>;
  command: string[];
  /** Extra environment for the process (it also gets PATH, HOME, HOSTNAME, POD_NAME, POD_NAMESPACE, POD_IP, NODE_NAME). */
  env?: Record<string, string>;
  /** Default "never". */
  restart?: RestartPolicy;
  /** Working directory of the process (default: the caller's). */
  cwd?: string;
  /** The pod's UID (default: a random UUID); a controller that must name the pod's files up front chooses it. */
  uid?: string;
}

export interface PodInfo {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  ips: string[];
  netns: string;
  /** The host agent's decision (from its pods.json); undefined when it has no record of the pod. */
  enrolled: boolean | undefined;
  serviceAccount: string;
  labels: Record<string, string>;
  /** running, backoff, exited, failed, stopped, creating, deleting, absent. */
  state: string;
  pid?: number;
  restarts: number;
  exitCode?: number | null;
  command: string[];
  log: string;
  createdAt: string;
}

const SA = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

function podProcId(namespace: string, name: string): string {
  return `pod/${namespace}/${name}`;
}

function networkArgs(state: ClusterState, p: PodRecord): PodNetworkArgs {
  const host = state.hosts.find((h) => h.name === p.node);
  if (!host) throw new Error(`pod ${p.namespace}/${p.name} is on unknown host ${p.node}`);
  return {
    hostNetns: host.netns, containerId: p.containerId, netnsPath: netnsPath(p.netns), ifName: POD_IF,
    podName: p.name, podNamespace: p.namespace, podUid: p.uid, serviceAccount: p.serviceAccount, labels: p.labels,
  };
}

/** /etc/netns/<netns>/: what `ip netns exec` shows the pod as /etc/resolv.conf and /etc/hosts. */
function writeEtc(state: ClusterState, p: PodRecord): void {
  const dir = etcNetnsDir(p.netns);
  const host = state.hosts.find((h) => h.name === p.node)!;
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'resolv.conf'), `nameserver ${podNameserver(host)}\nsearch ${p.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n`, { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'hosts'), `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${p.ip ? `${p.ip}\t${p.name}\n` : ''}`, { mode: 0o644 });
}

let unshareOk: boolean | undefined;

/**
 * argv that runs `command` as the pod: in its netns (`ip netns exec`, which also applies
 * /etc/netns/<netns>/), and, where util-linux's unshare exists, in a UTS namespace of its
 * own whose hostname is the pod's name, as in Kubernetes (so gethostname() finds itself in
 * the pod's /etc/hosts instead of asking DNS for the machine's name).
 */
function podArgv(p: PodRecord, command: string[]): string[] {
  if (unshareOk === undefined) unshareOk = has('unshare', ['--version']);
  if (!unshareOk) return inNetns(p.netns, command);
  return inNetns(p.netns, ['unshare', '--uts', '--', 'sh', '-c', 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"', p.name, ...command]);
}

function podEnv(p: PodRecord, extra: Record<string, string>): Record<string, string> {
  const base: Record<string, string> = { PATH: childPath() };
  for (const k of ['HOME', 'LANG', 'LC_ALL', 'TERM', 'USER', 'PYENV_ROOT']) if (process.env[k] !== undefined) base[k] = process.env[k]!;
  return {
    ...base,
    HOSTNAME: p.name,
    POD_NAME: p.name,
    POD_NAMESPACE: p.namespace,
    POD_IP: p.ip ?? '',
    POD_UID: p.uid,
    POD_SERVICE_ACCOUNT: p.serviceAccount,
    NODE_NAME: p.node,
    // Output reaches `ambit dev logs` as it is written rather than when a buffer fills.
    PYTHONUNBUFFERED: '1',
    ...extra,
  };
}

/** Undoes what exists of a pod: process, CNI (DEL in reverse), netns, /etc/netns, record. Collects problems. */
async function teardown(paths: ClusterPaths, state: ClusterState, p: PodRecord, problems: string[]): Promise<void> {
  const supUp = await supervisorAlive(paths);
  if (supUp) {
    try {
      await stopProc(paths, p.procId, true);
    } catch (err) {
      problems.push(`stopping the process: ${(err as Error).message}`);
    }
  } else {
    const s = procStatuses(paths)[p.procId];
    if (s?.pid !== undefined) await killAndWait([{ pid: s.pid, startTime: s.startTime }], 5000, true);
  }
  if (p.cniAdded.length > 0 && netnsExists(p.netns)) {
    const list = readConflist(paths, p.node);
    const probs = await cniDel(paths, list, networkArgs(state, p), p.cniResult);
    problems.push(...probs);
  }
  try {
    await deleteNetns(p.netns);
  } catch (err) {
    problems.push((err as Error).message);
  }
  fs.rmSync(etcNetnsDir(p.netns), { recursive: true, force: true });
  removePodRecord(paths, p.namespace, p.name);
}

export async function podRun(o: PodRunOptions): Promise<PodInfo> {
  const { paths, state } = openCluster(o);
  const name = checkPodName(o.name);
  const namespace = checkNamespace(o.namespace ?? 'default');
  const node = o.node ?? 'node1';
  if (hostIndex(node) === undefined || !state.hosts.some((h) => h.name === node)) {
    throw new Error(`no host "${node}" in the cluster (hosts: ${state.hosts.map((h) => h.name).join(', ')})`);
  }
  const serviceAccount = o.serviceAccount ?? 'default';
  if (!SA.test(serviceAccount)) throw new Error(`service account "${serviceAccount}" must be a DNS subdomain (lowercase letters, digits, "-", ".")`);
  if (!o.command || o.command.length === 0) throw new Error('give the command to run in the pod after --, e.g. `ambit dev pod run web -- python3 -m http.server 8080`');
  const netns = podNetns(state.name, namespace, name);
  const uid = o.uid ?? randomUUID();
  const p: PodRecord = {
    name, namespace, node, uid, containerId: uid, netns, serviceAccount, labels: o.labels ?? {}, phase: 'creating', ips: [], cniAdded: [],
    command: o.command, env: {}, cwd: o.cwd ?? process.cwd(), restart: o.restart ?? 'never', log: paths.podLog(namespace, name),
    procId: podProcId(namespace, name), createdAt: new Date().toISOString(),
  };
  if (!createPodRecord(paths, p)) throw new Error(`pod ${namespace}/${name} exists already (delete it with \`ambit dev pod delete ${name} -n ${namespace}\`)`);
  if (netnsExists(netns)) {
    removePodRecord(paths, namespace, name);
    throw new Error(`network namespace ${netns} exists already (another pod whose namespace and name join to the same string?)`);
  }
  const problems: string[] = [];
  try {
    await ensureNamespace(paths, namespace);
    addNetns(netns);
    const list = readConflist(paths, node);
    try {
      const { result, added } = await cniAdd(paths, list, networkArgs(state, p));
      p.cniResult = result;
      p.cniAdded = added;
      p.ips = resultIps(result);
      p.ip = p.ips[0];
    } catch (err) {
      p.cniAdded = []; // cniAdd has already DELeted the chain
      throw err;
    }
    writePodRecord(paths, p);
    writeEtc(state, p);
    p.env = podEnv(p, o.env ?? {});
    p.phase = 'running';
    writePodRecord(paths, p);
    fs.rmSync(p.log, { force: true });
    await startProc(paths, {
      id: p.procId, argv: podArgv(p, p.command), env: p.env, cwd: p.cwd, log: p.log, restart: p.restart, stopGraceMs: 5000, logHeader: false,
    });
  } catch (err) {
    await teardown(paths, state, p, problems).catch((e: Error) => problems.push(e.message));
    const msg = `pod ${namespace}/${name} could not be created: ${(err as Error).message}`;
    throw new Error(problems.length > 0 ? `${msg}\n(cleanup: ${problems.join('; ')})` : msg);
  }
  return info(paths, p);
}

function info(paths: ClusterPaths, p: PodRecord, procs = procStatuses(paths), agents = new Map<string, Map<string, { enrolled: boolean }>>()): PodInfo {
  if (!agents.has(p.node)) agents.set(p.node, agentPods(paths, p.node));
  const s = procs[p.procId];
  return {
    name: p.name, namespace: p.namespace, node: p.node, ip: p.ip ?? '', ips: p.ips, netns: p.netns,
    enrolled: agents.get(p.node)!.get(p.containerId)?.enrolled, serviceAccount: p.serviceAccount, labels: p.labels,
    state: p.phase !== 'running' ? p.phase : s ? s.state : 'absent', pid: s?.alive ? s.pid : undefined, restarts: s?.restarts ?? 0,
    exitCode: s?.lastExit?.code, command: p.command, log: p.log, createdAt: p.createdAt,
  };
}

export function podList(o: ClusterOptions & { namespace?: string } = {}): PodInfo[] {
  const { paths } = openCluster(o);
  const procs = procStatuses(paths);
  const agents = new Map<string, Map<string, { enrolled: boolean }>>();
  return listPodRecords(paths).filter((p) => !o.namespace || p.namespace === o.namespace).map((p) => info(paths, p, procs, agents));
}

export function podGet(o: PodRef): PodInfo {
  const { paths } = openCluster(o);
  const p = readPodRecord(paths, o.namespace ?? 'default', o.name);
  if (!p) throw new Error(`pod ${o.namespace ?? 'default'}/${o.name} not found`);
  return info(paths, p);
}

export async function podDelete(o: PodRef): Promise<{ problems: string[] }> {
  const { paths, state } = openCluster(o);
  const namespace = o.namespace ?? 'default';
  const p = readPodRecord(paths, namespace, o.name);
  if (!p) throw new Error(`pod ${namespace}/${o.name} not found`);
  p.phase = 'deleting';
  writePodRecord(paths, p);
  const problems: string[] = [];
  await teardown(paths, state, p, problems);
  fs.rmSync(p.log, { force: true });
  return { problems };
}

export interface ExecOptions extends PodRef {
  command: string[];
  /** inherit: the caller's terminal (the CLI); pipe: collect the output (default). */
  stdio?: 'inherit' | 'pipe';
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command in the pod's netns (`ip netns exec`, so with the pod's resolv.conf), with the pod's environment. */
export function podExec(o: ExecOptions): Promise<ExecResult> {
  const { paths } = openCluster(o);
  const namespace = o.namespace ?? 'default';
  const p = readPodRecord(paths, namespace, o.name);
  if (!p || p.phase !== 'running') throw new Error(`pod ${namespace}/${o.name} not found`);
  if (o.command.length === 0) throw new Error('give the command to run after --');
  return new Promise((resolve, reject) => {
    const argv = podArgv(p, o.command);
    const child = spawn(argv[0], argv.slice(1), {
      env: { ...p.env, ...(o.env ?? {}) },
      cwd: p.cwd && fs.existsSync(p.cwd) ? p.cwd : '/',
      stdio: o.stdio === 'inherit' ? 'inherit' : ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(o.input ?? '');
    const timer = o.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), o.timeoutMs) : undefined;
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, sig) => {
      if (timer) clearTimeout(timer);
      resolve({ code: code ?? (sig ? 128 + (({ SIGKILL: 9, SIGTERM: 15, SIGINT: 2 } as Record<string, number>)[sig] ?? 1) : 1), stdout, stderr });
    });
  });
}

export function podLogPath(o: PodRef): string {
  const { paths } = openCluster(o);
  const namespace = o.namespace ?? 'default';
  const p = readPodRecord(paths, namespace, o.name);
  if (!p) throw new Error(`pod ${namespace}/${o.name} not found`);
  return p.log;
}
