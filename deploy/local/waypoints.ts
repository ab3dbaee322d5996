import { createHash, randomUUID } from 'node:crypto';
import { NODE_ANNOTATION, OTLP_ENDPOINT_ANNOTATION } from '../../lib/api/annotations';
import { LABEL_DATAPLANE_MODE, LABEL_GATEWAY_NAME, Resource, WAYPOINT_GATEWAY_CLASS } from '../../lib/api/resource';
import { AmbitClient } from '../../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { createLogger } from '../../lib/telemetry/log';
import { ClusterOptions, openCluster } from './cluster';
import { ambitBin } from './paths';
import { podDelete, podList, podRun } from './pods';
import { WAYPOINT_ADMIN_PORT } from './topology';

/**
 * The local cluster's deployment controller for waypoints (what istiod's does in
 * Kubernetes): every Gateway of class istio-waypoint gets one pod, named after it, running
 * `ambit waypoint` as service account <gateway name>, labelled with the gateway's name and
 * opted out of capture; a deleted Gateway loses its pod. The node agent registers the pod
 * and writes its credential, which the pod reads.
 */
// On a Gateway: ambit.io/node pins the pod to a host; ambit.io/otlp-endpoint is where the
// waypoint exports its traces (OTLP/HTTP, e.g. http://10.244.1.7:4318/v1/traces; none by default).

export function waypointPodName(gateway: string): string {
  return `${gateway}-waypoint`.slice(0, 63).replace(/-+$/, '');
}

export interface WaypointPodPlan {
  namespace: string;
  gateway: string;
  pod: string;
  node: string;
  otlpEndpoint?: string;
}

export function desiredWaypoints(gateways: Resource[], hosts: string[]): WaypointPodPlan[] {
  return gateways
    .filter((g) => (g.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName === WAYPOINT_GATEWAY_CLASS)
    .map((g) => {
      const ns = g.metadata.namespace ?? 'default';
      const wanted = g.metadata.annotations?.[NODE_ANNOTATION];
      // Spread waypoints over the hosts, stably, unless the Gateway names one.
      const node = wanted && hosts.includes(wanted) ? wanted : hosts[createHash('sha256').update(`${ns}/${g.metadata.name}`).digest()[0] % hosts.length];
      const otlp = g.metadata.annotations?.[OTLP_ENDPOINT_ANNOTATION];
      return { namespace: ns, gateway: g.metadata.name, pod: waypointPodName(g.metadata.name), node, ...(otlp ? { otlpEndpoint: otlp } : {}) };
    });
}

/** One pass: start missing waypoint pods, remove those whose Gateway is gone. Returns what it did. */
export async function reconcileWaypoints(o: ClusterOptions, client: AmbitClient): Promise<string[]> {
  const { paths, state } = openCluster(o);
  const did: string[] = [];
  const want = desiredWaypoints(await client.list('Gateway'), state.hosts.map((h) => h.name));
  const have = podList(o).filter((p) => p.labels[LABEL_GATEWAY_NAME]);
  for (const w of want) {
    const running = have.find((p) => p.namespace === w.namespace && p.name === w.pod);
    if (running && sameOtlp(running.command, w.otlpEndpoint)) continue;
    if (running) {
      await podDelete({ ...o, name: running.name, namespace: running.namespace });
      did.push(`restarting waypoint pod ${w.namespace}/${w.pod}: its trace endpoint changed`);
    }
    const uid = randomUUID();
    const credential = `${paths.hostStateDir(w.node)}/pods/${uid}/workload.yaml`;
    await podRun({
      ...o,
      name: w.pod,
      namespace: w.namespace,
      node: w.node,
      uid,
      serviceAccount: w.gateway,
      labels: { [LABEL_GATEWAY_NAME]: w.gateway, [LABEL_DATAPLANE_MODE]: 'none', 'gateway.istio.io/managed': 'istio.io-mesh-controller' },
      command: [process.execPath, ambitBin(), 'waypoint', '--namespace', w.namespace, '--name', w.gateway, '--credential', credential,
        '--admin-addr', `127.0.0.1:${WAYPOINT_ADMIN_PORT}`, '--log-level', state.logLevel, ...(w.otlpEndpoint ? ['--otlp-endpoint', w.otlpEndpoint] : [])],
      restart: 'always',
      cwd: paths.dir,
    });
    did.push(`started waypoint pod ${w.namespace}/${w.pod} on ${w.node}`);
  }
  for (const p of have) {
    if (want.some((w) => w.namespace === p.namespace && w.pod === p.name)) continue;
    await podDelete({ ...o, name: p.name, namespace: p.namespace });
    did.push(`removed waypoint pod ${p.namespace}/${p.name}`);
  }
  return did;
}

function sameOtlp(command: string[], endpoint: string | undefined): boolean {
  const i = command.indexOf('--otlp-endpoint');
  return (i >= 0 ? command[i + 1] : undefined) === endpoint;
}

/** `ambit dev waypoint-controller`: reconciles on every Gateway change, and every 10 s as a backstop. */
export async function runWaypointController(o: ClusterOptions): Promise<void> {
  const log = createLogger('waypoint-controller');
  const { paths } = openCluster(o);
  const client = new AmbitClient(dialFromConfig(loadClientConfig(paths.adminConfigFile)));
  let running = false;
  let again = false;
  const pass = async (): Promise<void> => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        for (const line of await reconcileWaypoints(o, client)) log.info(line);
      } while (again);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'waypoint reconcile failed; will retry');
    } finally {
      running = false;
    }
  };
  const watch = (): void => {
    client.watch('Gateway', '', '', () => void pass(), (err) => {
      if (err) log.warn({ err: err.message }, 'gateway watch ended; retrying');
      setTimeout(watch, 2000).unref();
    });
  };
  watch();
  setInterval(() => void pass(), 10_000);
  await pass();
  log.info('waypoint controller running');
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  client.close();
}
