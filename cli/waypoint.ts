import { Command, InvalidArgumentError } from 'commander';
import type { AmbitClient } from '../lib/api/client';
import { ApiError } from '../lib/api/errors';
import { LABEL_USE_WAYPOINT, Resource, WAYPOINT_GATEWAY_CLASS } from '../lib/api/resource';
import { table } from '../lib/util/table';

/**
 * `ambit waypoint`: run a waypoint (the L7 proxy), and manage waypoints as istioctl does:
 * apply (a Gateway of class istio-waypoint, optionally enrolling the namespace), list,
 * status, delete.
 */
export interface WaypointCliDeps {
  out: (s: string) => void;
  client: () => AmbitClient;
  runDaemon: (what: string, d: { start(): Promise<void>; stop(): Promise<void> }) => Promise<void>;
  fail: (message: string) => never;
  duration: (v: string) => number;
}

const WAYPOINT_FOR = ['service', 'none'];

function dns1123(v: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v)) throw new InvalidArgumentError(`"${v}" must be a DNS label (lowercase letters, digits, "-", at most 63)`);
  return v;
}

export function waypointGateway(namespace: string, name: string, waypointFor: string): Resource {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name, namespace, labels: { 'istio.io/waypoint-for': waypointFor } },
    spec: { gatewayClassName: WAYPOINT_GATEWAY_CLASS, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  };
}

function condition(g: Resource, type: string): { status: string; reason: string; message: string } | undefined {
  const conds = (g.status as { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } | undefined)?.conditions;
  return conds?.find((c) => c.type === type);
}

