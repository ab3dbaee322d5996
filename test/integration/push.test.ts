import { test } from 'node:test';
import assert from 'node:assert/strict';
import { XdsClient, DeltaUpdate } from '../../lib/xds/client';
import { TYPE_WORKLOAD, WorkloadMsg } from '../../lib/api/workload-types';
import { bytesToIp } from '../../lib/util/ip';
import { ns, service, startControlPlane, waitFor, workload, joinNode, metric } from '../helpers/controlplane';


function recorder() {
  const updates: DeltaUpdate[] = [];
  return { updates, onUpdate: (u: DeltaUpdate) => void updates.push(u) };
}

test('discovery push: initial state, one incremental update per apply, NACK keeps last good state, reconnect resends nothing unchanged', async () => {
  const cp = await startControlPlane();
  const clients: XdsClient[] = [];
  try {
    await cp.admin.apply([
      ns('shop', { 'istio.io/dataplane-mode': 'ambient' }),
      workload('cart-1', 'shop', 'node-a', '10.244.1.5', { app: 'cart' }),
      workload('cart-2', 'shop', 'node-b', '10.244.2.5', { app: 'cart' }),
      workload('pay-1', 'shop', 'node-a', '10.244.1.6', { app: 'pay' }),
      service('cart', 'shop', { app: 'cart' }),
    ]);
    const nodeA = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    await new Promise((r) => setTimeout(r, 100)); // past the push debounce, so the first response holds the applied state

    // Initial state: everything the ztunnel of node-a needs, in one response.
    const r1 = recorder();
    const x1 = new XdsClient(nodeA.client, { subscriber: { type: 'ztunnel', name: 'node-a' }, onUpdate: r1.onUpdate });
    clients.push(x1);
    x1.start();
    await waitFor('initial state', () => r1.updates.length >= 1);
    const first = r1.updates[0];
    assert.deepEqual([...first.changed.keys()].sort(), ['svc/shop/cart', 'wl/shop/cart-1', 'wl/shop/cart-2', 'wl/shop/pay-1']);
    const cart1 = first.changed.get('wl/shop/cart-1')!.value as WorkloadMsg;
    assert.equal(bytesToIp(cart1.addresses[0]), '10.244.1.5');
    assert.equal(cart1.serviceAccount, 'default');
    assert.deepEqual(Object.keys(cart1.services), ['shop/cart.shop.svc.cluster.local']);
    assert.deepEqual(cart1.services['shop/cart.shop.svc.cluster.local'].ports, [{ servicePort: 80, targetPort: 8080, appProtocol: '' }]);
    await waitFor('ack of the initial state', () => x1.versions.size === 4);

    // One apply changing one workload: exactly one update, holding only that workload.
    await cp.admin.apply([workload('pay-1', 'shop', 'node-a', '10.244.1.7', { app: 'pay' })]);
    await waitFor('incremental update', () => r1.updates.length >= 2);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(r1.updates.length, 2, 'one apply gives one update');
    assert.deepEqual([...r1.updates[1].changed.keys()], ['wl/shop/pay-1']);
    assert.deepEqual(r1.updates[1].removed, []);
    assert.equal(bytesToIp((r1.updates[1].changed.get('wl/shop/pay-1')!.value as WorkloadMsg).addresses[0]), '10.244.1.7');

    // A delete arrives as a removal only.
    await cp.admin.delete([{ kind: 'Workload', namespace: 'shop', name: 'cart-2' }]);
    await waitFor('removal', () => r1.updates.length >= 3);
    // cart-2 leaving changes the service's endpoints, not the other workloads.
    assert.deepEqual([...r1.updates[2].changed.keys()], []);
    assert.deepEqual(r1.updates[2].removed, ['wl/shop/cart-2']);

    // NACK: a subscriber that refuses pay-1's next version keeps the last good one.
    const nacksBefore = await metric(cp.cp.monitoringPort, 'ambit_xds_nacks_total');
    const good = x1.versions.get('wl/shop/pay-1');
    let refuse = true;
    const r2: DeltaUpdate[] = [];
    x1.stop();
    const x2 = new XdsClient(nodeA.client, {
      subscriber: { type: 'ztunnel', name: 'node-a' },
      onUpdate: (u) => {
        r2.push(u);
        if (refuse && u.changed.has('wl/shop/pay-1')) throw new Error('address 10.244.1.8 collides with a local pod');
      },
    });
    for (const [k, v] of x1.versions) x2.versions.set(k, v);
    clients.push(x2);
    x2.start();
    await waitFor('reconnect answer', () => r2.length >= 1);
    assert.equal(r2[0].changed.size, 0, 'a reconnect with current versions resends nothing');
    assert.equal(r2[0].removed.length, 0);

    await cp.admin.apply([workload('pay-1', 'shop', 'node-a', '10.244.1.8', { app: 'pay' })]);
    await waitFor('nack recorded', async () => (await metric(cp.cp.monitoringPort, 'ambit_xds_nacks_total')) > nacksBefore);
    assert.equal(x2.versions.get('wl/shop/pay-1'), good, 'the NACKed version did not replace the last good one');
    const subs = (await (await fetch(`http://127.0.0.1:${cp.cp.monitoringPort}/debug/subscribers`)).json()) as Array<{ lastNack?: string }>;
    assert.match(subs[0].lastNack ?? '', /collides/);

    // An unrelated change is pushed alone: the refused resource is not resent in a loop.
    refuse = false;
    const before = r2.length;
    await cp.admin.apply([workload('cart-1', 'shop', 'node-a', '10.244.1.9', { app: 'cart' })]);
    await waitFor('next update', () => r2.length > before);
    assert.deepEqual([...r2[before].changed.keys()], ['wl/shop/cart-1']);
  } finally {
    for (const c of clients) c.stop();
    await cp.stop();
  }
});

