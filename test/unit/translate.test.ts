import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource } from '../../lib/api/registry';
import type { Resource } from '../../lib/api/resource';
import { Action, AuthorizationMsg, MtlsMode, Scope, ServiceMsg, TYPE_AUTHORIZATION, WorkloadMsg } from '../../lib/api/workload-types';
import { decodeBody } from '../../lib/xds/codec';
import { bytesToIp } from '../../lib/util/ip';
import { DEFAULT_TRANSLATE_OPTIONS, emptyModel, Model } from '../../controlplane/translate/model';
import { compileL4Policy, resourcesFor, translate, WaypointServiceConfig } from '../../controlplane/translate/translate';

/** Resources exactly as the API would store them: validated, defaults applied. */
function r(doc: object): Resource {
  const v = validateResource(doc);
  if (!v.ok) throw new Error(JSON.stringify(v.errors));
  return { ...v.resource, metadata: { ...v.resource.metadata, creationTimestamp: '2026-01-01T00:00:00Z' } };
}

function model(parts: Partial<Model>): Model {
  return { ...emptyModel(), ...parts };
}

const wl = (name: string, ns: string, node: string, ip: string, labels: Record<string, string> = {}, sa = 'default') =>
  r({ apiVersion: 'ambit.io/v1alpha1', kind: 'Workload', metadata: { name, namespace: ns, labels }, spec: { node, serviceAccount: sa, addresses: [ip] } });
const nsr = (name: string, labels: Record<string, string> = {}) => r({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const svc = (name: string, ns: string, selector: Record<string, string>, labels: Record<string, string> = {}) =>
  r({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, labels }, spec: { selector, clusterIP: '10.96.0.20', ports: [{ port: 80, targetPort: 8080 }] } });

function decode<T>(snapMap: Map<string, { type: string; body: Uint8Array }>, name: string): T {
  const e = snapMap.get(name);
  assert.ok(e, `${name} is present`);
  return decodeBody<T>(e.type, e.body);
}

test('translate: same model gives same versions; only the changed resource changes version', () => {
  const m = model({ namespaces: [nsr('a')], workloads: [wl('w1', 'a', 'n1', '10.0.0.1'), wl('w2', 'a', 'n1', '10.0.0.2')] });
  const s1 = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  const s2 = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(s1.workloads.get('wl/a/w1')!.version, s2.workloads.get('wl/a/w1')!.version);
  const m2 = model({ ...m, workloads: [wl('w1', 'a', 'n1', '10.0.0.1'), wl('w2', 'a', 'n1', '10.0.0.3')] });
  const s3 = translate(m2, DEFAULT_TRANSLATE_OPTIONS, s1);
  assert.equal(s3.workloads.get('wl/a/w1')!.version, s1.workloads.get('wl/a/w1')!.version);
  assert.notEqual(s3.workloads.get('wl/a/w2')!.version, s1.workloads.get('wl/a/w2')!.version);
});

test('translate: services select workloads in their namespace and map ports', () => {
  const m = model({
    namespaces: [nsr('a'), nsr('b')],
    workloads: [wl('web-1', 'a', 'n1', '10.0.0.1', { app: 'web' }), wl('web-other-ns', 'b', 'n1', '10.0.0.2', { app: 'web' }), wl('db', 'a', 'n2', '10.0.0.3', { app: 'db' })],
    services: [svc('web', 'a', { app: 'web' })],
  });
  const s = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  const web1 = decode<WorkloadMsg>(s.workloads, 'wl/a/web-1');
  assert.deepEqual(web1.services, { 'a/web.a.svc.cluster.local': { ports: [{ servicePort: 80, targetPort: 8080, appProtocol: '' }] } });
  assert.deepEqual(decode<WorkloadMsg>(s.workloads, 'wl/b/web-other-ns').services, {});
  assert.deepEqual(decode<WorkloadMsg>(s.workloads, 'wl/a/db').services, {});
  const service = decode<ServiceMsg>(s.services, 'svc/a/web');
  assert.equal(service.hostname, 'web.a.svc.cluster.local');
  assert.equal(bytesToIp(service.vips[0]), '10.96.0.20');
});

test('translate: peer authentication resolves workload > namespace > mesh, with port overrides', () => {
  const pa = (name: string, ns: string, mode: string, selector?: Record<string, string>, portLevelMtls?: object) =>
    r({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name, namespace: ns }, spec: { ...(selector ? { selector: { matchLabels: selector } } : {}), mtls: { mode }, ...(portLevelMtls ? { portLevelMtls } : {}) } });
  const m = model({
    namespaces: [nsr('istio-system'), nsr('a'), nsr('b')],
    workloads: [wl('x', 'a', 'n1', '10.0.0.1', { app: 'x' }), wl('y', 'a', 'n1', '10.0.0.2', { app: 'y' }), wl('z', 'b', 'n1', '10.0.0.3')],
    peerAuthentications: [pa('mesh', 'istio-system', 'STRICT'), pa('ns', 'a', 'PERMISSIVE'), pa('x', 'a', 'STRICT', { app: 'x' }, { '8080': { mode: 'PERMISSIVE' } })],
  });
  const s = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  const x = decode<WorkloadMsg>(s.workloads, 'wl/a/x');
  assert.equal(x.mtlsMode, MtlsMode.STRICT);
  assert.deepEqual(x.portMtls, { 8080: MtlsMode.PERMISSIVE });
  assert.equal(decode<WorkloadMsg>(s.workloads, 'wl/a/y').mtlsMode, MtlsMode.PERMISSIVE);
  assert.equal(decode<WorkloadMsg>(s.workloads, 'wl/b/z').mtlsMode, MtlsMode.STRICT);
});

