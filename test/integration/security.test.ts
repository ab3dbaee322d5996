import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { AmbitClient } from '../../lib/api/client';
import { dialFor } from '../../lib/api/client-config';
import { ApiError } from '../../lib/api/errors';
import { createCsr, generateKeyPair, privateKeyToPem, x509 } from '../../lib/identity/pki';
import { CertificateAuthority } from '../../controlplane/ca/ca';
import { joinNode, ns, startControlPlane, tmpDir, workload, metric } from '../helpers/controlplane';

async function refused(p: Promise<unknown>, code: ApiError['code'], msg?: RegExp): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApiError, `expected an ApiError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    if (msg) assert.match(err.message, msg);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}


function uris(pem: string): string[] {
  const c = new x509.X509Certificate(pem);
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === 'url').map((n) => n.value);
}

test('API security: no credential, a foreign CA, a workload certificate: all refused', async () => {
  const cp = await startControlPlane();
  const other = tmpDir('foreign-ca');
  try {
    // No client certificate at all.
    const anon = new AmbitClient(dialFor(cp.address, cp.rootPem, 'ambit-controlplane'));
    await refused(anon.list('Namespace'), 'Unauthenticated');
    await refused(anon.apply([ns('evil')]), 'Unauthenticated');
    await refused(anon.createBootstrapToken('n1'), 'Unauthenticated');
    anon.close();

    // A certificate with the admin identity, signed by a CA that is not the mesh's.
    const foreign = await CertificateAuthority.load({ dataDir: other, trustDomain: 'cluster.local' });
    const keys = await generateKeyPair();
    const forged = await foreign.issue(await x509.PublicKey.create(keys.publicKey), { uri: 'spiffe://cluster.local/ambit/admin', ttlMs: 3600_000 });
    const impostor = new AmbitClient(dialFor(cp.address, cp.rootPem, 'ambit-controlplane', { certPem: forged.certChainPem, keyPem: await privateKeyToPem(keys.privateKey) }));
    await refused(impostor.apply([ns('evil')]), 'Unauthenticated');
    await refused(impostor.list('Namespace'), 'Unauthenticated');
    impostor.close();
    assert.ok((await metric(cp.cp.monitoringPort, 'ambit_api_auth_failures_total')) >= 5);

    // A real mesh certificate, but a workload's: it may not touch the API.
    await cp.admin.apply([ns('shop'), workload('w', 'shop', 'node-a', '10.244.1.2', {}, 'web')]);
    const node = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    const wkeys = await generateKeyPair();
    const svid = await node.client.createCertificate(await createCsr(wkeys, 'spiffe://cluster.local/ns/shop/sa/web'), 'shop', 'web');
    const wl = new AmbitClient(dialFor(cp.address, cp.rootPem, 'ambit-controlplane', { certPem: svid.certChain, keyPem: await privateKeyToPem(wkeys.privateKey) }));
    await refused(wl.apply([ns('evil')]), 'Forbidden');
    await refused(wl.list('Service'), 'Forbidden');
    await refused(wl.createCertificate(await createCsr(wkeys, 'spiffe://cluster.local/ns/shop/sa/web'), 'shop', 'web'), 'Forbidden');
    wl.close();
    assert.equal((await cp.admin.list('Namespace')).some((n) => n.metadata.name === 'evil'), false);
    node.client.close();
  } finally {
    await cp.stop();
    fs.rmSync(other, { recursive: true, force: true });
  }
});

test('bootstrap tokens: single use, secret checked, expire; the node certificate names that node', async () => {
  const cp = await startControlPlane();
  try {
    const { token } = await cp.admin.createBootstrapToken('node-a');
    assert.match(token, /^ambit-[0-9a-f]{12}\./);
    const anon = new AmbitClient(dialFor(cp.address, cp.rootPem, 'ambit-controlplane'));
    const keys = await generateKeyPair();
    const csr = await createCsr(keys, 'spiffe://cluster.local/ambit/node/node-a');
    await refused(anon.joinNode(token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')), csr), 'Unauthenticated');
    await refused(anon.joinNode('not-a-token', csr), 'Unauthenticated');
    const cert = await anon.joinNode(token, csr);
    assert.deepEqual(uris(cert.certChain), ['spiffe://cluster.local/ambit/node/node-a']);
    assert.equal(cert.node, 'node-a');
    await refused(anon.joinNode(token, csr), 'Unauthenticated', /unknown, expired or already used/);
    // A token for node-b cannot mint a certificate for another name.
    const b = await cp.admin.createBootstrapToken('node-b');
    await refused(anon.joinNode(b.token, csr), 'Invalid', /may only get spiffe:\/\/cluster.local\/ambit\/node\/node-b/);
    assert.ok(await cp.admin.get('Node', '', 'node-a'));
    await refused(cp.admin.createBootstrapToken('Not_A_Name'), 'Invalid');
    anon.close();
  } finally {
    await cp.stop();
  }
});

test('nodes: may register and remove workloads only on themselves', async () => {
  const cp = await startControlPlane();
  try {
    await cp.admin.apply([ns('shop')]);
    const a = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    const b = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-b');
    await a.client.apply([workload('pod-a', 'shop', 'node-a', '10.244.1.2')]);
    await refused(a.client.apply([workload('pod-x', 'shop', 'node-b', '10.244.2.9')]), 'Forbidden', /node node-a may register workloads only on itself, not on node-b/);
    await b.client.apply([workload('pod-b', 'shop', 'node-b', '10.244.2.2')]);
    // Taking over another node's workload by re-registering it is refused too.
    await refused(a.client.apply([workload('pod-b', 'shop', 'node-a', '10.244.2.2')]), 'Forbidden', /registered on node node-b/);
    await refused(a.client.delete([{ kind: 'Workload', namespace: 'shop', name: 'pod-b' }]), 'Forbidden');
    await refused(a.client.apply([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 's', namespace: 'shop' }, spec: { ports: [{ port: 80 }] } }]), 'Forbidden');
    await refused(a.client.apply([ns('other')]), 'Forbidden');
    // Nodes read what enrolment needs.
    assert.equal((await a.client.list('Workload', 'shop')).length, 2);
    await refused(a.client.list('AuthorizationPolicy'), 'Forbidden');
    await a.client.delete([{ kind: 'Workload', namespace: 'shop', name: 'pod-a' }]);
    assert.equal((await cp.admin.list('Workload', 'shop')).map((w) => w.metadata.name).join(), 'pod-b');
    a.client.close();
    b.client.close();
  } finally {
    await cp.stop();
  }
});

test('CA: SVIDs only for workloads on the requesting node, with exactly one URI SAN, chaining to the root', async () => {
  const cp = await startControlPlane({ certTtlMs: 3600_000 });
  try {
    await cp.admin.apply([ns('shop'), workload('web-1', 'shop', 'node-a', '10.244.1.2', {}, 'web'), workload('db-1', 'shop', 'node-b', '10.244.2.2', {}, 'db')]);
    const a = await joinNode(cp.admin, cp.address, cp.rootPem, 'node-a');
    const keys = await generateKeyPair();
    const refusedBefore = await metric(cp.cp.monitoringPort, 'ambit_ca_csr_refused_total');

    const svid = await a.client.createCertificate(await createCsr(keys, 'spiffe://cluster.local/ns/shop/sa/web'), 'shop', 'web');
    const [leafPem] = svid.certChain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    assert.deepEqual(uris(leafPem), ['spiffe://cluster.local/ns/shop/sa/web']);
    const leaf = new X509Certificate(leafPem);
    const root = new X509Certificate(svid.rootCert);
    assert.ok(leaf.verify(root.publicKey), 'the SVID is signed by the mesh root');
    assert.ok(leaf.checkIssued(root));
    assert.equal(leaf.ca, false);
    const ttl = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    assert.ok(ttl >= 3600_000 && ttl <= 3600_000 + 120_000, `TTL ${ttl} ms`);
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(svid.rootCert.trim(), cp.rootPem.trim());

    // No workload with that service account on node-a (db runs on node-b).
    await refused(a.client.createCertificate(await createCsr(keys, 'spiffe://cluster.local/ns/shop/sa/db'), 'shop', 'db'), 'Forbidden', /runs no workload with service account db/);
    await refused(a.client.createCertificate(await createCsr(keys, 'spiffe://cluster.local/ns/other/sa/web'), 'other', 'web'), 'Forbidden');
    // A CSR naming another identity than the one asked for.
    await refused(a.client.createCertificate(await createCsr(keys, 'spiffe://cluster.local/ns/shop/sa/admin'), 'shop', 'web'), 'Invalid', /may only get/);
    // Garbage.
    await refused(a.client.createCertificate('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----', 'shop', 'web'), 'Invalid');
    assert.ok((await metric(cp.cp.monitoringPort, 'ambit_ca_csr_refused_total')) >= refusedBefore + 4);

    // A removed node loses the right to identities at once.
    await cp.admin.delete([{ kind: 'Node', name: 'node-a' }]);
    await refused(a.client.createCertificate(await createCsr(keys, 'spiffe://cluster.local/ns/shop/sa/web'), 'shop', 'web'), 'Forbidden', /removed/);
    a.client.close();
  } finally {
    await cp.stop();
  }
});

test('CA: persists its root across restarts and accepts an operator-supplied intermediate', async () => {
  const dir = tmpDir('ca');
  try {
    const first = await CertificateAuthority.load({ dataDir: dir, trustDomain: 'cluster.local' });
    const again = await CertificateAuthority.load({ dataDir: dir, trustDomain: 'cluster.local' });
    assert.equal(again.rootPem, first.rootPem);
    assert.equal(fs.statSync(path.join(dir, 'ca', 'root-key.pem')).mode & 0o777, 0o600);

    // Operator PKI: an intermediate signed by the root above.
    const ikeys = await generateKeyPair();
    const inter = await x509.X509CertificateGenerator.create({
      serialNumber: '0a', subject: 'CN=Ambit intermediate', issuer: new x509.X509Certificate(first.rootPem).subject,
      notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 86400_000 * 30),
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' }, publicKey: ikeys.publicKey,
      signingKey: (await importRootKey(dir)),
      extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
    });
    fs.writeFileSync(path.join(dir, 'inter.pem'), inter.toString('pem'));
    fs.writeFileSync(path.join(dir, 'inter-key.pem'), await privateKeyToPem(ikeys.privateKey));
    const op = await CertificateAuthority.load({ dataDir: dir, trustDomain: 'cluster.local', certFile: path.join(dir, 'inter.pem'), keyFile: path.join(dir, 'inter-key.pem'), chainFile: path.join(dir, 'ca', 'root-cert.pem') });
    assert.equal(op.rootPem.trim(), first.rootPem.trim());
    const wkeys = await generateKeyPair();
    const issued = await op.signCsr(await createCsr(wkeys, 'spiffe://cluster.local/ns/a/sa/b'), 'spiffe://cluster.local/ns/a/sa/b', 3600_000);
    const chain = issued.certChainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)!;
    assert.equal(chain.length, 2, 'leaf then intermediate');
    assert.ok(new X509Certificate(chain[0]).verify(new X509Certificate(chain[1]).publicKey));
    assert.ok(new X509Certificate(chain[1]).verify(new X509Certificate(first.rootPem).publicKey));

    // Mismatched key and certificate are refused with the file named.
    await assert.rejects(
      CertificateAuthority.load({ dataDir: dir, trustDomain: 'cluster.local', certFile: path.join(dir, 'inter.pem'), keyFile: path.join(dir, 'ca', 'root-key.pem'), chainFile: path.join(dir, 'ca', 'root-cert.pem') }),
      /root-key.pem is not the key of .*inter.pem/,
    );
    // An intermediate without its chain is refused.
    await assert.rejects(CertificateAuthority.load({ dataDir: dir, trustDomain: 'cluster.local', certFile: path.join(dir, 'inter.pem'), keyFile: path.join(dir, 'inter-key.pem') }), /--ca-chain/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

async function importRootKey(dir: string): Promise<CryptoKey> {
  const { importPrivateKeyPem } = await import('../../lib/identity/pki');
  return (await importPrivateKeyPem(fs.readFileSync(path.join(dir, 'ca', 'root-key.pem'), 'utf8'))).key;
}
