import { createHash } from 'node:crypto';
import type { Resource } from '../../lib/api/resource';
import { LABEL_GATEWAY_NAME, LABEL_WAYPOINT_FOR, waypointRefOf, WAYPOINT_GATEWAY_CLASS, type WaypointRef } from '../../lib/api/resource';
import {
  Action, AuthorizationMsg, Cidr, Clause, GatewayAddress, Match, MtlsMode, Port, Rule, Scope, ServiceMsg, StringMatch,
  TunnelProtocol, TYPE_AUTHORIZATION, TYPE_SERVICE, TYPE_WAYPOINT_SERVICE, TYPE_WORKLOAD, WorkloadMsg,
} from '../../lib/api/workload-types';
import { encodeBody } from '../../lib/xds/codec';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { ipToBytes, parseCidr } from '../../lib/util/ip';
import { labelsMatch, Model, TranslateOptions } from './model';

/** One translated resource, shared by every subscriber that receives it. */
export interface XdsResource {
  name: string;
  type: string;
  /** Content hash: equal versions mean equal bytes, across restarts too. */
  version: string;
  body: Uint8Array;
}

interface Entry extends XdsResource {
  /** Input fingerprint: when it is unchanged the previous encoding is reused. */
  key: string;
}

/** The translated mesh: computed once per push, then filtered per subscriber. */
export interface MeshSnapshot {
  workloads: Map<string, Entry & { node: string; namespace: string; policies: string[] }>;
  services: Map<string, Entry>;
  authorizations: Map<string, Entry & { scope: Scope; namespace: string }>;
  /** Gateway "namespace/name" -> its per-service L7 configuration. */
  waypoints: Map<string, Map<string, Entry>>;
}

export type Subscriber = { type: 'ztunnel'; node: string } | { type: 'waypoint'; namespace: string; name: string };



function entry(prev: Map<string, Entry> | undefined, name: string, type: string, view: unknown, encode: () => object): Entry {
  const key = JSON.stringify(view);
  const old = prev?.get(name);
  if (old && old.key === key && old.type === type) return old;
  let body: Uint8Array;
  try {
    body = encodeBody(type, encode());
  } catch (err) {
    // Input is validated before it is stored, so this is a bug; the last good encoding keeps serving.
    if (old) return old;
    throw new Error(`cannot translate ${name}: ${(err as Error).message}`);
  }
  const version = createHash('sha256').update(type).update(body).digest('hex').slice(0, 16);
  return { name, type, version, body, key };
}

/**
 * The application protocol of a service port, as Istio reads it: `appProtocol`, else the port
 * name's prefix (`http-web`, `grpc`, `http2-api`, `tcp-db`). The waypoint speaks HTTP/1.1
 * upstream for "http" and HTTP/2 for "http2"/"grpc"/"h2c"; "tcp" (TCP, TLS, HTTPS and the
 * server-first protocols Istio lists: MongoDB, MySQL, Redis) is proxied as opaque bytes without
 * waiting for protocol detection; unknown means "detect, and speak as the caller spoke".
 */
export function appProtocolOf(p: { name?: string; appProtocol?: string }): 'http' | 'http2' | 'tcp' | '' {
  const v = (p.appProtocol ?? p.name?.split('-')[0] ?? '').toLowerCase();
  if (v === 'http2' || v === 'grpc' || v === 'h2c' || v === 'kubernetes.io/h2c') return 'http2';
  if (v === 'http' || v === 'http1' || v === 'grpc-web' || v === 'kubernetes.io/ws') return 'http';
  if (v === 'tcp' || v === 'tls' || v === 'https' || v === 'mongo' || v === 'mysql' || v === 'redis') return 'tcp';
  return '';
}

function spec<T>(r: Resource): T {
  return (r.spec ?? {}) as T;
}

/**
 * Translates the user's resources into what the data plane consumes. Pure: the same model
 * gives the same resources with the same versions. `previous` only lets unchanged
 * resources reuse their encoding.
 */
