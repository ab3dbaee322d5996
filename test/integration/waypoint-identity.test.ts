import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { AmbitClient } from '../../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { TYPE_WAYPOINT_SERVICE } from '../../lib/api/workload-types';
import { XdsClient, DeltaUpdate } from '../../lib/xds/client';
import { credentialDue, issueWorkloadCredential } from '../../cni/agent/workload-identity';
import { joinNode, ns, service, startControlPlane, tmpDir, waitFor } from '../helpers/controlplane';

const gateway = (namespace: string, name: string) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});

function programmed(g: { status?: unknown }): { status: string; reason: string; message: string } | undefined {
  return (g.status as { conditions?: Array<{ type: string; status: string; reason: string; message: string }> } | undefined)?.conditions?.find((c) => c.type === 'Programmed');
}

test('a waypoint gets its identity through the node agent, subscribes with it, and its Gateway turns Programmed (and back when it refuses or leaves)', async () => {
  const cp = await startControlPlane();
  const dir = tmpDir('ambit-wpid-');
  const clients: Array<{ stop?: () => void; close?: () => void }> = [];
  try {
    await cp.admin.apply([ns('shop', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' }), gateway('shop', 'waypoint'), service('cart', 'shop', { app: 'cart' })]);
    let g = await cp.admin.get('Gateway', 'shop', 'waypoint');
    assert.equal(programmed(g)?.status, 'False');
    assert.equal(programmed(g)?.reason, 'NoInstances');

    const nodeA = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    // The agent registers the waypoint pod as an HBONE workload, then asks the CA for its identity.
    await nodeA.client.apply([{
      apiVersion: 'ambit.io/v1alpha1', kind: 'Workload',
      metadata: { name: 'waypoint-waypoint', namespace: 'shop', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
      spec: { node: 'node-a', serviceAccount: 'waypoint', addresses: ['10.244.1.9'], protocol: 'HBONE' },
    }]);
    const nodeCfg = { server: cp.address, serverName: 'ambit-controlplane', certificateAuthority: nodeA.rootPem, clientCertificate: nodeA.certPem, clientKey: nodeA.keyPem };
    const file = path.join(dir, 'pods', 'uid-1', 'workload.yaml');
    assert.equal(credentialDue(file), true, 'a missing credential is due');
    await issueWorkloadCredential(nodeA.client, nodeCfg, file, { namespace: 'shop', serviceAccount: 'waypoint', trustDomain: 'cluster.local' });
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    assert.equal(credentialDue(file), false, 'a fresh credential is not due');
    const cfg = loadClientConfig(file);
    assert.match(new X509Certificate(cfg.clientCertificate).subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/waypoint/);

    // The node cannot get an identity for a service account it runs nothing of.
    await assert.rejects(
      issueWorkloadCredential(nodeA.client, nodeCfg, path.join(dir, 'x.yaml'), { namespace: 'shop', serviceAccount: 'other-waypoint', trustDomain: 'cluster.local' }),
      /no workload with service account other-waypoint/,
    );

    const wpClient = new AmbitClient(dialFromConfig(cfg));
    clients.push(wpClient);
    // It may subscribe as itself only.
    const errs: Error[] = [];
    const wrong = new XdsClient(wpClient, { subscriber: { type: 'waypoint', name: 'shop/another' }, onUpdate: () => undefined, onError: (e) => errs.push(e) });
    clients.push(wrong);
    wrong.start();
    await waitFor('refusal of a foreign waypoint name', () => errs.some((e) => /may not subscribe as waypoint shop\/another/.test(e.message)));
    wrong.stop();

    let refuse = false;
    const updates: DeltaUpdate[] = [];
    const x = new XdsClient(wpClient, {
      subscriber: { type: 'waypoint', name: 'shop/waypoint' },
      onUpdate: (u) => {
        updates.push(u);
        if (refuse) throw new Error('l7/shop/cart: refused for the test');
      },
    });
    clients.push(x);
    x.start();
    await waitFor('the waypoint config', () => updates.some((u) => [...u.changed.values()].some((r) => r.type === TYPE_WAYPOINT_SERVICE)));
    g = await waitFor('Programmed', async () => {
      const r = await cp.admin.get('Gateway', 'shop', 'waypoint');
      return programmed(r)?.status === 'True' ? r : undefined;
    });
    assert.match(programmed(g)!.message, /1 of 1 instance/);
    assert.equal((g.status as { instances: number }).instances, 1);
    // Listing decorates the same way.
    const listed = await cp.admin.list('Gateway', 'shop');
    assert.equal(programmed(listed[0])?.status, 'True');

    // A refused update shows in the status.
    refuse = true;
    await cp.admin.apply([service('cart', 'shop', { app: 'cart' }, 8080, 9090)]);
    await waitFor('Programmed=False after a NACK', async () => {
      const r = await cp.admin.get('Gateway', 'shop', 'waypoint');
      return programmed(r)?.status === 'False' && programmed(r)?.reason === 'Invalid' && /refused for the test/.test(programmed(r)!.message);
    });

    // The instance leaves: no instance.
    x.stop();
    await waitFor('NoInstances after the waypoint left', async () => programmed(await cp.admin.get('Gateway', 'shop', 'waypoint'))?.reason === 'NoInstances');
  } finally {
    for (const c of clients) {
      c.stop?.();
      c.close?.();
    }
    await cp.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
