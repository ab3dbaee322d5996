import fs from 'node:fs';
import path from 'node:path';
import { withAdmin, writeLocalAdminConfig } from './admin';
import { installCni } from './cni';
import { agentProc, componentId, componentLog, controlPlaneProc, controlPlaneProxyProc, waypointControllerProc, ztunnelProc } from './components';
import { addresses, deleteNetns, IfAddress, listNetns, netnsExists } from './netns';
import { httpGet } from './netns-http';
import { createTopology } from './network';
import { ClusterPaths, etcNetnsDir, MAX_SOCKET_PATH, repoRoot, resolveDevDir } from './paths';
import { isAlive, killAndWait, ProcRef } from './procs';
import { has } from './sh';
import { listPodRecords, ClusterState, readCluster, writeCluster } from './state';
import { procStatuses, readProcesses, request, spawnSupervisor, startProc, supervisorAlive } from './supervisor-client';
import type { ProcStatus } from './supervisor-protocol';
import {
  checkClusterName, checkNodeCount, clusterNetnsPattern, controlPlaneSpec, DEFAULT_CLUSTER_NAME, FABRIC_BRIDGE, fabricNetns, hostSpecs,
  podNetnsPattern, teardownRank, ZTUNNEL_ADMIN_PORT,
} from './topology';

/** Which cluster: its state dir (default /var/run/ambit-dev, env AMBIT_DEV_DIR) and, for a new one, its name. */
export interface ClusterOptions {
  dir?: string;
  /** Cluster name, the prefix of every netns (default "ambit", env AMBIT_DEV_NAME). Read from the state once the cluster exists. */
  name?: string;
  /** Progress lines (stderr in the CLI). */
  progress?: (line: string) => void;
}

export interface UpOptions extends ClusterOptions {
  nodes?: number;
  logLevel?: string;
  /** How long to wait for the control plane, each agent and each ztunnel (default 90 s). */
  readyTimeoutMs?: number;
}

export interface UpResult {
  alreadyUp: boolean;
  state: ClusterState;
  adminConfig: string;
  logsDir: string;
  /** Hosts whose ztunnel was not ready in time (their agents are up). */
  notReady: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function clusterPaths(o: ClusterOptions = {}): ClusterPaths {
  return new ClusterPaths(resolveDevDir(o.dir));
}

/** The state of a cluster that was brought up; throws a helpful error otherwise. */
export function openCluster(o: ClusterOptions = {}): { paths: ClusterPaths; state: ClusterState } {
  const paths = clusterPaths(o);
  const state = readCluster(paths);
  if (!state) throw new Error(`no local cluster in ${paths.dir} (run \`ambit dev up\`, or set AMBIT_DEV_DIR)`);
  if (state.phase !== 'up') throw new Error(`the local cluster in ${paths.dir} is not up (phase ${state.phase}); run \`ambit dev down\` and \`ambit dev up\` again`);
  return { paths, state };
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error('the local cluster needs root (network namespaces, veth, bridges, iptables)');
  if (process.platform !== 'linux') throw new Error('the local cluster needs Linux network namespaces');
  if (!has('ip', ['-V'])) throw new Error('`ip` is missing: apt-get install iproute2 (scripts/setup.sh installs it)');
  if (!has('iptables-save', ['--version'])) throw new Error('iptables is missing: apt-get install iptables (scripts/setup.sh installs it)');
  const dist = path.join(repoRoot(), 'dist', 'cli', 'main.js');
  if (!fs.existsSync(dist)) throw new Error(`Ambit is not built (${dist} is missing): run \`npm run build\``);
}

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function failedWith(paths: ClusterPaths, what: string, log: string, why: string): Error {
  return new Error(`${what}: ${why}\nlast lines of ${log}:\n${tail(log)}\n(the cluster is half up: run \`ambit dev down\` to remove it; logs are in ${paths.logsDir})`);
}

async function waitFor(what: string, timeoutMs: number, probe: () => Promise<boolean> | boolean, gaveUp?: () => string | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    const reason = gaveUp?.();
    if (reason) throw new Error(reason);
    if (Date.now() > deadline) throw new Error(`${what}: not ready after ${Math.round(timeoutMs / 1000)} s`);
    await sleep(250);
  }
}