function isWaypoint(g: Resource): boolean {
  return (g.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName === WAYPOINT_GATEWAY_CLASS;
}

export function registerWaypointCommands(program: Command, d: WaypointCliDeps): void {
  const wp = program
    .command('waypoint')
    .description('run a waypoint (L7 proxy for the services bound to it), or manage waypoints: apply, list, status, delete')
    .enablePositionalOptions()
    .option('--namespace <ns>', 'run: namespace of the Gateway this instance serves (env POD_NAMESPACE)', process.env.POD_NAMESPACE)
    .option('--name <name>', 'run: name of the Gateway (class istio-waypoint) this instance serves')
    .option('--credential <file>', 'run: the pod credential (client-config format) the node agent writes and renews')
    .option('--hbone-addr <host:port>', 'run: HBONE listener', '0.0.0.0:15008')
    .option('--admin-addr <host:port>', 'run: admin endpoint (config_dump, readiness, quitquitquit)', '127.0.0.1:15000')
    .option('--metrics-addr <host:port>', 'run: Prometheus metrics', '0.0.0.0:15020')
    .option('--otlp-endpoint <url>', 'run: OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces (env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; default: no export)', process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    .option('--drain <duration>', 'run: grace period for requests in flight on SIGTERM', d.duration, 5000)
    .option('--credential-wait <duration>', 'run: how long to wait for the credential at start', d.duration, 120_000)
    .option('--log-level <level>', 'trace, debug, info, warn, error', process.env.AMBIT_LOG_LEVEL ?? 'info')
    .addHelpText('after', '\nRun (as the waypoint pod does):\n  ambit waypoint --namespace demo --name waypoint --credential /var/lib/ambit-node/pods/<uid>/workload.yaml\n\nManage:\n  ambit waypoint apply -n demo --enroll-namespace\n  ambit waypoint list -A\n  ambit waypoint status -n demo\n  ambit waypoint delete -n demo waypoint')
    .action(async (o: { namespace?: string; name?: string; credential?: string; hboneAddr: string; adminAddr: string; metricsAddr: string; otlpEndpoint?: string; drain: number; credentialWait: number; logLevel: string }) => {
      if (!o.namespace || !o.name || !o.credential) d.fail('error: running a waypoint needs --namespace, --name and --credential (to manage waypoints: ambit waypoint apply|list|status|delete)');
      const { Waypoint } = await import('../waypoint/app');
      const { createLogger } = await import('../lib/telemetry/log');
      const w = new Waypoint({
        namespace: o.namespace!, name: o.name!, credentialFile: o.credential!, hboneAddress: o.hboneAddr, adminAddress: o.adminAddr, metricsAddress: o.metricsAddr,
        otlpEndpoint: o.otlpEndpoint, drainMs: o.drain, credentialWaitMs: o.credentialWait,
        logger: createLogger('waypoint', o.logLevel, { buffered: true }).child({ gateway: `${o.namespace}/${o.name}` }),
      });
      await d.runDaemon(`waypoint ${o.namespace}/${o.name}`, w);
    });

  wp.command('apply')
    .description('create or update a waypoint (a Gateway of class istio-waypoint) in a namespace')
    .requiredOption('-n, --namespace <ns>', 'namespace of the waypoint')
    .option('--name <name>', 'name of the waypoint', dns1123, 'waypoint')
    .option('--for <traffic>', `which traffic it handles: ${WAYPOINT_FOR.join(', ')}`, 'service')
    .option('--enroll-namespace', 'also label the namespace istio.io/use-waypoint=<name>, so its services use the waypoint')
    .action(async (o: { namespace: string; name: string; for: string; enrollNamespace?: boolean }) => {
      if (!WAYPOINT_FOR.includes(o.for)) d.fail(`error: --for must be one of ${WAYPOINT_FOR.join(', ')}, not "${o.for}"`);
      const c = d.client();
      try {
        const nsList = await c.list('Namespace');
        const ns = nsList.find((n) => n.metadata.name === o.namespace);
        if (!ns) d.fail(`error: namespace ${o.namespace} does not exist (create it first: a Namespace manifest and \`ambit apply\`)`);
        const [r] = await c.apply([waypointGateway(o.namespace, o.name, o.for)]);
        d.out(`waypoint ${o.namespace}/${o.name} ${r.action}\n`);
        if (o.enrollNamespace) {
          const labels = { ...(ns!.metadata.labels ?? {}), [LABEL_USE_WAYPOINT]: o.name };
          await c.apply([{ apiVersion: ns!.apiVersion, kind: 'Namespace', metadata: { name: o.namespace, labels, ...(ns!.metadata.annotations ? { annotations: ns!.metadata.annotations } : {}) } }]);
          d.out(`namespace ${o.namespace} labelled ${LABEL_USE_WAYPOINT}=${o.name}\n`);
        }
      } finally {
        c.close();
      }
    });

  wp.command('list')
    .description('list waypoints with their Programmed condition')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('-A, --all-namespaces', 'every namespace')
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (o: { namespace: string; allNamespaces?: boolean; output: string }) => {
      const c = d.client();
      try {
        const all = (await c.list('Gateway', o.allNamespaces ? '' : o.namespace)).filter(isWaypoint);
        if (o.output === 'json') return d.out(`${JSON.stringify(all, null, 2)}\n`);
        if (all.length === 0) return d.out(o.allNamespaces ? 'no waypoints\n' : `no waypoints in namespace ${o.namespace}\n`);
        d.out(table([['NAMESPACE', 'NAME', 'FOR', 'PROGRAMMED', 'INSTANCES'], ...all.map((g) => [
          g.metadata.namespace ?? '', g.metadata.name, g.metadata.labels?.['istio.io/waypoint-for'] ?? 'service', condition(g, 'Programmed')?.status ?? 'Unknown',
          String((g.status as { instances?: number } | undefined)?.instances ?? 0),
        ])]));
      } finally {
        c.close();
      }
    });

  wp.command('status')
    .description('show whether waypoints are programmed (have applied their configuration), and which namespaces and services use them')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--name <name>', 'one waypoint (default: all in the namespace)')
    .option('--wait <duration>', 'wait until Programmed, up to this long (exit 1 if not)', d.duration)
    .action(async (o: { namespace: string; name?: string; wait?: number }) => {
      const c = d.client();
      try {
        const end = Date.now() + (o.wait ?? 0);
        let gws: Resource[];
        for (;;) {
          gws = (await c.list('Gateway', o.namespace)).filter((g) => isWaypoint(g) && (!o.name || g.metadata.name === o.name));
          if (gws.length === 0) d.fail(`error: no waypoint${o.name ? ` ${o.name}` : ''} in namespace ${o.namespace}`);
          const ok = gws.every((g) => condition(g, 'Programmed')?.status === 'True');
          if (ok || Date.now() >= end) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        const namespaces = await c.list('Namespace');
        const svcs = await c.list('Service', o.namespace);
        let allOk = true;
        for (const g of gws) {
          const p = condition(g, 'Programmed');
          if (p?.status !== 'True') allOk = false;
          const users = [
            ...namespaces.filter((n) => n.metadata.labels?.[LABEL_USE_WAYPOINT] === g.metadata.name && n.metadata.name === g.metadata.namespace).map((n) => `namespace/${n.metadata.name}`),
            ...svcs.filter((s) => s.metadata.labels?.[LABEL_USE_WAYPOINT] === g.metadata.name).map((s) => `service/${s.metadata.name}`),
          ];
          d.out(`waypoint ${g.metadata.namespace}/${g.metadata.name}: Programmed=${p?.status ?? 'Unknown'} (${p?.reason ?? '-'}): ${p?.message ?? ''}\n`);
          d.out(`  used by: ${users.length > 0 ? users.join(', ') : 'nothing (label a Namespace or Service istio.io/use-waypoint=' + g.metadata.name + ')'}\n`);
        }
        if (o.wait !== undefined && !allOk) process.exitCode = 1;
      } finally {
        c.close();
      }
    });

  wp.command('delete')
    .description('delete waypoints (and remove the namespace\'s istio.io/use-waypoint label when it names them)')
    .argument('[names...]', 'waypoint names (default: waypoint)')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .action(async (names: string[], o: { namespace: string }) => {
      const c = d.client();
      try {
        const list = names.length > 0 ? names : ['waypoint'];
        for (const name of list) {
          try {
            await c.delete([{ kind: 'Gateway', namespace: o.namespace, name }]);
            d.out(`waypoint ${o.namespace}/${name} deleted\n`);
          } catch (err) {
            if (err instanceof ApiError && err.code === 'NotFound') d.fail(`error: no waypoint ${name} in namespace ${o.namespace}`);
            throw err;
          }
        }
        const ns = (await c.list('Namespace')).find((n) => n.metadata.name === o.namespace);
        const label = ns?.metadata.labels?.[LABEL_USE_WAYPOINT];
        if (ns && label && list.includes(label)) {
          const labels = { ...ns.metadata.labels };
          delete labels[LABEL_USE_WAYPOINT];
          await c.apply([{ apiVersion: ns.apiVersion, kind: 'Namespace', metadata: { name: ns.metadata.name, labels, ...(ns.metadata.annotations ? { annotations: ns.metadata.annotations } : {}) } }]);
          d.out(`namespace ${o.namespace}: removed ${LABEL_USE_WAYPOINT}=${label}\n`);
        }
      } finally {
        c.close();
      }
    });
}