export function translate(model: Model, opts: TranslateOptions, previous?: MeshSnapshot): MeshSnapshot {
  const nsLabels = new Map<string, Record<string, string>>();
  for (const n of model.namespaces) nsLabels.set(n.metadata.name, n.metadata.labels ?? {});

  const gateways = new Map<string, Resource>();
  for (const g of model.gateways) {
    if (spec<{ gatewayClassName?: string }>(g).gatewayClassName === WAYPOINT_GATEWAY_CLASS) {
      gateways.set(`${g.metadata.namespace}/${g.metadata.name}`, g);
    }
  }

  // Workloads (pods registered by node agents, and WorkloadEntries) with an index by
  // namespace and label so that selectors do not scan every workload.
  interface W { r: Resource; entry: boolean; labels: Record<string, string>; ns: string; ips: string[]; sa: string; node: string; protocol: TunnelProtocol }
  const all: W[] = [];
  for (const r of model.workloads) {
    const s = spec<{ node: string; serviceAccount?: string; addresses: string[]; protocol?: string }>(r);
    all.push({ r, entry: false, labels: r.metadata.labels ?? {}, ns: r.metadata.namespace!, ips: s.addresses, sa: s.serviceAccount ?? 'default', node: s.node, protocol: s.protocol === 'TCP' ? TunnelProtocol.NONE : TunnelProtocol.HBONE });
  }
  for (const r of model.workloadEntries) {
    const s = spec<{ address?: string; labels?: Record<string, string>; serviceAccount?: string }>(r);
    const ips = s.address && /^[0-9a-fA-F:.]+$/.test(s.address) ? [s.address] : [];
    all.push({ r, entry: true, labels: { ...(r.metadata.labels ?? {}), ...(s.labels ?? {}) }, ns: r.metadata.namespace!, ips, sa: s.serviceAccount ?? 'default', node: '', protocol: TunnelProtocol.NONE });
  }
  const index = new Map<string, W[]>();
  const byNs = new Map<string, W[]>();
  for (const w of all) {
    for (const [k, v] of Object.entries(w.labels)) {
      const ik = `${w.ns}\u0000${k}\u0000${v}`;
      let l = index.get(ik);
      if (!l) index.set(ik, (l = []));
      l.push(w);
    }
    let l = byNs.get(w.ns);
    if (!l) byNs.set(w.ns, (l = []));
    l.push(w);
  }
  const select = (ns: string, selector: Record<string, string> | undefined): W[] => {
    const pairs = Object.entries(selector ?? {});
    if (pairs.length === 0) return [];
    let smallest: W[] | undefined;
    for (const [k, v] of pairs) {
      const l = index.get(`${ns}\u0000${k}\u0000${v}`);
      if (!l) return [];
      if (!smallest || l.length < smallest.length) smallest = l;
    }
    return smallest!.filter((w) => labelsMatch(selector, w.labels));
  };

  const waypointAddress = (ref: WaypointRef): GatewayAddress | undefined => {
    if (!gateways.has(`${ref.namespace}/${ref.name}`)) return undefined;
    const pods = select(ref.namespace, { [LABEL_GATEWAY_NAME]: ref.name });
    return {
      namespace: ref.namespace,
      name: ref.name,
      hostname: `${ref.name}.${ref.namespace}.svc.${opts.clusterDomain}`,
      addresses: pods.flatMap((p) => p.ips).map(ipToBytes),
      hbonePort: 15008,
    };
  };
  const waypointFor = (ref: WaypointRef): string => gateways.get(`${ref.namespace}/${ref.name}`)?.metadata.labels?.[LABEL_WAYPOINT_FOR] ?? 'service';

  // Services.
  const services = new Map<string, Entry>();
  const bound = new Map<string, Array<{ svc: Resource; hostname: string; vips: string[]; ports: Port[] }>>();
  const svcOfWorkload = new Map<W, Record<string, { ports: Port[] }>>();
  for (const svc of model.services) {
    const s = spec<{ selector?: Record<string, string>; clusterIP?: string; ports: Array<{ name?: string; appProtocol?: string; port: number; targetPort?: number | string; protocol?: string }> }>(svc);
    const ns = svc.metadata.namespace!;
    const hostname = `${svc.metadata.name}.${ns}.svc.${opts.clusterDomain}`;
    const headless = s.clusterIP === 'None';
    const vips = s.clusterIP && !headless ? [s.clusterIP] : [];
    // A named targetPort refers to a container port the mesh does not know; the service port stands in.
    const ports: Port[] = s.ports.filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => {
      const appProtocol = appProtocolOf(p);
      return { servicePort: p.port, targetPort: typeof p.targetPort === 'number' ? p.targetPort : p.port, ...(appProtocol ? { appProtocol } : {}) };
    });
    const wpRef = waypointRefOf(svc.metadata.labels, ns) ?? (waypointRefOf(nsLabels.get(ns), ns) || undefined);
    const svcWp = waypointRefOf(svc.metadata.labels, ns) === null ? undefined : wpRef && waypointFor(wpRef) !== 'workload' && waypointFor(wpRef) !== 'none' ? wpRef : undefined;
    const wp = svcWp ? waypointAddress(svcWp) : undefined;
    if (svcWp && wp) {
      const k = `${svcWp.namespace}/${svcWp.name}`;
      let l = bound.get(k);
      if (!l) bound.set(k, (l = []));
      l.push({ svc, hostname, vips, ports });
    }
    const name = `svc/${ns}/${svc.metadata.name}`;
    const view = { ns, n: svc.metadata.name, hostname, vips, ports, headless, wp: wp && { ...wp, addresses: wp.addresses.map((a) => Buffer.from(a).toString('hex')) } };
    services.set(name, entry(previous?.services, name, TYPE_SERVICE, view, (): ServiceMsg => ({
      name: svc.metadata.name, namespace: ns, hostname, vips: vips.map(ipToBytes), ports, waypoint: wp, headless,
    })));
    for (const w of select(ns, s.selector)) {
      let m = svcOfWorkload.get(w);
      if (!m) svcOfWorkload.set(w, (m = {}));
      m[`${ns}/${hostname}`] = { ports };
    }
  }

  // Peer authentication: resolved per workload (workload selector > namespace > mesh).
  type PA = { mtls?: { mode?: string }; selector?: { matchLabels?: Record<string, string> }; portLevelMtls?: Record<string, { mode?: string }> };
  const modeOf = (m: string | undefined): MtlsMode | undefined => (m === 'STRICT' ? MtlsMode.STRICT : m === 'PERMISSIVE' ? MtlsMode.PERMISSIVE : m === 'DISABLE' ? MtlsMode.DISABLE : undefined);
  let meshMode: MtlsMode | undefined;
  const nsMode = new Map<string, MtlsMode | undefined>();
  const selectorPAs: Array<{ r: Resource; s: PA }> = [];
  for (const pa of [...model.peerAuthentications].sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''))) {
    const s = spec<PA>(pa);
    if (s.selector?.matchLabels && Object.keys(s.selector.matchLabels).length > 0) selectorPAs.push({ r: pa, s });
    else if (pa.metadata.namespace === opts.rootNamespace) meshMode ??= modeOf(s.mtls?.mode);
    else if (!nsMode.has(pa.metadata.namespace!)) nsMode.set(pa.metadata.namespace!, modeOf(s.mtls?.mode));
  }

  // Authorization policies enforced by ztunnel: selector or no target at all.
  const authorizations = new Map<string, Entry & { scope: Scope; namespace: string }>();
  const policiesOf = new Map<W, string[]>();
  for (const ap of model.authorizationPolicies) {
    const s = spec<AuthzSpec>(ap);
    if (s.targetRef || (s.targetRefs && s.targetRefs.length > 0)) continue;
    const ns = ap.metadata.namespace!;
    const hasSelector = !!s.selector?.matchLabels && Object.keys(s.selector.matchLabels).length > 0;
    const scope = hasSelector ? Scope.WORKLOAD_SELECTOR : ns === opts.rootNamespace ? Scope.GLOBAL : Scope.NAMESPACE;
    const name = `${ns}/${ap.metadata.name}`;
    let msg: AuthorizationMsg;
    try {
      msg = compileL4Policy(ap.metadata.name, ns, scope, s);
    } catch (err) {
      // A policy that cannot be compiled is enforced as its strictest reading: ALLOW nothing, or DENY everything.
      const action = s.action === 'DENY' ? Action.DENY : s.action === 'AUDIT' ? Action.AUDIT : Action.ALLOW;
      msg = { name: ap.metadata.name, namespace: ns, scope, action, rules: action === Action.DENY ? [{ clauses: [] }] : [], warnings: [`could not compile (${(err as Error).message}); enforced fail-closed`] };
    }
    const e = entry(previous?.authorizations, `authz/${name}`, TYPE_AUTHORIZATION, { msg: viewOf(msg) }, () => msg);
    authorizations.set(`authz/${name}`, { ...e, scope, namespace: ns });
    if (hasSelector) {
      for (const w of select(ns, s.selector!.matchLabels)) {
        let l = policiesOf.get(w);
        if (!l) policiesOf.set(w, (l = []));
        l.push(name);
      }
    }
  }

  // Workloads.
  const workloads = new Map<string, Entry & { node: string; namespace: string; policies: string[] }>();
  for (const w of all) {
    const ns = w.ns;
    let mode = nsMode.get(ns) ?? meshMode ?? MtlsMode.PERMISSIVE;
    const portMtls: Record<number, MtlsMode> = {};
    const own = selectorPAs.find((p) => p.r.metadata.namespace === ns && labelsMatch(p.s.selector!.matchLabels, w.labels));
    if (own) {
      mode = modeOf(own.s.mtls?.mode) ?? mode;
      for (const [port, v] of Object.entries(own.s.portLevelMtls ?? {})) {
        const m = modeOf(v.mode);
        if (m !== undefined) portMtls[Number(port)] = m;
      }
    }
    const wpRef = waypointRefOf(w.labels, ns) ?? (waypointRefOf(nsLabels.get(ns), ns) || undefined);
    const workloadWp = waypointRefOf(w.labels, ns) ?? (wpRef && ['workload', 'all'].includes(waypointFor(wpRef)) ? wpRef : undefined);
    const wp = workloadWp ? waypointAddress(workloadWp) : undefined;
    const kindPrefix = w.entry ? 'we' : 'wl';
    const name = `${kindPrefix}/${ns}/${w.r.metadata.name}`;
    const svcs = svcOfWorkload.get(w) ?? {};
    const policies = (policiesOf.get(w) ?? []).sort();
    const canonicalName = w.labels['service.istio.io/canonical-name'] ?? w.labels['app.kubernetes.io/name'] ?? w.labels.app ?? w.r.metadata.name;
    const canonicalRevision = w.labels['service.istio.io/canonical-revision'] ?? w.labels['app.kubernetes.io/version'] ?? w.labels.version ?? 'latest';
    const uid = w.r.metadata.uid ?? name;
    const network = (w.r.spec as { network?: string } | undefined)?.network ?? '';
    const view = { uid, name, ns, sa: w.sa, node: w.node, ips: w.ips, p: w.protocol, canonicalName, canonicalRevision, wp: wp && { ...wp, addresses: wp.addresses.map((a) => Buffer.from(a).toString('hex')) }, svcs, policies, mode, portMtls, network, labels: w.labels };
    const e = entry(previous?.workloads, name, TYPE_WORKLOAD, view, (): WorkloadMsg => ({
      uid, name: w.r.metadata.name, namespace: ns, serviceAccount: w.sa, node: w.node, addresses: w.ips.map(ipToBytes),
      trustDomain: opts.trustDomain, tunnelProtocol: w.protocol, canonicalName, canonicalRevision, waypoint: wp,
      services: svcs, authorizationPolicies: policies, mtlsMode: mode, portMtls, network, labels: w.labels,
    }));
    workloads.set(name, { ...e, node: w.node, namespace: ns, policies });
  }

  // Waypoints: the L7 configuration of each service bound to each waypoint.
  const waypoints = new Map<string, Map<string, Entry>>();
  for (const [gwKey, gw] of gateways) {
    const m = new Map<string, Entry>();
    const prevM = previous?.waypoints.get(gwKey);
    for (const b of bound.get(gwKey) ?? []) {
      const cfg = waypointServiceConfig(model, opts, gw, b);
      const name = `l7/${b.svc.metadata.namespace}/${b.svc.metadata.name}`;
      m.set(name, entry(prevM, name, TYPE_WAYPOINT_SERVICE, cfg, () => cfg));
    }
    waypoints.set(gwKey, m);
  }
  return { workloads, services, authorizations, waypoints };
}

