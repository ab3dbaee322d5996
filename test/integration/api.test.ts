import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError } from '../../lib/api/errors';
import type { Resource } from '../../lib/api/resource';
import { createCsr, generateKeyPair } from '../../lib/identity/pki';
import { x509 } from '../../lib/identity/pki';
import { joinNode, ns, service, startControlPlane, waitFor, workload } from '../helpers/controlplane';

async function apiError(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err;
  }
  assert.fail('expected the call to be refused');
}

test('resource API: cluster IPs are unique, in range and immutable; a batch is all or nothing', async () => {
  const cp = await startControlPlane({ serviceCidr: '10.200.0.0/28' });
  try {
    await cp.admin.apply([ns('a')]);
    const res = await cp.admin.apply([service('s1', 'a', { app: 'x' }), service('s2', 'a', { app: 'y' })]);
    assert.deepEqual(res.map((r) => r.action), ['created', 'created']);
    const ips = (await cp.admin.list('Service', 'a')).map((s) => (s.spec as { clusterIP: string }).clusterIP);
    assert.equal(new Set(ips).size, 2);
    for (const ip of ips) assert.match(ip, /^10\.200\.0\.\d+$/);

    // Re-applying without a clusterIP keeps the allocated one.
    const again = await cp.admin.apply([service('s1', 'a', { app: 'x' })]);
    assert.equal(again[0].action, 'unchanged');

    const taken = { ...service('s3', 'a', { app: 'z' }), spec: { clusterIP: ips[0], ports: [{ port: 80 }] } };
    let e = await apiError(cp.admin.apply([taken]));
    assert.equal(e.code, 'AlreadyExists');
    assert.match(e.message, /already allocated to Service a\/s1/);
    e = await apiError(cp.admin.apply([{ ...service('s4', 'a', {}), spec: { clusterIP: '192.168.1.1', ports: [{ port: 80 }] } }]));
    assert.match(e.message, /outside the service range 10\.200\.0\.0\/28/);
    e = await apiError(cp.admin.apply([{ ...service('s1', 'a', {}), spec: { clusterIP: ips[1] === '10.200.0.14' ? '10.200.0.13' : '10.200.0.14', ports: [{ port: 80 }] } }]));
    assert.match(e.message, /spec.clusterIP: field is immutable/);

    // All or nothing: one bad document (missing namespace) and the good one is not stored either.
    e = await apiError(cp.admin.apply([service('ok', 'a', {}), service('x', 'missing', {})]));
    assert.equal(e.code, 'NotFound');
    assert.equal((e.fields[0] as unknown as { index: number }).index, 1);
    assert.equal((await cp.admin.list('Service', 'a')).some((s) => s.metadata.name === 'ok'), false);

    // The range runs out with a clear error (a /28 leaves addresses .10 to .14).
    for (let i = 0; i < 3; i++) await cp.admin.apply([service(`fill${i}`, 'a', {})]);
    e = await apiError(cp.admin.apply([service('one-too-many', 'a', {})]));
    assert.match(e.message, /the service range 10\.200\.0\.0\/28 is exhausted/);

    // Deleting a namespace deletes what is in it; "default" is protected.
    await cp.admin.delete([{ kind: 'Namespace', name: 'a' }]);
    assert.equal((await cp.admin.list('Service', 'a')).length, 0);
    e = await apiError(cp.admin.delete([{ kind: 'Namespace', name: 'default' }]));
    assert.equal(e.code, 'Forbidden');
  } finally {
    await cp.stop();
  }
});

test('resource API: watch streams the current state, then every change', async () => {
  const cp = await startControlPlane();
  try {
    await cp.admin.apply([ns('w'), service('first', 'w', {})]);
    const events: Array<[string, Resource]> = [];
    const stop = cp.admin.watch('Service', 'w', '', (type, r) => events.push([type, r]), () => undefined);
    await waitFor('initial ADDED', () => events.length >= 1);
    await cp.admin.apply([service('second', 'w', {}), service('other-ns', 'default', {})]);
    await cp.admin.apply([{ ...service('first', 'w', {}), metadata: { name: 'first', namespace: 'w', labels: { v: '2' } } }]);
    await cp.admin.delete([{ kind: 'Service', namespace: 'w', name: 'second' }]);
    await waitFor('all events', () => events.length >= 4);
    stop();
    assert.deepEqual(events.map(([t, r]) => `${t} ${r.metadata.name}`), ['ADDED first', 'ADDED second', 'MODIFIED first', 'DELETED second']);
  } finally {
    await cp.stop();
  }
});

test('node credentials renew before they expire', async () => {
  const cp = await startControlPlane();
  try {
    const a = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    const keys = await generateKeyPair();
    const renewed = await a.client.renewNode(await createCsr(keys, 'spiffe://cluster.local/ambit/node/node-a'));
    const leaf = new x509.X509Certificate(renewed.certChain);
    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)!;
    assert.deepEqual(san.names.items.map((n) => n.value), ['spiffe://cluster.local/ambit/node/node-a']);
    await cp.admin.apply([ns('x'), workload('p', 'x', 'node-a', '10.1.1.1')]);
    a.client.close();
  } finally {
    await cp.stop();
  }
});