test('translate: L4 policies reach only the ztunnels that enforce them', () => {
  const ap = (name: string, ns: string, spec: object) => r({ apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name, namespace: ns }, spec });
  const m = model({
    namespaces: [nsr('istio-system'), nsr('a'), nsr('b')],
    workloads: [wl('x', 'a', 'n1', '10.0.0.1', { app: 'x' }), wl('z', 'b', 'n2', '10.0.0.3', { app: 'z' })],
    authorizationPolicies: [
      ap('global', 'istio-system', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['192.0.2.0/24'] } }] }] }),
      ap('ns-a', 'a', { rules: [{ from: [{ source: { namespaces: ['a'] } }] }] }),
      ap('only-z', 'b', { selector: { matchLabels: { app: 'z' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/a/sa/default'] } }], to: [{ operation: { ports: ['8080'] } }] }] }),
      ap('waypoint-only', 'b', { targetRefs: [{ kind: 'Service', group: '', name: 'z' }], rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] }),
    ],
  });
  const s = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  const n1 = [...resourcesFor(s, { type: 'ztunnel', node: 'n1' }).keys()].filter((k) => k.startsWith('authz/')).sort();
  const n2 = [...resourcesFor(s, { type: 'ztunnel', node: 'n2' }).keys()].filter((k) => k.startsWith('authz/')).sort();
  assert.deepEqual(n1, ['authz/a/ns-a', 'authz/istio-system/global']);
  assert.deepEqual(n2, ['authz/b/only-z', 'authz/istio-system/global']);
  assert.deepEqual(decode<WorkloadMsg>(s.workloads, 'wl/b/z').authorizationPolicies, ['b/only-z']);
  const onlyZ = decode<AuthorizationMsg>(s.authorizations, 'authz/b/only-z');
  assert.equal(onlyZ.scope, Scope.WORKLOAD_SELECTOR);
  assert.equal(onlyZ.action, Action.ALLOW);
  assert.deepEqual(onlyZ.rules[0].clauses[0].matches[0].principals, [{ exact: 'cluster.local/ns/a/sa/default' }]);
  assert.deepEqual(onlyZ.rules[0].clauses[1].matches[0].destinationPorts, [8080]);
  assert.equal(s.authorizations.get('authz/b/only-z')!.type, TYPE_AUTHORIZATION);
  assert.equal(s.authorizations.has('authz/b/waypoint-only'), false, 'targetRefs policies are the waypoint\'s');
});

test('L4 compile: HTTP attributes fail closed (ALLOW rule dropped, DENY rule kept on its L4 part)', () => {
  const allow = compileL4Policy('p', 'a', Scope.NAMESPACE, {
    action: 'ALLOW',
    rules: [{ to: [{ operation: { methods: ['GET'] } }] }, { from: [{ source: { namespaces: ['a'] } }] }],
  });
  assert.equal(allow.rules.length, 1, 'the rule needing HTTP methods can never allow at L4');
  assert.deepEqual(allow.rules[0].clauses[0].matches[0].namespaces, [{ exact: 'a' }]);
  assert.match(allow.warnings[0], /rules\[0\] ignored: to.operation.methods/);

  const deny = compileL4Policy('p', 'a', Scope.NAMESPACE, {
    action: 'DENY',
    rules: [{ from: [{ source: { principals: ['*/sa/bad'] } }], to: [{ operation: { paths: ['/admin'] } }] }],
  });
  assert.equal(deny.rules.length, 1);
  assert.deepEqual(deny.rules[0].clauses[0].matches[0].principals, [{ suffix: '/sa/bad' }]);
  assert.equal(deny.rules[0].clauses[1].matches[0].destinationPorts.length, 0, 'the path condition is gone: the deny covers every request of that principal');
  assert.match(deny.warnings[0], /enforced on its L4 conditions alone/);

  const allowAllHttp = compileL4Policy('p', 'a', Scope.NAMESPACE, { action: 'ALLOW', rules: [{ when: [{ key: 'request.headers[x-user]', values: ['admin'] }] }] });
  assert.equal(allowAllHttp.rules.length, 0, 'an ALLOW policy left with no rule allows nothing');
  const allowNothing = compileL4Policy('p', 'a', Scope.NAMESPACE, { action: 'ALLOW' });
  assert.equal(allowNothing.rules.length, 0);
  const allowAll = compileL4Policy('p', 'a', Scope.NAMESPACE, { action: 'ALLOW', rules: [{}] });
  assert.equal(allowAll.rules.length, 1);
  assert.equal(allowAll.rules[0].clauses.length, 0, 'an empty rule matches everything');
});