function viewOf(msg: AuthorizationMsg): unknown {
  return JSON.parse(JSON.stringify(msg, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)));
}

/** What decides which policies a ztunnel receives: the namespaces and selector policies of the workloads on its node. */
export interface SubscriberScope {
  localNs: Set<string>;
  localPolicies: Set<string>;
}

export function scopeOf(snap: MeshSnapshot, sub: Subscriber): SubscriberScope {
  const scope: SubscriberScope = { localNs: new Set(), localPolicies: new Set() };
  if (sub.type !== 'ztunnel') return scope;
  for (const v of snap.workloads.values()) {
    if (v.node !== sub.node) continue;
    scope.localNs.add(v.namespace);
    for (const p of v.policies) scope.localPolicies.add(p);
  }
  return scope;
}

/** One resource by name, if this subscriber receives it. */
export function lookup(snap: MeshSnapshot, sub: Subscriber, scope: SubscriberScope, name: string): XdsResource | undefined {
  const r = snap.services.get(name) ?? snap.workloads.get(name);
  if (r) return r;
  if (sub.type === 'ztunnel') {
    const a = snap.authorizations.get(name);
    if (!a) return undefined;
    return a.scope === Scope.GLOBAL || (a.scope === Scope.NAMESPACE && scope.localNs.has(a.namespace)) || scope.localPolicies.has(name.slice('authz/'.length)) ? a : undefined;
  }
  return snap.waypoints.get(`${sub.namespace}/${sub.name}`)?.get(name);
}