/** A component that keeps crashing: say so instead of waiting out the timeout. */
function crashing(paths: ClusterPaths, id: string): string | undefined {
  const s = procStatuses(paths)[id];
  if (s && (s.state === 'failed' || s.restarts >= 3)) return `${id} keeps exiting (${s.restarts} restarts, last exit ${JSON.stringify(s.lastExit)})`;
  return undefined;
}

async function bringUp(paths: ClusterPaths, state: ClusterState, readyMs: number, progress: (s: string) => void): Promise<string[]> {
  const { name, nodes, hosts } = state;
  progress(`creating cluster "${name}" with ${nodes} host(s) in ${paths.dir}`);

  createTopology(state.fabric.netns, state.controlPlane, hosts, progress);
  installCni(paths, hosts, state.logLevel);
  for (const h of hosts) fs.mkdirSync(paths.hostStateDir(h.name), { recursive: true, mode: 0o700 });
  fs.mkdirSync(paths.podsDir, { recursive: true, mode: 0o700 });

  state.supervisor = await spawnSupervisor(paths);
  writeCluster(paths, state);
  progress(`supervisor running (pid ${state.supervisor.pid}), logs in ${paths.logsDir}`);

  // Control plane, and the socket the CLI reaches it through.
  await startProc(paths, controlPlaneProc(paths, state));
  await startProc(paths, controlPlaneProxyProc(paths, state));
  let adminWritten = false;
  try {
    await waitFor('the control plane', readyMs, async () => {
      if (!adminWritten) {
        if (!fs.existsSync(paths.controlPlaneAdminFile)) return false;
        writeLocalAdminConfig(paths);
        adminWritten = true;
      }
      try {
        await withAdmin(paths, (c) => c.list('Namespace'));
        return true;
      } catch {
        return false;
      }
    }, () => crashing(paths, 'controlplane') ?? crashing(paths, 'cp-proxy'));
  } catch (err) {
    throw failedWith(paths, 'the control plane did not come up', componentLog(paths, 'controlplane'), (err as Error).message);
  }
  progress(`control plane ready in netns ${state.controlPlane.netns} on ${state.controlPlane.grpcAddress}`);

  // Agents: the first start joins with a single-use token and writes node.yaml.
  const tokens = await withAdmin(paths, async (c) => Promise.all(hosts.map((h) => c.createBootstrapToken(h.name, 3600))));
  for (const [i, h] of hosts.entries()) await startProc(paths, agentProc(paths, state, h, tokens[i].token));
  await Promise.all(hosts.map(async (h) => {
    const id = componentId('cni-agent', h.name);
    try {
      await waitFor(`the cni agent of ${h.name}`, readyMs, () => fs.existsSync(paths.hostCredential(h.name)) && fs.existsSync(paths.cniSocket(h.name)), () => crashing(paths, id));
    } catch (err) {
      throw failedWith(paths, `the cni agent of ${h.name} did not come up`, componentLog(paths, 'cni-agent', h.name), (err as Error).message);
    }
    progress(`${h.name}: cni agent joined the mesh`);
  }));

  for (const h of hosts) await startProc(paths, ztunnelProc(paths, state, h));
  const notReady: string[] = [];
  await Promise.all(hosts.map(async (h) => {
    try {
      await waitFor(`the ztunnel of ${h.name}`, readyMs, () => ztunnelReady(h.netns), () => crashing(paths, componentId('ztunnel', h.name)));
      progress(`${h.name}: ztunnel ready`);
    } catch (err) {
      notReady.push(h.name);
      progress(`${h.name}: warning: ${(err as Error).message}; see ${componentLog(paths, 'ztunnel', h.name)}`);
    }
  }));

  await startProc(paths, waypointControllerProc(paths, state));
  progress('waypoint controller running (a pod per Gateway of class istio-waypoint)');
  return notReady;
}

