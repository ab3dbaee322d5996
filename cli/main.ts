import { Command, Option, InvalidArgumentError } from 'commander';
import { AmbitClient } from '../lib/api/client';
import { defaultConfigPath, dialFromConfig, loadClientConfig } from '../lib/api/client-config';
import { ApiError } from '../lib/api/errors';
import { parseDurationMs } from '../lib/api/meta';
import { KINDS, resolveKind, validateResource } from '../lib/api/registry';
import { DEFAULT_NAMESPACE, describeKey, keyOf } from '../lib/api/resource';
import { ManifestError, readManifests, SourceDoc } from './manifests';
import { renderList } from './output';
import { registerDevCommands } from './dev';
import { registerWaypointCommands } from './waypoint';

const VERSION: string = (require('../../package.json') as { version: string }).version;

/** An error already explained to the user: print it, exit non-zero, no stack. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

function duration(v: string): number {
  try {
    return parseDurationMs(v);
  } catch {
    throw new InvalidArgumentError(`"${v}" is not a duration such as 30s, 24h or 1h30m`);
  }
}

function client(): AmbitClient {
  return new AmbitClient(dialFromConfig(loadClientConfig()));
}

function describeApiError(err: unknown, docs?: SourceDoc[]): string {
  if (!(err instanceof ApiError)) return (err as Error).message ?? String(err);
  if (docs && err.fields.length > 0) {
    const lines = err.fields.map((f) => {
      const fe = f as { index?: number; resource?: string; path: string; message: string };
      const d = fe.index !== undefined ? docs[fe.index] : undefined;
      const where = d ? `${d.file}: document ${d.index}: ` : '';
      return `${where}${fe.resource ? `${fe.resource}: ` : ''}${fe.path ? `${fe.path}: ` : ''}${fe.message}`;
    });
    return lines.join('\n');
  }
  if (err.code === 'Unavailable') return `${err.message}\n(is the control plane running? check the server address in AMBIT_CONFIG or ~/.ambit/config)`;
  return err.message;
}

/** Reads and validates manifests locally so errors name the file and the document before anything is sent. */
function loadAndValidate(files: string[], recursive: boolean): SourceDoc[] {
  let docs: SourceDoc[];
  try {
    docs = readManifests(files, recursive);
  } catch (err) {
    if (err instanceof ManifestError) throw new CliError(err.message);
    throw err;
  }
  if (docs.length === 0) throw new CliError(`no resources found in ${files.join(', ')}`);
  const errors: string[] = [];
  for (const d of docs) {
    const v = validateResource(d.doc);
    if (!v.ok) {
      const dd = (d.doc ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
      const subject = `${typeof dd.kind === 'string' ? dd.kind : '(no kind)'} ${typeof dd.metadata?.namespace === 'string' ? `${dd.metadata.namespace}/` : ''}${typeof dd.metadata?.name === 'string' ? dd.metadata.name : '(no name)'}`;
      for (const e of v.errors) errors.push(`${d.file}: document ${d.index}: ${subject}: ${e.path ? `${e.path}: ` : ''}${e.message}`);
    }
  }
  if (errors.length > 0) throw new CliError(`error: nothing was applied:\n${errors.join('\n')}`);
  return docs;
}

function withNamespace(docs: SourceDoc[], ns: string | undefined): void {
  if (!ns) return;
  for (const d of docs) {
    const doc = d.doc as { kind?: string; metadata?: { namespace?: string } };
    const def = typeof doc.kind === 'string' ? KINDS.find((k) => k.kind === doc.kind) : undefined;
    if (!def?.namespaced || !doc.metadata) continue;
    if (doc.metadata.namespace && doc.metadata.namespace !== ns) {
      throw new CliError(`${d.file}: document ${d.index}: the namespace in the document (${doc.metadata.namespace}) does not match --namespace ${ns}`);
    }
    doc.metadata.namespace = ns;
  }
}

export function buildProgram(out: (s: string) => void = (s) => process.stdout.write(s)): Command {
  const program = new Command();
  program
    .name('ambit')
    .description('Ambit: a sidecarless (ambient) service mesh.\n\nResources are Kubernetes-shaped YAML (the same kinds and fields as Istio and the Gateway API).\nThe CLI talks to the control plane with the credential in $AMBIT_CONFIG or ~/.ambit/config.')
    .version(VERSION, '--version', 'print the version')
    // Subcommands own their options: `ambit waypoint status --namespace x` means status's --namespace.
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s) });

  program
    .command('version')
    .description('print the client version (and the server address in use, if configured)')
    .action(() => {
      out(`ambit ${VERSION} (node ${process.version})\n`);
      try {
        out(`server: ${loadClientConfig().server} (credential ${defaultConfigPath()})\n`);
      } catch {
        out('server: not configured (set AMBIT_CONFIG or ~/.ambit/config)\n');
      }
    });

  program
    .command('apply')
    .description('create or update resources from files, directories or stdin (all documents are validated first; nothing is applied if any is invalid)')
    .requiredOption('-f, --filename <path...>', 'file, directory of .yaml/.yml/.json files, or - for stdin (repeatable)')
    .option('-R, --recursive', 'descend into subdirectories of a directory')
    .option('-n, --namespace <ns>', 'namespace for documents that do not set one')
    .option('--dry-run', 'validate on the server without storing anything')
    .addHelpText('after', '\nExamples:\n  ambit apply -f deploy/examples/\n  cat policy.yaml | ambit apply -f -')
    .action(async (o: { filename: string[]; recursive?: boolean; namespace?: string; dryRun?: boolean }) => {
      const docs = loadAndValidate(o.filename, !!o.recursive);
      withNamespace(docs, o.namespace);
      const c = client();
      try {
        const results = await c.apply(docs.map((d) => d.doc), !!o.dryRun);
        for (const r of results) {
          const def = KINDS.find((k) => k.kind === r.kind);
          out(`${(def?.kind ?? r.kind).toLowerCase()}/${r.name}${r.namespace ? ` (${r.namespace})` : ''} ${r.action}${o.dryRun ? ' (dry run)' : ''}\n`);
        }
      } catch (err) {
        throw new CliError(`error: nothing was applied:\n${describeApiError(err, docs)}`);
      } finally {
        c.close();
      }
    });

  program
    .command('get')
    .description(`list or show resources. KIND is a kind, plural or short name: ${KINDS.map((k) => k.shortNames[0] ?? k.plural).join(', ')}`)
    .argument('<kind>', 'resource kind, e.g. svc, httproutes, AuthorizationPolicy')
    .argument('[name]', 'one resource by name')
    .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
    .option('-A, --all-namespaces', 'list across all namespaces')
    .option('-l, --selector <selector>', 'label selector, e.g. app=web,tier!=db')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'wide', 'yaml', 'json', 'name']).default('table'))
    .option('-w, --watch', 'after listing, print changes as they happen')
    .action(async (kind: string, name: string | undefined, o: { namespace: string; allNamespaces?: boolean; selector?: string; output: string; watch?: boolean }) => {
      const def = resolveKind(kind);
      if (!def) throw new CliError(`error: the server doesn't have a resource type "${kind}" (known: ${KINDS.map((k) => k.plural).join(', ')})`);
      const ns = def.namespaced && !o.allNamespaces ? o.namespace : '';
      const c = client();
      try {
        if (name) {
          const r = await c.get(def.kind, ns || DEFAULT_NAMESPACE, name);
          out(renderList([r], o.output, false, true));
        } else {
          const items = await c.list(def.kind, ns, o.selector ?? '');
          if (items.length === 0 && !o.watch && o.output !== 'json' && o.output !== 'yaml') {
            process.stderr.write(def.namespaced && ns ? `No resources found in ${ns} namespace.\n` : 'No resources found.\n');
          } else if (!o.watch || items.length > 0) {
            out(renderList(items, o.output, !!o.allNamespaces));
          }
        }
        if (o.watch) {
          let first = true;
          await new Promise<void>((resolve, reject) => {
            const stop = c.watch(def.kind, ns, o.selector ?? '', (type, r) => {
              if (first && type === 'ADDED') return; // the initial state was printed above
              first = false;
              out(o.output === 'json' || o.output === 'yaml' ? renderList([r], o.output, false, true) : `${type}\t${r.metadata.namespace ? `${r.metadata.namespace}/` : ''}${r.metadata.name}\t${r.metadata.resourceVersion}\n`);
            }, (err) => (err ? reject(err) : resolve()));
            process.once('SIGINT', () => {
              stop();
              resolve();
            });
            setImmediate(() => (first = false));
          });
        }
      } catch (err) {
        throw new CliError(`error: ${describeApiError(err)}`);
      } finally {
        c.close();
      }
    });

  program
    .command('delete')
    .description('delete resources named in files, or one resource by kind and name')
    .argument('[kind]', 'resource kind')
    .argument('[name]', 'resource name')
    .option('-f, --filename <path...>', 'delete the resources these files describe')
    .option('-R, --recursive', 'descend into subdirectories of a directory')
    .option('-n, --namespace <ns>', 'namespace', DEFAULT_NAMESPACE)
    .option('--ignore-not-found', 'treat a missing resource as deleted')
    .addHelpText('after', '\nExamples:\n  ambit delete -f deploy/examples/\n  ambit delete httproute reviews -n demo')
    .action(async (kind: string | undefined, name: string | undefined, o: { filename?: string[]; recursive?: boolean; namespace: string; ignoreNotFound?: boolean }) => {
      let refs: Array<{ kind: string; namespace: string; name: string }>;
      let docs: SourceDoc[] | undefined;
      if (o.filename) {
        if (kind) throw new CliError('error: give either -f FILE or KIND NAME, not both');
        docs = loadAndValidate(o.filename, !!o.recursive);
        refs = docs.map((d) => {
          const v = validateResource(d.doc);
          const k = keyOf((v as { ok: true; resource: Parameters<typeof keyOf>[0] }).resource);
          return { kind: k.kind, namespace: k.namespace, name: k.name };
        }).reverse(); // namespaces last, as they were created first
      } else {
        if (!kind || !name) throw new CliError('error: give -f FILE, or KIND and NAME (e.g. `ambit delete svc web -n demo`)');
        const def = resolveKind(kind);
        if (!def) throw new CliError(`error: the server doesn't have a resource type "${kind}"`);
        refs = [{ kind: def.kind, namespace: def.namespaced ? o.namespace : '', name }];
      }
      const c = client();
      try {
        const results = await c.delete(refs, !!o.ignoreNotFound || !!o.filename);
        for (const r of results) out(`${describeKey({ kind: r.kind, namespace: r.namespace, name: r.name })} ${r.action === 'not-found' ? 'not found' : 'deleted'}\n`);
      } catch (err) {
        throw new CliError(`error: ${describeApiError(err, docs)}`);
      } finally {
        c.close();
      }
    });

  const token = program.command('token').description('bootstrap tokens that let a node join the mesh');
  token
    .command('create')
    .description('create a single-use token for one node; its agent exchanges it for a node certificate')
    .requiredOption('--node <name>', 'the node (host) name the token is for')
    .option('--ttl <duration>', 'how long the token may be used (at most 168h)', duration, 24 * 3600 * 1000)
    .action(async (o: { node: string; ttl: number }) => {
      const c = client();
      try {
        const t = await c.createBootstrapToken(o.node, Math.ceil(o.ttl / 1000));
        out(`${t.token}\n`);
        process.stderr.write(`token for node ${o.node}, single use, expires ${t.expiresAt}\n`);
      } catch (err) {
        throw new CliError(`error: ${describeApiError(err)}`);
      } finally {
        c.close();
      }
    });

  program
    .command('controlplane')
    .description('run the control plane: resource store and API, CA, config push (gRPC :15012, metrics and health :15014)')
    .option('--data-dir <dir>', 'where the store, the CA and the admin credential live (env AMBIT_DATA_DIR)', process.env.AMBIT_DATA_DIR ?? '/var/lib/ambit')
    .option('--trust-domain <td>', 'SPIFFE trust domain (env AMBIT_TRUST_DOMAIN)', process.env.AMBIT_TRUST_DOMAIN ?? 'cluster.local')
    .option('--grpc-addr <host:port>', 'gRPC listen address (env AMBIT_GRPC_ADDR)', process.env.AMBIT_GRPC_ADDR ?? '0.0.0.0:15012')
    .option('--monitoring-addr <host:port>', 'metrics and health listen address (env AMBIT_MONITORING_ADDR)', process.env.AMBIT_MONITORING_ADDR ?? '0.0.0.0:15014')
    .option('--service-cidr <cidr>', 'range service cluster IPs are allocated from (env AMBIT_SERVICE_CIDR)', process.env.AMBIT_SERVICE_CIDR ?? '10.96.0.0/16')
    .option('--cert-ttl <duration>', 'workload certificate lifetime (env AMBIT_CERT_TTL)', duration, parseDurationMs(process.env.AMBIT_CERT_TTL ?? '24h'))
    .option('--node-cert-ttl <duration>', 'node certificate lifetime', duration, 30 * 24 * 3600 * 1000)
    .option('--root-namespace <ns>', 'namespace whose selector-less policies apply mesh-wide', 'istio-system')
    .option('--push-debounce <duration>', 'quiet period before a config push', duration, 100)
    .option('--push-max-delay <duration>', 'longest a push may be held back by a stream of changes', duration, 1000)
    .option('--ca-cert <file>', 'operator-supplied CA certificate (root or intermediate) instead of a generated root')
    .option('--ca-key <file>', 'key of --ca-cert')
    .option('--ca-chain <file>', 'certificates from the issuer of --ca-cert up to the root')
    .option('--san <name...>', 'extra DNS names or IPs for the serving certificate')
    .option('--log-level <level>', 'trace, debug, info, warn, error', process.env.AMBIT_LOG_LEVEL ?? 'info')
    .action(async (o: Record<string, string | number | string[] | undefined>) => {
      const { ControlPlane } = await import('../controlplane/controlplane');
      const { createLogger } = await import('../lib/telemetry/log');
      const cp = new ControlPlane({
        dataDir: String(o.dataDir), trustDomain: String(o.trustDomain), grpcAddress: String(o.grpcAddr), monitoringAddress: String(o.monitoringAddr),
        serviceCidr: String(o.serviceCidr), certTtlMs: Number(o.certTtl), nodeCertTtlMs: Number(o.nodeCertTtl), rootNamespace: String(o.rootNamespace),
        debounceMs: Number(o.pushDebounce), maxPushDelayMs: Number(o.pushMaxDelay), caCertFile: o.caCert as string | undefined,
        caKeyFile: o.caKey as string | undefined, caChainFile: o.caChain as string | undefined, serverSans: (o.san as string[] | undefined) ?? [],
        logger: createLogger('controlplane', String(o.logLevel)),
      });
      await runDaemon('the control plane', cp, () =>
        process.stderr.write(`control plane ready: gRPC on port ${cp.grpcPort}, metrics on ${cp.monitoringPort}\nadmin credential: ${cp.adminConfigPath} (export AMBIT_CONFIG=${cp.adminConfigPath})\n`),
      );
    });

  program
    .command('ztunnel')
    .description('run the node proxy: per enrolled pod, listeners inside its netns (15001 outbound, 15006 inbound plaintext, 15008 HBONE, 15053 DNS); admin on 127.0.0.1:15000, metrics on :15020')
    .requiredOption('--node <name>', 'this host\'s node name (env NODE_NAME)', process.env.NODE_NAME)
    .option('--credential <file>', 'node credential written by the cni agent', '/var/lib/ambit-node/node.yaml')
    .option('--agent-socket <path>', 'unix socket of the node agent', '/var/run/ambit/ztunnel.sock')
    .option('--admin-addr <host:port>', 'admin endpoint (config_dump, readiness)', '127.0.0.1:15000')
    .option('--metrics-addr <host:port>', 'Prometheus metrics', '0.0.0.0:15020')
    .option('--trust-domain <td>', 'SPIFFE trust domain', 'cluster.local')
    .option('--dns-upstream <ip:port>', 'resolver for names outside the mesh (default: none, answer NXDOMAIN)')
    .option('--drain <duration>', 'grace period for connections on SIGTERM', duration, 5000)
    .option('--log-level <level>', 'trace, debug, info, warn, error', process.env.AMBIT_LOG_LEVEL ?? 'info')
    .action(async (o: { node: string; credential: string; agentSocket: string; adminAddr: string; metricsAddr: string; trustDomain: string; dnsUpstream?: string; drain: number; logLevel: string }) => {
      const { Ztunnel } = await import('../ztunnel/app');
      const { createLogger } = await import('../lib/telemetry/log');
      const z = new Ztunnel({
        node: o.node, credentialFile: o.credential, agentSocket: o.agentSocket, adminAddress: o.adminAddr, metricsAddress: o.metricsAddr,
        trustDomain: o.trustDomain, dnsUpstream: o.dnsUpstream, drainMs: o.drain, logger: createLogger('ztunnel', o.logLevel).child({ node: o.node }),
      });
      await runDaemon('ztunnel', z);
    });

  program
    .command('cni-agent')
    .description('run the node agent: enrols pods the CNI plugin hands over (redirect rules, workload registration, handoff to the ztunnel)')
    .requiredOption('--node <name>', 'this host\'s node name (env NODE_NAME)', process.env.NODE_NAME)
    .option('--state-dir <dir>', 'node credential and pod records', '/var/lib/ambit-node')
    .option('--cni-socket <path>', 'unix socket the ambit-cni plugin calls', '/var/run/ambit/cni.sock')
    .option('--ztunnel-socket <path>', 'unix socket the ztunnel connects to', '/var/run/ambit/ztunnel.sock')
    .option('--trust-domain <td>', 'SPIFFE trust domain', 'cluster.local')
    .option('--server <host:port>', 'control plane address (first start only)')
    .option('--ca-cert <file>', 'mesh root certificate to verify the control plane (first start only)')
    .option('--token <token>', 'bootstrap token from `ambit token create --node NAME` (first start only; env AMBIT_BOOTSTRAP_TOKEN)', process.env.AMBIT_BOOTSTRAP_TOKEN)
    .option('--log-level <level>', 'trace, debug, info, warn, error', process.env.AMBIT_LOG_LEVEL ?? 'info')
    .action(async (o: { node: string; stateDir: string; cniSocket: string; ztunnelSocket: string; trustDomain: string; server?: string; caCert?: string; token?: string; logLevel: string }) => {
      const { CniAgent } = await import('../cni/agent/agent');
      const { createLogger } = await import('../lib/telemetry/log');
      const join = o.server && o.caCert && o.token ? { server: o.server, rootPemFile: o.caCert, token: o.token } : undefined;
      const a = new CniAgent({ node: o.node, stateDir: o.stateDir, cniSocket: o.cniSocket, ztunnelSocket: o.ztunnelSocket, trustDomain: o.trustDomain, join, logger: createLogger('cni-agent', o.logLevel).child({ node: o.node }) });
      await runDaemon('the cni agent', a);
    });

  registerDevCommands(program, out);
  registerWaypointCommands(program, {
    out,
    client,
    runDaemon,
    duration,
    fail: (message: string): never => {
      throw new CliError(message);
    },
  });

  return program;
}

/** Starts a long-running component, serves until SIGTERM or SIGINT, then stops it; a failed start is undone and reported. */
async function runDaemon(what: string, d: { start(): Promise<void>; stop(): Promise<void> }, onReady?: () => void): Promise<void> {
  try {
    await d.start();
  } catch (err) {
    await d.stop().catch(() => undefined);
    throw new CliError(`error: ${what} could not start: ${(err as Error).message}`);
  }
  onReady?.();
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await d.stop();
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`${err.message}\n`);
      process.exitCode = err.exitCode;
      return;
    }
    throw err;
  }
}