/** The resources one subscriber receives, by name. */
export function resourcesFor(snap: MeshSnapshot, sub: Subscriber): Map<string, XdsResource> {
  const out = new Map<string, XdsResource>();
  // Every ztunnel needs every workload: any pod may call any pod, and the destination's identity comes from here.
  for (const [k, v] of snap.services) out.set(k, v);
  for (const [k, v] of snap.workloads) out.set(k, v);
  if (sub.type === 'ztunnel') {
    const scope = scopeOf(snap, sub);
    for (const k of snap.authorizations.keys()) {
      const r = lookup(snap, sub, scope, k);
      if (r) out.set(k, r);
    }
  } else {
    for (const [k, v] of snap.waypoints.get(`${sub.namespace}/${sub.name}`) ?? []) out.set(k, v);
  }
  return out;
}

/** What changed between two snapshots: the names, the nodes whose workloads changed, and whether any waypoint config did. */
export interface SnapshotDelta {
  from: MeshSnapshot;
  names: Set<string>;
  nodes: Set<string>;
  waypoints: boolean;
}

export function diffSnapshots(from: MeshSnapshot, to: MeshSnapshot): SnapshotDelta {
  const d: SnapshotDelta = { from, names: new Set(), nodes: new Set(), waypoints: false };
  const cmp = <E extends XdsResource>(a: Map<string, E>, b: Map<string, E>, onChange?: (old: E | undefined, now: E | undefined) => void) => {
    for (const [k, v] of b) {
      const old = a.get(k);
      if (old?.version !== v.version) {
        d.names.add(k);
        onChange?.(old, v);
      }
    }
    for (const [k, v] of a) {
      if (!b.has(k)) {
        d.names.add(k);
        onChange?.(v, undefined);
      }
    }
  };
  cmp(from.services, to.services);
  cmp(from.authorizations, to.authorizations);
  cmp(from.workloads, to.workloads, (old, now) => {
    if (old) d.nodes.add(old.node);
    if (now) d.nodes.add(now.node);
  });
  for (const [k, m] of to.waypoints) {
    const o = from.waypoints.get(k);
    if (!o || o.size !== m.size || [...m].some(([n, e]) => o.get(n)?.version !== e.version)) d.waypoints = true;
  }
  if (from.waypoints.size !== to.waypoints.size) d.waypoints = true;
  return d;
}