export async function up(o: UpOptions = {}): Promise<UpResult> {
  const progress = o.progress ?? (() => undefined);
  const paths = clusterPaths(o);
  const readyMs = o.readyTimeoutMs ?? 90_000;
  const existing = readCluster(paths);
  if (existing) {
    const alive = await supervisorAlive(paths);
    if (existing.phase === 'up' && alive) {
      return { alreadyUp: true, state: existing, adminConfig: paths.adminConfigFile, logsDir: paths.logsDir, notReady: [] };
    }
    if (alive) throw new Error(`a local cluster ("${existing.name}") is being created in ${paths.dir} by another \`ambit dev up\`, or its creation failed: wait, or run \`ambit dev down\``);
    if (existing.phase === 'creating') throw new Error(`an earlier \`ambit dev up\` of "${existing.name}" in ${paths.dir} did not finish: run \`ambit dev down\` first`);
    throw new Error(`a local cluster ("${existing.name}") is recorded in ${paths.dir} but its supervisor is not running (crashed, or the machine restarted): run \`ambit dev down\` first`);
  }
  if (fs.existsSync(paths.clusterFile)) throw new Error(`${paths.clusterFile} is unreadable: run \`ambit dev down\` first`);
  preflight();
  const name = checkClusterName(o.name ?? process.env.AMBIT_DEV_NAME ?? DEFAULT_CLUSTER_NAME);
  const nodes = checkNodeCount(o.nodes ?? 2);
  const leftovers = listNetns().filter((n) => clusterNetnsPattern(name).test(n));
  if (leftovers.length > 0) {
    throw new Error(`network namespaces of a cluster named "${name}" exist already (${leftovers.join(', ')}): remove them with \`ambit dev down\` (same AMBIT_DEV_DIR), \`ambit dev down --name ${name}\`, or pick another --name`);
  }
  const hosts = hostSpecs(name, nodes);
  const long = paths.socketPaths(hosts.map((h) => h.name)).filter((p) => Buffer.byteLength(p) > MAX_SOCKET_PATH);
  if (long.length > 0) throw new Error(`the state dir ${paths.dir} is too deep for unix sockets (${long[0]} is longer than ${MAX_SOCKET_PATH} bytes): use a shorter AMBIT_DEV_DIR`);

  fs.mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const state: ClusterState = {
    name, dir: paths.dir, phase: 'creating', createdAt: new Date().toISOString(), nodes, hosts,
    fabric: { netns: fabricNetns(name), bridge: FABRIC_BRIDGE }, controlPlane: controlPlaneSpec(name),
    logLevel: o.logLevel ?? process.env.AMBIT_LOG_LEVEL ?? 'info', repo: repoRoot(),
  };
  // Recorded before anything exists, so that `down` knows what to look for whatever happens next.
  writeCluster(paths, state);
  let notReady: string[];
  try {
    notReady = await bringUp(paths, state, readyMs, progress);
  } catch (err) {
    const e = err as Error;
    if (!e.message.includes('ambit dev down')) e.message += `\n(the cluster is half up: run \`ambit dev down\` to remove it; logs are in ${paths.logsDir})`;
    throw err;
  }
  state.phase = 'up';
  writeCluster(paths, state);
  return { alreadyUp: false, state, adminConfig: paths.adminConfigFile, logsDir: paths.logsDir, notReady };
}

export async function ztunnelReady(hostNetns: string): Promise<boolean> {
  try {
    return (await httpGet(hostNetns, `http://127.0.0.1:${ZTUNNEL_ADMIN_PORT}/healthz/ready`, 2000)).status === 200;
  } catch {
    return false;
  }
}

export interface DownResult {
  dir: string;
  names: string[];
  netnsRemoved: string[];
  problems: string[];
}

/**
 * Stops the supervisor and everything it started, deletes every netns of the cluster
 * (those recorded, and any matching the naming convention, so a half-created or crashed
 * cluster goes too), the pods' /etc/netns dirs and the cluster's files. Never fails on
 * something already gone; problems are returned (and the CLI prints them).
 */