test('resource API: an HTTPRoute or GRPCRoute shows per parent whether it is accepted, its backends resolve and a waypoint serves the parent', async () => {
  const cp = await startControlPlane();
  type Cond = { type: string; status: string; reason: string; message: string; observedGeneration?: number };
  type Parent = { parentRef: { name: string; kind: string; port?: number }; controllerName: string; conditions: Cond[] };
  const parents = async (kind: string, name: string) => ((await cp.admin.get(kind, 'shop', name)).status as { parents: Parent[] }).parents;
  const cond = (p: Parent, type: string) => p.conditions.find((c) => c.type === type)!;
  const route = (name: string, parentRefs: object[], backendRefs: object[], filters: object[] = []) => ({
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: 'shop' },
    spec: { parentRefs, rules: [{ backendRefs, ...(filters.length ? { filters } : {}) }] },
  });
  try {
    await cp.admin.apply([ns('shop', { 'istio.io/dataplane-mode': 'ambient' }), service('web', 'shop', { app: 'web' }), service('web-v1', 'shop', { app: 'web' })]);
    await cp.admin.apply([route('typo', [
      { group: '', kind: 'Service', name: 'wbe' },
      { group: '', kind: 'Service', name: 'web', port: 8080 },
      { name: 'waypoint' },
    ], [{ name: 'web-v3', port: 80 }, { name: 'web-v1', port: 81 }])]);
    const [missing, wrongPort, gw] = await parents('HTTPRoute', 'typo');
    assert.equal(missing.controllerName, 'ambit.io/mesh-controller');
    assert.deepEqual([cond(missing, 'Accepted').status, cond(missing, 'Accepted').reason], ['False', 'NoMatchingParent']);
    assert.match(cond(missing, 'Accepted').message, /parent service "shop\/wbe" not found/);
    assert.equal(cond(missing, 'Accepted').observedGeneration, 1);
    assert.match(cond(wrongPort, 'Accepted').message, /has no port 8080 \(ports: 80\)/);
    assert.equal(cond(gw, 'Accepted').status, 'False');
    assert.match(cond(gw, 'Accepted').message, /attached to a Service/);
    for (const p of [missing, wrongPort, gw]) {
      assert.deepEqual([cond(p, 'ResolvedRefs').status, cond(p, 'ResolvedRefs').reason], ['False', 'BackendNotFound']);
      assert.match(cond(p, 'ResolvedRefs').message, /"shop\/web-v3" not found.*"shop\/web-v1" has no port 81/);
    }

    // A valid route on a service without a waypoint is accepted but applies to nothing: said so.
    await cp.admin.apply([route('ok', [{ group: '', kind: 'Service', name: 'web', port: 80 }], [{ name: 'web-v1', port: 80 }],
      [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }])]);
    let [p] = await parents('HTTPRoute', 'ok');
    assert.equal(cond(p, 'Accepted').status, 'True');
    assert.match(cond(p, 'ResolvedRefs').message, /"shop\/shadow" not found/);
    assert.deepEqual([cond(p, 'ResolvedWaypoints').status, cond(p, 'ResolvedWaypoints').reason], ['False', 'NoWaypoint']);
    assert.match(cond(p, 'ResolvedWaypoints').message, /does not use a waypoint/);

    // The namespace names a waypoint that does not exist yet, then it does; the mirror target appears.
    await cp.admin.apply([ns('shop', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' })]);
    [p] = await parents('HTTPRoute', 'ok');
    assert.equal(cond(p, 'ResolvedWaypoints').reason, 'WaypointNotFound');
    await cp.admin.apply([
      { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'shop' }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } },
      service('shadow', 'shop', { app: 'shadow' }),
    ]);
    [p] = await parents('HTTPRoute', 'ok');
    assert.deepEqual(p.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'ResolvedWaypoints=True', 'ResolvedRefs=True']);
    assert.match(cond(p, 'ResolvedWaypoints').message, /goes through waypoint shop\/waypoint/);

    // A route in another namespace is a consumer route: not applied, and said so.
    await cp.admin.apply([ns('evil'), { ...route('hijack', [{ group: '', kind: 'Service', name: 'web', namespace: 'shop', port: 80 }], [{ name: 'web-v1', namespace: 'shop', port: 80 }]), metadata: { name: 'hijack', namespace: 'evil' } }]);
    const hijack = ((await cp.admin.get('HTTPRoute', 'evil', 'hijack')).status as { parents: Parent[] }).parents[0];
    assert.deepEqual([cond(hijack, 'Accepted').status, cond(hijack, 'Accepted').reason], ['False', 'UnsupportedValue']);
    assert.match(cond(hijack, 'Accepted').message, /consumer route.*not applied/);

    // A service that opts out, and a GRPCRoute (also in a list).
    await cp.admin.apply([{ ...service('web', 'shop', { app: 'web' }), metadata: { name: 'web', namespace: 'shop', labels: { 'istio.io/use-waypoint': 'none' } } }]);
    await cp.admin.apply([{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'g', namespace: 'shop' }, spec: { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web-v1', port: 80 }] }] } }]);
    const listed = (await cp.admin.list('GRPCRoute', 'shop'))[0].status as { parents: Parent[] };
    assert.equal(cond(listed.parents[0], 'Accepted').status, 'True');
    assert.match(cond(listed.parents[0], 'ResolvedWaypoints').message, /opts out of waypoints/);
  } finally {
    await cp.stop();
  }
});