// ---------------------------------------------------------------------------------------
// L4 authorization

interface AuthzSpec {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: unknown;
  targetRefs?: unknown[];
  action?: string;
  rules?: Array<{
    from?: Array<{ source?: Record<string, string[] | undefined> }>;
    to?: Array<{ operation?: Record<string, string[] | undefined> }>;
    when?: Array<{ key: string; values?: string[]; notValues?: string[] }>;
  }>;
}

const L7_SOURCE = ['requestPrincipals', 'notRequestPrincipals'];
const L7_OPERATION = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'];
const L4_WHEN = new Set(['source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);

function stringMatch(s: string): StringMatch {
  if (s === '*') return { presence: true };
  if (s.endsWith('*')) return { prefix: s.slice(0, -1) };
  if (s.startsWith('*')) return { suffix: s.slice(1) };
  return { exact: s };
}

function emptyMatch(): Match {
  return {
    principals: [], notPrincipals: [], namespaces: [], notNamespaces: [], sourceIps: [], notSourceIps: [],
    destinationPorts: [], notDestinationPorts: [], destinationIps: [], notDestinationIps: [],
  };
}

function cidrs(list: string[] | undefined): Cidr[] {
  return (list ?? []).map(parseCidr);
}

/**
 * Compiles an AuthorizationPolicy for enforcement at L4. Attributes that only exist at
 * L7 cannot be checked here, so they fail closed the way Istio's ztunnel does: an ALLOW
 * rule that needs them is dropped (it can never allow), and a DENY rule keeps its L4
 * conditions without them (it denies more, never less).
 */
export function compileL4Policy(name: string, namespace: string, scope: Scope, s: AuthzSpec): AuthorizationMsg {
  const action = s.action === 'DENY' ? Action.DENY : s.action === 'AUDIT' ? Action.AUDIT : Action.ALLOW;
  const warnings: string[] = [];
  const rules: Rule[] = [];
  (s.rules ?? []).forEach((rule, i) => {
    const l7: string[] = [];
    const clauses: Clause[] = [];
    if (rule.from && rule.from.length > 0) {
      clauses.push({
        matches: rule.from.map((f) => {
          const src = f.source ?? {};
          for (const k of L7_SOURCE) if (src[k]) l7.push(`from.source.${k}`);
          const m = emptyMatch();
          m.principals = (src.principals ?? []).map(stringMatch);
          m.notPrincipals = (src.notPrincipals ?? []).map(stringMatch);
          m.namespaces = (src.namespaces ?? []).map(stringMatch);
          m.notNamespaces = (src.notNamespaces ?? []).map(stringMatch);
          m.sourceIps = [...cidrs(src.ipBlocks), ...cidrs(src.remoteIpBlocks)];
          m.notSourceIps = [...cidrs(src.notIpBlocks), ...cidrs(src.notRemoteIpBlocks)];
          return m;
        }),
      });
    }
    if (rule.to && rule.to.length > 0) {
      clauses.push({
        matches: rule.to.map((t) => {
          const op = t.operation ?? {};
          for (const k of L7_OPERATION) if (op[k]) l7.push(`to.operation.${k}`);
          const m = emptyMatch();
          m.destinationPorts = (op.ports ?? []).map(Number);
          m.notDestinationPorts = (op.notPorts ?? []).map(Number);
          return m;
        }),
      });
    }
    for (const cond of rule.when ?? []) {
      if (!L4_WHEN.has(cond.key)) {
        l7.push(`when ${cond.key}`);
        continue;
      }
      const m = emptyMatch();
      const pos = cond.values ?? [];
      const neg = cond.notValues ?? [];
      switch (cond.key) {
        case 'source.ip':
        case 'remote.ip':
          m.sourceIps = cidrs(pos);
          m.notSourceIps = cidrs(neg);
          break;
        case 'source.namespace':
          m.namespaces = pos.map(stringMatch);
          m.notNamespaces = neg.map(stringMatch);
          break;
        case 'source.principal':
          m.principals = pos.map(stringMatch);
          m.notPrincipals = neg.map(stringMatch);
          break;
        case 'destination.ip':
          m.destinationIps = cidrs(pos);
          m.notDestinationIps = cidrs(neg);
          break;
        case 'destination.port':
          m.destinationPorts = pos.map(Number);
          m.notDestinationPorts = neg.map(Number);
          break;
      }
      clauses.push({ matches: [m] });
    }
    if (l7.length > 0) {
      if (action === Action.ALLOW) {
        warnings.push(`rules[${i}] ignored: ${l7.join(', ')} can only be enforced by a waypoint; this ALLOW rule never matches at L4`);
        return;
      }
      warnings.push(`rules[${i}]: ${l7.join(', ')} can only be enforced by a waypoint; the rule is enforced on its L4 conditions alone`);
    }
    rules.push({ clauses });
  });
  return { name, namespace, scope, action, rules, warnings };
}

// ---------------------------------------------------------------------------------------
// Waypoint L7 configuration

export type { WaypointServiceConfig };

function hostMatches(host: string, ns: string, svcName: string, svcNs: string, clusterDomain: string): boolean {
  const fqdn = `${svcName}.${svcNs}.svc.${clusterDomain}`;
  let h = host;
  if (!h.includes('.')) h = `${h}.${ns}.svc.${clusterDomain}`;
  else if (h.split('.').length === 2) h = `${h}.svc.${clusterDomain}`;
  if (h === fqdn) return true;
  if (h.startsWith('*')) return fqdn.endsWith(h.slice(1));
  return false;
}

/**
 * Istio's exportTo: a rule is visible to the namespaces it names, "." being its own and "*" every
 * one (the default). The waypoint applies a DestinationRule as a client in its own namespace.
 */
function exportedTo(exportTo: string[] | undefined, ruleNs: string, consumerNs: string): boolean {
  if (exportTo === undefined || exportTo.length === 0) return true;
  return exportTo.some((e) => e === '*' || e === consumerNs || (e === '.' && ruleNs === consumerNs));
}

function targets(s: { targetRef?: TargetRef; targetRefs?: TargetRef[] }): TargetRef[] {
  return [...(s.targetRef ? [s.targetRef] : []), ...(s.targetRefs ?? [])];
}
interface TargetRef { group?: string; kind: string; name: string; namespace?: string }

function waypointServiceConfig(
  model: Model,
  opts: TranslateOptions,
  gw: Resource,
  b: { svc: Resource; hostname: string; vips: string[]; ports: Port[] },
): WaypointServiceConfig {
  const svcName = b.svc.metadata.name;
  const svcNs = b.svc.metadata.namespace!;
  const gwName = gw.metadata.name;
  const gwNs = gw.metadata.namespace!;
  const brief = (r: Resource) => ({ namespace: r.metadata.namespace!, name: r.metadata.name, spec: r.spec, ...(r.metadata.annotations ? { annotations: r.metadata.annotations } : {}) });
  const parentMatches = (r: Resource): boolean =>
    (spec<{ parentRefs?: Array<{ kind?: string; group?: string; name: string; namespace?: string }> }>(r).parentRefs ?? []).some((p) => {
      const ns = p.namespace ?? r.metadata.namespace;
      // Producer routes only: see route-status.ts for the consumer-route explanation users get.
      if ((p.kind ?? 'Gateway') === 'Service') return p.name === svcName && ns === svcNs && r.metadata.namespace === svcNs;
      return false;
    });
  const targeted = (r: Resource): boolean =>
    targets(spec<{ targetRef?: TargetRef; targetRefs?: TargetRef[] }>(r)).some((t) => {
      const ns = t.namespace ?? r.metadata.namespace;
      return (t.kind === 'Service' && t.name === svcName && ns === svcNs) || (t.kind === 'Gateway' && t.name === gwName && ns === gwNs);
    });
  return {
    service: { name: svcName, namespace: svcNs, hostname: b.hostname, vips: b.vips, ports: b.ports },
    waypoint: { namespace: gwNs, name: gwName },
    httpRoutes: model.httpRoutes.filter(parentMatches).map(brief),
    grpcRoutes: model.grpcRoutes.filter(parentMatches).map(brief),
    virtualServices: model.virtualServices
      .filter((vs) => (spec<{ hosts?: string[] }>(vs).hosts ?? []).some((h) => hostMatches(h, vs.metadata.namespace!, svcName, svcNs, opts.clusterDomain)))
      .map(brief),
    destinationRules: model.destinationRules
      .filter((dr) => hostMatches(spec<{ host: string }>(dr).host, dr.metadata.namespace!, svcName, svcNs, opts.clusterDomain))
      .filter((dr) => exportedTo(spec<{ exportTo?: string[] }>(dr).exportTo, dr.metadata.namespace!, gwNs))
      .map(brief),
    authorizationPolicies: model.authorizationPolicies.filter(targeted).map(brief),
    requestAuthentications: model.requestAuthentications.filter(targeted).map(brief),
  };
}