test('translate: waypoints get the L7 config of services bound to them, and ztunnels learn the waypoint', () => {
  const gw = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'a' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } });
  const route = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'a' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } });
  const other = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'api', namespace: 'a' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api' }], rules: [{ backendRefs: [{ name: 'api', port: 80 }] }] } });
  // A consumer route from another namespace, and DestinationRules exported or not to the waypoint's namespace.
  const hijack = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'hijack', namespace: 'evil' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web', namespace: 'a' }], rules: [{ backendRefs: [{ name: 'sink', port: 80 }] }] } });
  const drOf = (namespace: string, name: string, exportTo?: string[]) =>
    r({ apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace }, spec: { host: 'web.a.svc.cluster.local', ...(exportTo ? { exportTo } : {}) } });
  const m = model({
    namespaces: [nsr('a', { 'istio.io/use-waypoint': 'wp' })],
    gateways: [gw],
    workloads: [wl('wp-pod', 'a', 'n1', '10.0.0.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }, 'wp'), wl('web-1', 'a', 'n1', '10.0.0.1', { app: 'web' })],
    services: [svc('web', 'a', { app: 'web' }), svc('api', 'a', { app: 'api' }, { 'istio.io/use-waypoint': 'none' })],
    httpRoutes: [route, other, hijack],
    destinationRules: [drOf('a', 'own'), drOf('x', 'private', ['.']), drOf('y', 'to-a', ['a']), drOf('z', 'public')],
  });
  const s = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  const web = decode<ServiceMsg>(s.services, 'svc/a/web');
  assert.equal(web.waypoint?.name, 'wp');
  assert.equal(bytesToIp(web.waypoint!.addresses[0]), '10.0.0.9');
  assert.equal(decode<ServiceMsg>(s.services, 'svc/a/api').waypoint, null, 'use-waypoint: none opts a service out');
  const forWp = resourcesFor(s, { type: 'waypoint', namespace: 'a', name: 'wp' });
  const cfg = decode<WaypointServiceConfig>(forWp as never, 'l7/a/web');
  assert.deepEqual(cfg.httpRoutes.map((h) => h.name), ['web'], 'a route from another namespace does not reach the waypoint');
  assert.deepEqual(cfg.destinationRules.map((d) => `${d.namespace}/${d.name}`).sort(), ['a/own', 'y/to-a', 'z/public'], 'exportTo "." keeps a rule in its namespace');
  assert.equal(forWp.has('l7/a/api'), false);
  assert.equal(resourcesFor(s, { type: 'ztunnel', node: 'n1' }).has('l7/a/web'), false, 'ztunnels do not receive L7 config');
});

test('translate: a Service labelled istio.io/use-waypoint uses the waypoint though its namespace does not, and its annotations reach the waypoint', () => {
  const gw = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'wp', namespace: 'b' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } });
  const route = r({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'web', namespace: 'b', annotations: { 'ambit.io/local-rate-limit': '10/s' } }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } });
  const m = model({
    namespaces: [nsr('b', { 'istio.io/dataplane-mode': 'ambient' })],
    gateways: [gw],
    workloads: [wl('wp-pod', 'b', 'n1', '10.0.1.9', { 'gateway.networking.k8s.io/gateway-name': 'wp' }, 'wp'), wl('web-1', 'b', 'n1', '10.0.1.1', { app: 'web', version: 'v3' })],
    services: [svc('web', 'b', { app: 'web' }, { 'istio.io/use-waypoint': 'wp' }), svc('plain', 'b', { app: 'web' })],
    httpRoutes: [route],
  });
  const s = translate(m, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(decode<ServiceMsg>(s.services, 'svc/b/web').waypoint?.name, 'wp');
  assert.equal(decode<ServiceMsg>(s.services, 'svc/b/plain').waypoint, null, 'an unlabelled service in an unlabelled namespace has no waypoint');
  const forWp = resourcesFor(s, { type: 'waypoint', namespace: 'b', name: 'wp' });
  const cfg = decode<WaypointServiceConfig>(forWp as never, 'l7/b/web');
  assert.deepEqual(cfg.httpRoutes[0].annotations, { 'ambit.io/local-rate-limit': '10/s' });
  assert.deepEqual(decode<WorkloadMsg>(s.workloads, 'wl/b/web-1').labels, { app: 'web', version: 'v3' }, 'workload labels reach the data plane for subsets');
});
