/**
 * The waypoint's real upstream connector: HBONE (mutual TLS 1.3, HTTP/2 CONNECT) to a node,
 * with certificates from the control plane's CA, and DestinationRule tcpKeepalive reaching the
 * TCP connection the waypoint opens, read back from the kernel.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type http2 from 'node:http2';
import pino from 'pino';
import { CertificateAuthority } from '../../controlplane/ca/ca';
import { createCsr, generateKeyPair, privateKeyToPem } from '../../lib/identity/pki';
import { createHboneServer, type HboneServer } from '../../lib/hbone/server';
import { getKeepalive, type KeepaliveSettings } from '../../lib/native';
import { HboneConnector } from '../../waypoint/upstream/hbone-connector';
import { WaypointEngine } from '../../waypoint/engine';
import { buildSnapshot, FakeTelemetry, h1Request, hostOf, identityOf, ISTIO, obj, serviceConfig, startBackend, type Backend, type ServiceDef } from '../helpers/waypoint-harness';

const TD = 'cluster.local';
let dir: string;
let hbone: HboneServer;
let hbonePort: number;
let backend: Backend;
let waypointIdentity: { id: string; context: tls.SecureContext };
const tunnels: Array<{ peer: string | null; authority: string }> = [];

async function svid(ca: CertificateAuthority, id: string): Promise<{ cert: string; key: string }> {
  const keys = await generateKeyPair();
  const issued = await ca.signCsr(await createCsr(keys, id), id, 3600_000);
  return { cert: issued.certChainPem, key: await privateKeyToPem(keys.privateKey) };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-hbone-connector-'));
  const ca = await CertificateAuthority.load({ dataDir: dir, trustDomain: TD });
  // The node's ztunnel answers for the endpoint with the endpoint's identity.
  const node = await svid(ca, identityOf('ratings-a'));
  const wp = await svid(ca, identityOf('waypoint'));
  waypointIdentity = { id: identityOf('waypoint'), context: tls.createSecureContext({ cert: wp.cert, key: wp.key, ca: ca.rootPem, minVersion: 'TLSv1.3' }) };
  backend = await startBackend('ratings-a', (req, res) => {
    req.resume();
    res.end('ok');
  });
  hbone = createHboneServer({
    certChainPem: node.cert,
    keyPem: node.key,
    rootPem: ca.rootPem,
    onTunnel: (ctx, stream: http2.ServerHttp2Stream) => {
      tunnels.push({ peer: ctx.peerIdentity, authority: ctx.authority });
      const up = net.connect(backend.port, '127.0.0.1', () => {
        stream.respond({ ':status': 200 });
        stream.pipe(up);
        up.pipe(stream);
      });
      up.on('error', () => stream.destroy());
      stream.on('close', () => up.destroy());
    },
  });
  await new Promise<void>((r) => hbone.listen(0, '127.0.0.1', () => r()));
  hbonePort = (hbone.address() as net.AddressInfo).port;
});

after(async () => {
  hbone.drain();
  await backend.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Keepalive of this process's established TCP socket to 127.0.0.1:port, found through its inode. */
function keepaliveOfSocketTo(port: number): KeepaliveSettings[] {
  const out = execFileSync('ss', ['-tnHe', 'state', 'established', 'dst', `127.0.0.1:${port}`], { encoding: 'utf8' });
  const inodes = new Set([...out.matchAll(/ino:(\d+)/g)].map((m) => m[1]));
  const found: KeepaliveSettings[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let link: string;
    try {
      link = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1])) found.push(getKeepalive(Number(fd)));
  }
  return found;
}

async function throughWaypoint(trafficPolicy: object | undefined): Promise<KeepaliveSettings[]> {
  const connector = new HboneConnector(() => waypointIdentity, hbonePort);
  const engine = new WaypointEngine({ connector, telemetry: new FakeTelemetry(), log: pino({ level: 'silent' }), trustDomain: TD });
  const svc: ServiceDef = { name: 'ratings', vip: '10.96.8.1', ports: [8080] };
  const mesh = buildSnapshot([svc], [{ name: 'ratings-a', ip: '127.0.0.1', services: { [hostOf('ratings')]: [{ servicePort: 8080, targetPort: 8080 }] } }]);
  const parts = trafficPolicy ? { destinationRules: [obj(ISTIO, 'DestinationRule', 'ratings', { host: 'ratings', trafficPolicy })] } : {};
  assert.deepEqual(engine.update(mesh, new Map([['l7/shop/ratings', serviceConfig(svc, parts)]])), []);
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    engine.handleTunnel(sock, { authority: '10.96.8.1:8080', peerIdentity: identityOf('client'), sourceAddress: '10.1.0.1' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const r = await h1Request((server.address() as net.AddressInfo).port);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
    return keepaliveOfSocketTo(hbonePort);
  } finally {
    engine.close();
    connector.close();
    server.close();
  }
}

test('the connector opens an HBONE tunnel with the waypoint\'s identity to the endpoint\'s node', async () => {
  tunnels.length = 0;
  await throughWaypoint(undefined);
  assert.deepEqual(tunnels, [{ peer: identityOf('waypoint'), authority: '127.0.0.1:8080' }]);
});

test('DestinationRule tcpKeepalive is set on the TCP connection the waypoint opens: time, interval and probes', async () => {
  const [k] = await throughWaypoint({ connectionPool: { tcp: { tcpKeepalive: { time: '45s', interval: '7s', probes: 4 } } } });
  assert.deepEqual(k, { enabled: true, idle: 45, interval: 7, probes: 4 });
});

test('tcpKeepalive: {} turns keepalive on with the kernel\'s timings; without it the connection has none', async () => {
  const [on] = await throughWaypoint({ connectionPool: { tcp: { tcpKeepalive: {} } } });
  assert.equal(on?.enabled, true);
  const [off] = await throughWaypoint(undefined);
  assert.equal(off?.enabled, false);
});

test('a connect to an endpoint outside the mesh gets the keepalive too', async () => {
  const connector = new HboneConnector(() => waypointIdentity, hbonePort);
  try {
    const s = (await connector.connect(
      { workload: { identity: identityOf('legacy'), hbone: false }, address: '127.0.0.1', port: backend.port },
      { timeoutMs: 2000, keepalive: { idleSeconds: 20, probes: 2 } },
    )) as net.Socket;
    const k = getKeepalive(s);
    assert.equal(k.enabled, true);
    assert.equal(k.idle, 20);
    assert.equal(k.probes, 2);
    s.destroy();
  } finally {
    connector.close();
  }
});
