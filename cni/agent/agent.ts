import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { AmbitClient } from '../../lib/api/client';
import { ClientConfig, dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { CNI_ARG_LABELS, CNI_ARG_SERVICE_ACCOUNT, CniPodRequest, CniPodResponse, DEFAULT_CNI_SOCKET } from '../../lib/api/cni-protocol';
import { ApiError } from '../../lib/api/errors';
import { DEFAULT_ZTUNNEL_SOCKET, PodInfo } from '../../lib/api/node-protocol';
import { AMBIT_API_VERSION, LABEL_DATAPLANE_MODE, LABEL_GATEWAY_NAME, Resource } from '../../lib/api/resource';
import { createLogger, Logger } from '../../lib/telemetry/log';
import { parseLabels } from '../plugin/labels';
import { joinNode, renewIfDue } from './credential';
import { PodRecord, PodStore } from './pod-store';
import { installRedirect, removeRedirect, checkRedirect } from './rules';
import { credentialDue, credentialPath, issueWorkloadCredential, removeWorkloadCredential } from './workload-identity';
import { ZtunnelLink } from './ztunnel-link';

export interface AgentOptions {
  node: string;
  stateDir: string;
  cniSocket: string;
  ztunnelSocket: string;
  trustDomain: string;
  /** First start only: where the control plane is, the root to verify it, and a bootstrap token. */
  join?: { server: string; rootPemFile: string; token: string };
  logger?: Logger;
}

export const AGENT_DEFAULTS = { cniSocket: DEFAULT_CNI_SOCKET, ztunnelSocket: DEFAULT_ZTUNNEL_SOCKET, trustDomain: 'cluster.local' };

// CNI error codes (spec 1.0.0).
const CNI_TRY_AGAIN = 11;
const CNI_INVALID_ENV = 4;

/**
 * One per host: enrols pods into the mesh. For each pod the CNI plugin hands over it
 * decides enrolment from labels, installs the in-pod redirect rules, registers the
 * workload with the control plane and gives the pod to the ztunnel; it undoes all of it
 * on DEL, and re-decides when a namespace's labels change.
 */
export class CniAgent {
  readonly log: Logger;
  private client!: AmbitClient;
  private cfg!: ClientConfig;
  private store!: PodStore;
  private ztunnel!: ZtunnelLink;
  private cniServer?: net.Server;
  private readonly nsLabels = new Map<string, Record<string, string>>();
  private stopWatch?: () => void;
  private watchTimer?: NodeJS.Timeout;
  private renewTimer?: NodeJS.Timeout;
  private stopped = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly o: AgentOptions) {
    this.log = o.logger ?? createLogger('cni-agent').child({ node: o.node });
  }

  get credentialFile(): string {
    return path.join(this.o.stateDir, 'node.yaml');
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.o.stateDir, { recursive: true, mode: 0o700 });
    if (!fs.existsSync(this.credentialFile)) {
      if (!this.o.join) throw new Error(`no node credential at ${this.credentialFile}: pass --server, --ca-cert and --token to join the mesh`);
      const rootPem = fs.readFileSync(this.o.join.rootPemFile, 'utf8');
      this.cfg = await joinNode({ node: this.o.node, server: this.o.join.server, rootPem, token: this.o.join.token, trustDomain: this.o.trustDomain }, this.credentialFile);
      this.log.info({ credential: this.credentialFile }, 'joined the mesh');
    } else {
      this.cfg = loadClientConfig(this.credentialFile);
    }
    this.client = new AmbitClient(dialFromConfig(this.cfg));
    this.renewTimer = setInterval(() => void this.renew(), 60_000);
    this.renewTimer.unref();
    this.store = new PodStore(path.join(this.o.stateDir, 'pods.json'));
    this.reconcileOnStart();
    this.ztunnel = new ZtunnelLink(this.o.ztunnelSocket, () => this.enrolledPods(), this.log);
    fs.mkdirSync(path.dirname(this.o.ztunnelSocket), { recursive: true });
    await this.ztunnel.start();
    this.watchNamespaces();
    await this.listenCni();
    this.log.info({ cniSocket: this.o.cniSocket, ztunnelSocket: this.o.ztunnelSocket, pods: this.store.all().length }, 'cni agent ready');
  }

  private async renew(): Promise<void> {
    await this.serial(() => this.renewWorkloadCredentials());
    try {
      if (await renewIfDue(this.client, this.cfg, this.credentialFile, this.o.trustDomain, this.o.node)) {
        this.cfg = loadClientConfig(this.credentialFile);
        this.client.close();
        this.client = new AmbitClient(dialFromConfig(this.cfg));
        this.log.info('renewed the node certificate');
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'node certificate renewal failed; will retry');
    }
  }

  private enrolledPods(): PodInfo[] {
    return this.store.all().filter((p) => p.enrolled).map(podInfo);
  }

  /** Pods whose netns is gone were deleted while the agent was down: undo their registration. */
  private reconcileOnStart(): void {
    for (const p of this.store.all()) {
      if (!fs.existsSync(p.netns)) {
        this.log.info({ pod: `${p.namespace}/${p.name}` }, 'pod netns is gone; cleaning up');
        this.store.delete(p.containerId);
        void this.deregister(p);
      } else if (p.enrolled) {
        try {
          installRedirect(p.netns, { ipv6: p.ips.some((ip) => ip.includes(':')) });
        } catch (err) {
          this.log.error({ pod: `${p.namespace}/${p.name}`, err: (err as Error).message }, 'cannot restore redirect rules');
        }
      }
    }
  }

  private watchNamespaces(): void {
    if (this.stopped) return;
    this.stopWatch = this.client.watch('Namespace', '', '', (type, r) => {
      if (type === 'DELETED') this.nsLabels.delete(r.metadata.name);
      else this.nsLabels.set(r.metadata.name, r.metadata.labels ?? {});
      void this.serial(() => this.reevaluate(r.metadata.name));
    }, (err) => {
      if (this.stopped) return;
      if (err) this.log.warn({ err: err.message }, 'namespace watch ended; retrying');
      this.watchTimer = setTimeout(() => this.watchNamespaces(), 2000);
    });
  }

  /** Where a pod that speaks HBONE itself (a waypoint) finds the credential this agent keeps for it. */
  credentialFileOf(podUid: string): string {
    return credentialPath(this.o.stateDir, podUid);
  }

  private async renewWorkloadCredentials(): Promise<void> {
    for (const p of this.store.all().filter((x) => isWaypoint(x.labels))) {
      const file = this.credentialFileOf(p.uid);
      if (!credentialDue(file)) continue;
      try {
        await issueWorkloadCredential(this.client, this.cfg, file, { namespace: p.namespace, serviceAccount: p.serviceAccount, trustDomain: this.o.trustDomain });
        this.log.info({ pod: `${p.namespace}/${p.name}` }, 'renewed the waypoint credential');
      } catch (err) {
        this.log.warn({ pod: `${p.namespace}/${p.name}`, err: (err as Error).message }, 'waypoint credential renewal failed; will retry');
      }
    }
  }

  /**
   * The CA signs only identities of workloads on this node, and learns of the registration
   * through its store: retry briefly while it catches up.
   */
  private async issueCredential(p: PodRecord): Promise<void> {
    let last: unknown;
    for (let i = 0; i < 20; i++) {
      try {
        await issueWorkloadCredential(this.client, this.cfg, this.credentialFileOf(p.uid), { namespace: p.namespace, serviceAccount: p.serviceAccount, trustDomain: this.o.trustDomain });
        return;
      } catch (err) {
        last = err;
        if (!(err instanceof ApiError) || err.code === 'Unauthenticated') break;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw last;
  }

  /**
   * Istio's rules: a pod's `istio.io/dataplane-mode` wins (none opts out), else its namespace's.
   * A waypoint's pods are never captured: they terminate and originate HBONE themselves.
   */
  private wantsMesh(labels: Record<string, string>, namespace: string): boolean {
    if (isWaypoint(labels)) return false;
    const own = labels[LABEL_DATAPLANE_MODE];
    if (own === 'none') return false;
    if (own === 'ambient') return true;
    return this.nsLabels.get(namespace)?.[LABEL_DATAPLANE_MODE] === 'ambient';
  }

  private async reevaluate(namespace: string): Promise<void> {
    for (const p of this.store.all().filter((x) => x.namespace === namespace)) {
      const want = this.wantsMesh(p.labels, namespace);
      if (want === p.enrolled) continue;
      try {
        if (want) await this.enroll(p);
        else await this.unenroll(p);
        this.store.put({ ...p, enrolled: want });
        await this.register({ ...p, enrolled: want });
        this.log.info({ pod: `${p.namespace}/${p.name}`, enrolled: want }, 'namespace labels changed the pod\'s enrolment');
      } catch (err) {
        this.log.error({ pod: `${p.namespace}/${p.name}`, err: (err as Error).message }, 'could not change enrolment');
      }
    }
  }

  private async enroll(p: PodRecord): Promise<void> {
    installRedirect(p.netns, { ipv6: p.ips.some((ip) => ip.includes(':')) });
    const err = await this.ztunnel.send({ type: 'add', pod: podInfo(p) });
    if (err) {
      removeRedirect(p.netns, { ipv6: p.ips.some((ip) => ip.includes(':')) });
      throw new Error(`ztunnel did not take the pod: ${err}`);
    }
  }

  private async unenroll(p: PodRecord): Promise<void> {
    const err = await this.ztunnel.send({ type: 'del', uid: p.uid });
    if (err) this.log.warn({ pod: `${p.namespace}/${p.name}`, err }, 'ztunnel did not confirm the removal');
    removeRedirect(p.netns);
  }

  private workloadOf(p: PodRecord): Resource {
    return {
      apiVersion: AMBIT_API_VERSION,
      kind: 'Workload',
      metadata: { name: p.name, namespace: p.namespace, labels: p.labels },
      spec: { node: this.o.node, serviceAccount: p.serviceAccount, addresses: p.ips, protocol: p.enrolled || isWaypoint(p.labels) ? 'HBONE' : 'TCP', uid: p.uid },
    };
  }

  private async register(p: PodRecord): Promise<void> {
    await this.client.apply([this.workloadOf(p)]);
  }

  private async deregister(p: PodRecord): Promise<void> {
    try {
      await this.client.delete([{ kind: 'Workload', namespace: p.namespace, name: p.name }], true);
    } catch (err) {
      this.log.warn({ pod: `${p.namespace}/${p.name}`, err: (err as Error).message }, 'could not deregister the workload');
    }
  }

  /** CNI requests change shared state: one at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  async handle(req: CniPodRequest): Promise<CniPodResponse> {
    return this.serial(() => this.handleNow(req));
  }

  private async handleNow(req: CniPodRequest): Promise<CniPodResponse> {
    if (req.command === 'DEL') {
      const p = this.store.get(req.containerId);
      if (!p) return { ok: true, enrolled: false };
      if (p.enrolled) await this.unenroll(p).catch((err: Error) => this.log.warn({ err: err.message }, 'DEL: unenrol failed'));
      this.store.delete(p.containerId);
      await this.deregister(p);
      if (isWaypoint(p.labels)) removeWorkloadCredential(this.credentialFileOf(p.uid));
      this.log.info({ pod: `${p.namespace}/${p.name}` }, 'pod deleted');
      return { ok: true, enrolled: false };
    }
    if (req.command === 'CHECK') {
      const p = this.store.get(req.containerId);
      if (!p) return { ok: false, code: 3, msg: `container ${req.containerId} is not known to the ambit agent` };
      if (p.enrolled) {
        const c = checkRedirect(p.netns);
        if (!c.installed) return { ok: false, code: 5, msg: `redirect rules in ${p.netns} are not as installed`, details: c.problems.join('; ') };
      }
      return { ok: true, enrolled: p.enrolled };
    }
    const name = req.args.K8S_POD_NAME;
    const namespace = req.args.K8S_POD_NAMESPACE;
    if (!name || !namespace || !req.netns) {
      return { ok: false, code: CNI_INVALID_ENV, msg: 'K8S_POD_NAME, K8S_POD_NAMESPACE (CNI_ARGS) and CNI_NETNS are required' };
    }
    const existing = this.store.get(req.containerId);
    if (existing) return { ok: true, enrolled: existing.enrolled };
    let labels: Record<string, string>;
    try {
      labels = parseLabels(req.args[CNI_ARG_LABELS] ?? '');
    } catch (err) {
      return { ok: false, code: CNI_INVALID_ENV, msg: `${CNI_ARG_LABELS}: ${(err as Error).message}` };
    }
    const p: PodRecord = {
      containerId: req.containerId,
      uid: req.args.K8S_POD_UID || req.containerId,
      name,
      namespace,
      serviceAccount: req.args[CNI_ARG_SERVICE_ACCOUNT] || 'default',
      netns: req.netns,
      ips: req.ips,
      labels,
      enrolled: false,
    };
    p.enrolled = this.wantsMesh(labels, namespace);
    try {
      await this.register(p);
    } catch (err) {
      const msg = err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message;
      return { ok: false, code: CNI_TRY_AGAIN, msg: `cannot register pod ${namespace}/${name} with the control plane: ${msg}` };
    }
    if (isWaypoint(labels)) {
      try {
        await this.issueCredential(p);
      } catch (err) {
        await this.deregister(p);
        const msg = err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message;
        return { ok: false, code: CNI_TRY_AGAIN, msg: `cannot issue the identity of waypoint pod ${namespace}/${name}: ${msg}` };
      }
    }
    if (p.enrolled) {
      try {
        await this.enroll(p);
      } catch (err) {
        await this.deregister(p);
        return { ok: false, code: CNI_TRY_AGAIN, msg: `cannot enrol pod ${namespace}/${name}: ${(err as Error).message}` };
      }
    }
    this.store.put(p);
    this.log.info({ pod: `${namespace}/${name}`, ips: p.ips, enrolled: p.enrolled }, 'pod added');
    return { ok: true, enrolled: p.enrolled };
  }

  private async listenCni(): Promise<void> {
    fs.mkdirSync(path.dirname(this.o.cniSocket), { recursive: true });
    try {
      fs.unlinkSync(this.o.cniSocket);
    } catch {
      // not there
    }
    // Half-open: a plugin may end its side after the request and still read the answer.
    this.cniServer = net.createServer({ allowHalfOpen: true }, (c) => {
      c.on('error', () => undefined);
      const rl = readline.createInterface({ input: c });
      rl.on('error', () => undefined);
      rl.once('line', (line) => {
        rl.close();
        let req: CniPodRequest;
        try {
          req = JSON.parse(line) as CniPodRequest;
        } catch {
          c.end(`${JSON.stringify({ ok: false, code: 6, msg: 'request is not JSON' })}\n`);
          return;
        }
        void this.handle(req).then(
          (res) => c.end(`${JSON.stringify(res)}\n`),
          (err: Error) => c.end(`${JSON.stringify({ ok: false, code: 5, msg: err.message })}\n`),
        );
      });
    });
    await new Promise<void>((resolve, reject) => {
      this.cniServer!.once('error', reject);
      this.cniServer!.listen(this.o.cniSocket, () => resolve());
    });
    fs.chmodSync(this.o.cniSocket, 0o600);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.watchTimer) clearTimeout(this.watchTimer);
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.stopWatch?.();
    await new Promise<void>((r) => (this.cniServer ? this.cniServer.close(() => r()) : r()));
    await this.ztunnel?.stop();
    this.client?.close();
  }
}

function isWaypoint(labels: Record<string, string>): boolean {
  return Boolean(labels[LABEL_GATEWAY_NAME]);
}

function podInfo(p: PodRecord): PodInfo {
  return { uid: p.uid, name: p.name, namespace: p.namespace, serviceAccount: p.serviceAccount, netns: p.netns, ips: p.ips };
}