test('discovery push: a node may subscribe only as its own ztunnel; a burst of applies is debounced', async () => {
  const cp = await startControlPlane({ debounceMs: 100, maxPushDelayMs: 1000 });
  const clients: XdsClient[] = [];
  try {
    await cp.admin.apply([ns('shop')]);
    const nodeA = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    const errors: Error[] = [];
    const spy = new XdsClient(nodeA.client, { subscriber: { type: 'ztunnel', name: 'node-b' }, onUpdate: () => assert.fail('must not receive node-b config'), onError: (e) => errors.push(e), backoffMs: { initial: 5000, max: 5000 } });
    clients.push(spy);
    spy.start();
    await waitFor('refusal', () => errors.length > 0);
    assert.match(errors[0].message, /may not subscribe as the ztunnel of node node-b/);

    const rec = recorder();
    const x = new XdsClient(nodeA.client, { subscriber: { type: 'ztunnel', name: 'node-a' }, onUpdate: rec.onUpdate });
    clients.push(x);
    x.start();
    await waitFor('initial', () => rec.updates.length >= 1);
    for (let i = 0; i < 10; i++) await cp.admin.apply([workload(`w${i}`, 'shop', 'node-a', `10.244.1.${10 + i}`)]);
    await waitFor('burst pushed', () => x.versions.size === 10);
    assert.ok(rec.updates.length <= 3, `10 applies within the debounce window gave ${rec.updates.length - 1} pushes`);
  } finally {
    for (const c of clients) c.stop();
    await cp.stop();
  }
});

test('discovery push: workload config decodes to the compact data-path form', async () => {
  const cp = await startControlPlane();
  const clients: XdsClient[] = [];
  try {
    await cp.admin.apply([ns('shop'), workload('a', 'shop', 'n1', 'fd00::5', { app: 'a', version: 'v2' }, 'shopper')]);
    const rec = recorder();
    const x = new XdsClient(cp.admin, { subscriber: { type: 'ztunnel', name: 'n1' }, onUpdate: rec.onUpdate });
    clients.push(x);
    x.start();
    // The subscriber may connect inside the debounce window and see the workload one push later.
    const w = await waitFor('workload pushed', () => rec.updates.find((u) => u.changed.has('wl/shop/a'))?.changed.get('wl/shop/a'));
    assert.equal(w.type, TYPE_WORKLOAD);
    const msg = w.value as WorkloadMsg;
    assert.equal(bytesToIp(msg.addresses[0]), 'fd00::5');
    assert.equal(msg.serviceAccount, 'shopper');
    assert.equal(msg.canonicalName, 'a');
    assert.equal(msg.canonicalRevision, 'v2');
    assert.equal(msg.trustDomain, 'cluster.local');
  } finally {
    for (const c of clients) c.stop();
    await cp.stop();
  }
});