export async function down(o: ClusterOptions = {}): Promise<DownResult> {
  const progress = o.progress ?? (() => undefined);
  const paths = clusterPaths(o);
  const problems: string[] = [];
  let state: ClusterState | undefined;
  try {
    state = readCluster(paths);
  } catch (err) {
    problems.push(`${paths.clusterFile}: ${(err as Error).message}`);
  }
  const names = [...new Set([state?.name, o.name, process.env.AMBIT_DEV_NAME].filter((n): n is string => !!n))];
  if (names.length === 0) names.push(DEFAULT_CLUSTER_NAME);
  for (const n of names) checkClusterName(n);
  const pods = listPodRecords(paths);

  // 1. The supervisor stops what it runs (pods, ztunnels, agents, control plane).
  const procs = readProcesses(paths);
  if (await supervisorAlive(paths)) {
    progress('stopping the supervisor and its processes');
    try {
      await request(paths, { op: 'shutdown' }, 10_000);
    } catch (err) {
      problems.push(`supervisor shutdown: ${(err as Error).message}`);
    }
  }
  const sup: ProcRef[] = [];
  if (state?.supervisor) sup.push(state.supervisor);
  if (procs?.supervisor) sup.push({ pid: procs.supervisor.pid, startTime: procs.supervisor.startTime });
  const deadline = Date.now() + 45_000;
  while (Date.now() < deadline && sup.some(isAlive)) await sleep(100);
  // 2. Whatever is still alive (the supervisor was dead or stuck): by recorded PID and start time.
  await killAndWait(sup, 2000);
  const recorded = Object.values(readProcesses(paths)?.procs ?? procs?.procs ?? {})
    .filter((p: ProcStatus) => p.pid !== undefined)
    .map((p) => ({ pid: p.pid!, startTime: p.startTime }));
  if (recorded.some(isAlive)) progress(`stopping ${recorded.filter(isAlive).length} leftover process(es)`);
  await killAndWait(recorded, 5000, true);

  // 3. Network namespaces: recorded ones and every one that matches the cluster's names; pods first.
  const want = new Set<string>();
  if (state) {
    want.add(state.fabric.netns);
    want.add(state.controlPlane.netns);
    for (const h of state.hosts) want.add(h.netns);
  }
  for (const p of pods) want.add(p.netns);
  for (const n of listNetns()) if (names.some((c) => clusterNetnsPattern(c).test(n))) want.add(n);
  const rankName = state?.name ?? names[0];
  const ordered = [...want].filter(netnsExists).sort((a, b) => teardownRank(rankName, a) - teardownRank(rankName, b));
  const removed: string[] = [];
  for (const n of ordered) {
    try {
      await deleteNetns(n);
      removed.push(n);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (removed.length > 0) progress(`deleted ${removed.length} network namespace(s): ${removed.join(' ')}`);

  // 4. The pods' /etc/netns/<netns>/ (resolv.conf, hosts).
  const etc = new Set(pods.map((p) => p.netns));
  try {
    for (const n of fs.readdirSync('/etc/netns')) if (names.some((c) => podNetnsPattern(c).test(n))) etc.add(n);
  } catch {
    // no /etc/netns
  }
  for (const n of etc) {
    try {
      fs.rmSync(etcNetnsDir(n), { recursive: true, force: true });
    } catch (err) {
      problems.push(`${etcNetnsDir(n)}: ${(err as Error).message}`);
    }
  }

  // 5. The cluster's files (only what `up` creates: the dir may be shared with other things).
  for (const e of paths.ownedEntries) {
    try {
      fs.rmSync(e, { recursive: true, force: true });
    } catch (err) {
      problems.push(`${e}: ${(err as Error).message}`);
    }
  }
  try {
    fs.rmdirSync(paths.dir);
  } catch {
    // not empty (other files) or already gone
  }
  return { dir: paths.dir, names, netnsRemoved: removed, problems };
}

export interface ComponentStatus {
  id: string;
  state: string;
  pid?: number;
  restarts: number;
  startedAt?: string;
  lastExit?: ProcStatus['lastExit'];
  log: string;
  /** ztunnel only: /healthz/ready answered 200. */
  ready?: boolean;
}

export interface HostStatus {
  name: string;
  netns: string;
  netnsPresent: boolean;
  fabricIp: string;
  podCidr: string;
  podGateway: string;
  addresses: IfAddress[];
  pods: number;
  components: { 'cni-agent': ComponentStatus; ztunnel: ComponentStatus };
}

export interface ClusterStatus {
  name: string;
  dir: string;
  phase: string;
  /** The supervisor answers and every component is running. */
  healthy: boolean;
  createdAt: string;
  supervisor: { pid?: number; running: boolean; log: string };
  fabric: { netns: string; bridge: string; netnsPresent: boolean };
  controlPlane: { netns: string; netnsPresent: boolean; address: string; grpc: string; monitoring: string; components: { controlplane: ComponentStatus; 'cp-proxy': ComponentStatus } };
  hosts: HostStatus[];
  adminConfig: string;
  logsDir: string;
}

function component(all: ReturnType<typeof procStatuses>, id: string, log: string): ComponentStatus {
  const s = all[id];
  if (!s) return { id, state: 'absent', restarts: 0, log };
  return { id, state: s.state, pid: s.alive ? s.pid : undefined, restarts: s.restarts, startedAt: s.startedAt, lastExit: s.lastExit, log };
}

/** undefined when no cluster is recorded in the state dir. */
export async function status(o: ClusterOptions = {}): Promise<ClusterStatus | undefined> {
  const paths = clusterPaths(o);
  const state = readCluster(paths);
  if (!state) return undefined;
  const procs = procStatuses(paths);
  const supRunning = await supervisorAlive(paths);
  const pods = listPodRecords(paths);
  const hosts = await Promise.all(state.hosts.map(async (h): Promise<HostStatus> => {
    const present = netnsExists(h.netns);
    const z = component(procs, componentId('ztunnel', h.name), componentLog(paths, 'ztunnel', h.name));
    if (present && z.state === 'running') z.ready = await ztunnelReady(h.netns);
    else z.ready = false;
    return {
      name: h.name, netns: h.netns, netnsPresent: present, fabricIp: h.fabricIp, podCidr: h.podCidr, podGateway: h.podGateway,
      addresses: present ? addresses(h.netns) : [], pods: pods.filter((p) => p.node === h.name).length,
      components: { 'cni-agent': component(procs, componentId('cni-agent', h.name), componentLog(paths, 'cni-agent', h.name)), ztunnel: z },
    };
  }));
  const cp = {
    controlplane: component(procs, 'controlplane', componentLog(paths, 'controlplane')),
    'cp-proxy': component(procs, 'cp-proxy', componentLog(paths, 'cp-proxy')),
  };
  const all = [cp.controlplane, cp['cp-proxy'], ...hosts.flatMap((h) => [h.components['cni-agent'], h.components.ztunnel])];
  return {
    name: state.name, dir: paths.dir, phase: state.phase, createdAt: state.createdAt,
    healthy: supRunning && state.phase === 'up' && all.every((c) => c.state === 'running'),
    supervisor: { pid: readProcesses(paths)?.supervisor.pid ?? state.supervisor?.pid, running: supRunning, log: paths.supervisorLog },
    fabric: { netns: state.fabric.netns, bridge: state.fabric.bridge, netnsPresent: netnsExists(state.fabric.netns) },
    controlPlane: {
      netns: state.controlPlane.netns, netnsPresent: netnsExists(state.controlPlane.netns), address: state.controlPlane.ip,
      grpc: state.controlPlane.grpcAddress, monitoring: state.controlPlane.monitoringAddress, components: cp,
    },
    hosts, adminConfig: paths.adminConfigFile, logsDir: paths.logsDir,
  };
}

