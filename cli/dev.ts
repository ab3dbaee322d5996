import { Command, InvalidArgumentError, Option } from 'commander';
import fs from 'node:fs';
import type { ComponentStatus, PodInfo } from '../deploy/local';

/**
 * `ambit dev ...`: the local multi-host cluster (deploy/local), and `ambit ztunnel-config`.
 * Wire with registerDevCommands(program, out) from cli/main.ts.
 */
type Out = (s: string) => void;

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function keyValues(items: string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items.flatMap((i) => i.split(','))) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`${what} "${item}" is not k=v`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function positiveInt(v: string): number {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`"${v}" is not a whole number`);
  return Number(v);
}

/** Errors are printed as one message, without a stack, and make the exit code 1. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  };
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

function dirOption(): Option {
  return new Option('--dir <dir>', 'state dir of the cluster (env AMBIT_DEV_DIR, default /var/run/ambit-dev)');
}

async function lib(): Promise<typeof import('../deploy/local')> {
  return import('../deploy/local');
}

function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}

function age(ts: string): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
}

function comp(c: ComponentStatus): string {
  const base = c.state === 'running' ? `running (pid ${c.pid}${c.restarts ? `, ${c.restarts} restarts` : ''})` : `${c.state}${c.restarts ? ` (${c.restarts} restarts)` : ''}`;
  return c.ready === undefined ? base : `${base}${c.ready ? ', ready' : ', not ready'}`;
}

function podStatus(p: PodInfo): string {
  if (p.state === 'exited') return 'Completed';
  if (p.state === 'failed') return `Error (exit ${p.exitCode ?? '?'})`;
  if (p.state === 'backoff') return 'CrashLoopBackOff';
  return p.state.charAt(0).toUpperCase() + p.state.slice(1);
}

export function registerDevCommands(program: Command, out: Out): void {
  const dev = program
    .command('dev')
    .description('a local multi-host cluster made of network namespaces: hosts, control plane, agents, ztunnels and pods as real processes (root)')
    .addHelpText('after', '\nExamples:\n  ambit dev up --nodes 2\n  ambit dev pod run web --node node2 -- python3 -m http.server 8080\n  ambit dev exec client -- curl -s http://10.244.2.2:8080/\n  ambit dev down');

  dev
    .command('waypoint-controller', { hidden: true })
    .description('run the local cluster\'s waypoint controller (started by `ambit dev up`)')
    .addOption(dirOption())
    .action(action(async (o: { dir?: string }) => {
      const { runWaypointController } = await lib();
      await runWaypointController({ dir: o.dir });
    }));

  dev
    .command('up')
    .description('create the hosts, the fabric and the control plane, start the agents and ztunnels (under a supervisor that outlives this command)')
    .option('--nodes <n>', 'number of hosts (node1..nodeN)', positiveInt, 2)
    .option('--name <name>', 'cluster name, the prefix of every netns it creates (env AMBIT_DEV_NAME)', undefined)
    .option('--log-level <level>', 'log level of the components', undefined)
    .option('--timeout <seconds>', 'how long to wait for each component to be ready', positiveInt, 90)
    .addOption(dirOption())
    .action(action(async (o: { nodes: number; name?: string; logLevel?: string; timeout: number; dir?: string }) => {
      const { up } = await lib();
      const r = await up({ dir: o.dir, name: o.name, nodes: o.nodes, logLevel: o.logLevel, readyTimeoutMs: o.timeout * 1000, progress });
      const s = r.state;
      out(r.alreadyUp ? `cluster "${s.name}" is already up (state in ${s.dir})\n` : `cluster "${s.name}" is up (state in ${s.dir})\n`);
      out(table([['HOST', 'NETNS', 'FABRIC IP', 'POD CIDR'], ...s.hosts.map((h) => [h.name, h.netns, h.fabricIp, h.podCidr])]));
      out(`control plane: netns ${s.controlPlane.netns}, gRPC ${s.controlPlane.grpcAddress}, metrics ${s.controlPlane.monitoringAddress}\n`);
      if (r.notReady.length > 0) out(`not ready yet: ztunnel on ${r.notReady.join(', ')} (see \`ambit dev status\`)\n`);
      out(`logs: ${r.logsDir}\n`);
      out(`export AMBIT_CONFIG=${r.adminConfig}\n`);
    }));

  dev
    .command('down')
    .description('stop every process of the cluster and delete its namespaces and files (also after a crash or a half-finished up)')
    .option('--name <name>', 'also remove namespaces of this cluster name (default: the recorded one, or "ambit")')
    .addOption(dirOption())
    .action(action(async (o: { name?: string; dir?: string }) => {
      const { down } = await lib();
      const r = await down({ dir: o.dir, name: o.name, progress });
      for (const p of r.problems) process.stderr.write(`warning: ${p}\n`);
      out(`cluster ${r.names.map((n) => `"${n}"`).join(', ')} removed (${r.netnsRemoved.length} network namespaces deleted)\n`);
      if (r.problems.length > 0) process.exitCode = 1;
    }));

  dev
    .command('status')
    .description('hosts (netns, addresses, pod CIDR) and the state of each component')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(dirOption())
    .action(action(async (o: { output: string; dir?: string }) => {
      const { status, resolveDevDir } = await lib();
      const s = await status({ dir: o.dir });
      if (!s) {
        if (o.output === 'json') out(`${JSON.stringify({ dir: resolveDevDir(o.dir), up: false }, null, 2)}\n`);
        else out(`no local cluster in ${resolveDevDir(o.dir)} (run \`ambit dev up\`)\n`);
        process.exitCode = 1;
        return;
      }
      if (o.output === 'json') return out(`${JSON.stringify(s, null, 2)}\n`);
      out(`cluster "${s.name}" (${s.dir}): ${s.phase}, ${s.healthy ? 'healthy' : 'NOT healthy'}\n`);
      out(`supervisor: ${s.supervisor.running ? `running (pid ${s.supervisor.pid})` : 'NOT running'}\n`);
      const cp = s.controlPlane;
      out(`control plane: netns ${cp.netns}, ${cp.address}, gRPC ${cp.grpc}; controlplane ${comp(cp.components.controlplane)}; cp-proxy ${comp(cp.components['cp-proxy'])}\n\n`);
      out(table([
        ['HOST', 'NETNS', 'ADDRESSES', 'POD CIDR', 'PODS', 'CNI-AGENT', 'ZTUNNEL'],
        ...s.hosts.map((h) => [
          h.name, h.netnsPresent ? h.netns : `${h.netns} (missing)`, h.addresses.map((a) => `${a.ifname} ${a.address}`).join(', ') || '-',
          h.podCidr, String(h.pods), comp(h.components['cni-agent']), comp(h.components.ztunnel),
        ]),
      ]));
      out(`\nlogs: ${s.logsDir}\nexport AMBIT_CONFIG=${s.adminConfig}\n`);
    }));

  const pod = dev.command('pod').description('pods: a netns attached to a host by the CNI chain (bridge + host-local, then ambit-cni) running one process');
  pod
    .command('run')
    .description('create a pod and run CMD in it (the namespace is created in the control plane when missing)')
    .argument('<name>', 'pod name')
    .argument('<command...>', 'command and arguments, after --')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .option('--node <host>', 'host to run on', 'node1')
    .option('--sa, --service-account <sa>', 'service account', 'default')
    .option('-l, --label <k=v>', 'pod label (repeatable, or comma-separated)', collect, [])
    .option('-e, --env <K=V>', 'environment variable for the process (repeatable)', collect, [])
    .addOption(new Option('--restart <policy>', 'restart the process when it ends').choices(['never', 'on-failure', 'always']).default('never'))
    .addOption(dirOption())
    .addHelpText('after', '\nExamples:\n  ambit dev pod run web --node node2 -l app=web -- python3 -m http.server 8080\n  ambit dev pod run client -n demo -- sleep infinity')
    .action(action(async (name: string, command: string[], o: { namespace: string; node: string; serviceAccount: string; label: string[]; env: string[]; restart: 'never' | 'on-failure' | 'always'; dir?: string }) => {
      const { podRun } = await lib();
      const p = await podRun({
        dir: o.dir, name, namespace: o.namespace, node: o.node, serviceAccount: o.serviceAccount, labels: keyValues(o.label, 'label'),
        env: keyValues(o.env, 'env'), restart: o.restart, command,
      });
      process.stderr.write(`pod ${p.namespace}/${p.name} running on ${p.node} in netns ${p.netns} (${p.enrolled ? 'enrolled in the mesh' : 'not in the mesh'}); logs: ambit dev logs ${p.name} -n ${p.namespace}\n`);
      out(`${p.ip}\n`);
    }));

  pod
    .command('delete')
    .alias('rm')
    .description('stop the pod\'s process, run CNI DEL (in reverse order) and delete its netns')
    .argument('<name...>', 'pod name(s)')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .addOption(dirOption())
    .action(action(async (names: string[], o: { namespace: string; dir?: string }) => {
      const { podDelete } = await lib();
      for (const name of names) {
        const r = await podDelete({ dir: o.dir, name, namespace: o.namespace });
        for (const p of r.problems) process.stderr.write(`warning: ${p}\n`);
        out(`pod ${o.namespace}/${name} deleted\n`);
      }
    }));

  pod
    .command('list')
    .alias('ls')
    .description('pods with their host, IP, netns and whether the host agent enrolled them in the mesh')
    .option('-n, --namespace <ns>', 'only this namespace')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(dirOption())
    .action(action(async (o: { namespace?: string; output: string; dir?: string }) => {
      const { podList } = await lib();
      const pods = podList({ dir: o.dir, namespace: o.namespace });
      if (o.output === 'json') return out(`${JSON.stringify(pods, null, 2)}\n`);
      if (pods.length === 0) {
        process.stderr.write('No pods found.\n');
        return;
      }
      out(table([
        ['NAMESPACE', 'NAME', 'NODE', 'IP', 'NETNS', 'ENROLLED', 'STATUS', 'RESTARTS', 'AGE'],
        ...pods.map((p) => [p.namespace, p.name, p.node, p.ip, p.netns, p.enrolled === undefined ? 'unknown' : p.enrolled ? 'yes' : 'no', podStatus(p), String(p.restarts), age(p.createdAt)]),
      ]));
    }));

  dev
    .command('logs')
    .description('a pod\'s output, or a component\'s log')
    .argument('[name]', 'pod name')
    .option('-n, --namespace <ns>', 'namespace of the pod', 'default')
    .option('--component <c>', 'controlplane, cp-proxy, cni-agent, ztunnel or supervisor instead of a pod')
    .option('--node <host>', 'host of the cni-agent or ztunnel', 'node1')
    .option('--tail <n>', 'only the last N lines', positiveInt)
    .option('-f, --follow', 'keep printing what is appended (Ctrl-C to stop)')
    .addOption(dirOption())
    .action(action(async (name: string | undefined, o: { namespace: string; component?: string; node: string; tail?: number; follow?: boolean; dir?: string }) => {
      const { logPath, readLog, follow } = await lib();
      const file = logPath({ dir: o.dir, pod: name, namespace: o.namespace, component: o.component, node: o.node });
      out(readLog(file, o.tail));
      if (!o.follow) return;
      let size = 0;
      try {
        size = fs.statSync(file).size;
      } catch {
        // not written yet
      }
      await new Promise<void>((resolve) => {
        const stop = follow(file, size, out);
        process.once('SIGINT', () => {
          stop();
          resolve();
        });
      });
    }));

  dev
    .command('exec')
    .description('run a command inside a pod\'s netns (with its resolv.conf and environment); exits with the command\'s code')
    .argument('<name>', 'pod name')
    .argument('<command...>', 'command and arguments, after --')
    .option('-n, --namespace <ns>', 'namespace', 'default')
    .addOption(dirOption())
    .action(action(async (name: string, command: string[], o: { namespace: string; dir?: string }) => {
      const { podExec } = await lib();
      const r = await podExec({ dir: o.dir, name, namespace: o.namespace, command, stdio: 'inherit' });
      process.exitCode = r.code;
    }));

  program
    .command('ztunnel-config')
    .description('what a ztunnel holds (from its admin /config_dump): workloads, services, policies, certificates, pods or all')
    .argument('<kind>', 'workloads | services | policies | certificates | pods | all')
    .option('--node <host>', 'host of the local cluster (default node1)')
    .option('--admin-addr <host:port>', 'admin endpoint in this netns instead of a local-cluster host')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .addOption(dirOption())
    .action(action(async (kind: string, o: { node?: string; adminAddr?: string; output: string; dir?: string }) => {
      const { fetchConfigDump, renderConfig, configJson, resolveConfigKind, CONFIG_KINDS } = await lib();
      const k = resolveConfigKind(kind);
      if (!k) throw new Error(`unknown kind "${kind}" (one of ${CONFIG_KINDS.join(', ')})`);
      const d = await fetchConfigDump({ dir: o.dir, node: o.node, adminAddr: o.adminAddr });
      out(o.output === 'json' ? `${JSON.stringify(configJson(d, k), null, 2)}\n` : renderConfig(d, k));
    }));
}
