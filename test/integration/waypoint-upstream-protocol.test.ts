import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { appProtocolOf } from '../../controlplane/translate/translate';
import net from 'node:net';
import { buildSnapshot, h1Request, h2Request, hostOf, ISTIO, obj, rawExchange, serviceConfig, startBackend, startHarness, startTcpBackend, type ServiceDef } from '../helpers/waypoint-harness';

test('appProtocol and port names map to the upstream protocol as Istio reads them', () => {
  assert.equal(appProtocolOf({ name: 'http' }), 'http');
  assert.equal(appProtocolOf({ name: 'http-web' }), 'http');
  assert.equal(appProtocolOf({ name: 'grpc-api' }), 'http2');
  assert.equal(appProtocolOf({ name: 'http2' }), 'http2');
  assert.equal(appProtocolOf({ name: 'web', appProtocol: 'kubernetes.io/h2c' }), 'http2');
  assert.equal(appProtocolOf({ name: 'http', appProtocol: 'grpc' }), 'http2', 'appProtocol wins over the name');
  assert.equal(appProtocolOf({ name: 'tcp-db' }), 'tcp');
  assert.equal(appProtocolOf({ name: 'db', appProtocol: 'mysql' }), 'tcp');
  assert.equal(appProtocolOf({ name: 'http', appProtocol: 'TLS' }), 'tcp');
  assert.equal(appProtocolOf({ name: 'metrics' }), '');
  assert.equal(appProtocolOf({}), '');
});

test('the upstream speaks the backend port\'s declared protocol, else the caller\'s', async () => {
  const h = await startHarness();
  const seen: string[] = [];
  const backend = await startBackend('app-1', (req, res) => {
    seen.push(req.httpVersion);
    res.setHeader('x-upstream-version', req.httpVersion);
    res.end('ok');
  });
  try {
    const svc: ServiceDef = { name: 'app', vip: '10.96.9.1', ports: [80, 81, 82], appProtocols: { 80: 'http', 81: 'http2' } };
    const ports = [80, 81, 82].map((p) => ({ servicePort: p, targetPort: 80 }));
    const mesh = buildSnapshot([svc], [{ name: 'app-1', ip: '10.0.9.1', services: { [hostOf('app')]: ports } }]);
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/app', serviceConfig(svc)]])), []);
    h.connector.ports.set('app-1', backend.port);
    const via = async (port: number, caller: 'h1' | 'h2'): Promise<string> => {
      const t = await h.tunnel({ authority: `10.96.9.1:${port}` });
      if (caller === 'h1') {
        const r = await h1Request(t, { path: '/' });
        assert.equal(r.status, 200);
        return String(r.headers['x-upstream-version']);
      }
      const s = http2.connect(`http://127.0.0.1:${t}`);
      try {
        const r = await h2Request(s, { ':path': '/', ':authority': 'app' });
        assert.equal(r.status, 200);
        return String(r.headers['x-upstream-version']);
      } finally {
        s.close();
      }
    };
    assert.equal(await via(80, 'h2'), '1.1', 'an HTTP/2 caller reaches an "http" port over HTTP/1.1');
    assert.equal(await via(80, 'h1'), '1.1');
    assert.equal(await via(81, 'h1'), '2.0', 'an HTTP/1.1 caller reaches an "http2" port over HTTP/2');
    assert.equal(await via(81, 'h2'), '2.0');
    assert.equal(await via(82, 'h1'), '1.1', 'an undeclared port follows the caller');
    assert.equal(await via(82, 'h2'), '2.0');
  } finally {
    await h.close();
    await backend.close();
  }
});

test('a port declared TCP is proxied as bytes: HTTP is not parsed, and a server-first protocol is not kept waiting', async () => {
  const h = await startHarness();
  // An endpoint that greets first (as MySQL does) and echoes whatever it gets after that.
  const backend = await startTcpBackend((s) => {
    s.write('GREETING\n');
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
  });
  try {
    const svc: ServiceDef = { name: 'db', vip: '10.96.9.2', ports: [3306], appProtocols: { 3306: 'tcp' } };
    const mesh = buildSnapshot([svc], [{ name: 'db-1', ip: '10.0.9.2', services: { [hostOf('db')]: [{ servicePort: 3306, targetPort: 3306 }] } }]);
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/db', serviceConfig(svc)]])), []);
    h.connector.ports.set('db-1', backend.port);
    const t = await h.tunnel({ authority: '10.96.9.2:3306' });

    // The greeting arrives without the client sending anything, long before the detection timeout (5 s).
    const started = Date.now();
    const greeting = await new Promise<string>((resolve, reject) => {
      const s = net.connect(t, '127.0.0.1');
      s.once('data', (d: Buffer) => {
        resolve(d.toString());
        s.destroy();
      });
      s.once('error', reject);
    });
    assert.equal(greeting, 'GREETING\n');
    assert.ok(Date.now() - started < 1000, `greeting after ${Date.now() - started} ms`);

    // An HTTP request on that port reaches the endpoint byte for byte: no x-forwarded-for, no rewriting.
    const request = 'GET /x HTTP/1.1\r\nHost: db\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n';
    const r = await rawExchange(t, request, 1000);
    assert.equal(r.text, `GREETING\n${request}`);
    await new Promise((r) => setTimeout(r, 100));
    const recs = h.telemetry.records.filter((x) => x.info.destinationService.name === 'db');
    assert.ok(recs.length >= 2);
    assert.ok(recs.every((x) => x.info.protocol === 'tcp'), 'counted as TCP connections, not requests');
  } finally {
    await h.close();
    await backend.close();
  }
});

/** A Service `db` whose port is declared TCP, an echoing endpoint, and a caller's connection to it through the waypoint. */
async function echoOverOpaqueTcp(trafficPolicy: object | undefined, limits?: Parameters<typeof startHarness>[0]): Promise<{ socket: net.Socket; close(): Promise<void> }> {
  const h = await startHarness(limits);
  const backend = await startTcpBackend((s) => s.on('data', (d: Buffer) => s.write(d)));
  const close = async () => {
    await h.close();
    await backend.close();
  };
  try {
    const svc: ServiceDef = { name: 'db', vip: '10.96.9.3', ports: [5432], appProtocols: { 5432: 'tcp' } };
    const mesh = buildSnapshot([svc], [{ name: 'db-2', ip: '10.0.9.3', services: { [hostOf('db')]: [{ servicePort: 5432, targetPort: 5432 }] } }]);
    const parts = trafficPolicy ? { destinationRules: [obj(ISTIO, 'DestinationRule', 'db', { host: 'db', trafficPolicy })] } : {};
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/db', serviceConfig(svc, parts)]])), []);
    h.connector.ports.set('db-2', backend.port);
    const t = await h.tunnel({ authority: '10.96.9.3:5432' });
    const socket = net.connect(t, '127.0.0.1');
    socket.on('error', () => {});
    return { socket, close };
  } catch (e) {
    await close();
    throw e;
  }
}

test('an opaque TCP connection with no traffic either way is closed after connectionPool.tcp.idleTimeout', async () => {
  const { socket: s, close } = await echoOverOpaqueTcp({ connectionPool: { tcp: { idleTimeout: '300ms' } } });
  try {
    const echoed: Buffer[] = [];
    s.on('data', (d: Buffer) => echoed.push(d));
    const closed = new Promise<number>((r) => s.on('close', () => r(Date.now())));
    // Traffic keeps it open past one idle period...
    let lastWrite = 0;
    for (let i = 0; i < 4; i++) {
      s.write('ping');
      lastWrite = Date.now();
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.equal(s.destroyed, false, 'still open while bytes flow');
    assert.equal(Buffer.concat(echoed).toString(), 'pingpingpingping');
    // ...then silence closes it, one idle period after the last byte (the echo came after the write,
    // so the period cannot end earlier than 300 ms after it; 10 ms allow for clock granularity).
    const at = await closed;
    assert.ok(at - lastWrite >= 290 && at - lastWrite < 2000, `closed ${at - lastWrite} ms after the last write`);
  } finally {
    await close();
  }
});

test('connectionPool.tcp.maxConnectionDuration closes an opaque TCP connection at its age even while bytes flow', async () => {
  const { socket: s, close } = await echoOverOpaqueTcp({ connectionPool: { tcp: { maxConnectionDuration: '500ms' } } });
  try {
    const opened = Date.now();
    let closedAt = 0;
    s.on('close', () => (closedAt = Date.now()));
    let echoed = 0;
    s.on('data', (d: Buffer) => (echoed += d.length));
    while (closedAt === 0 && Date.now() - opened < 3000) {
      if (!s.destroyed) s.write('ping');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(echoed > 0, 'bytes flowed');
    assert.ok(closedAt - opened >= 450 && closedAt - opened < 2000, `closed ${closedAt - opened} ms after opening`);
  } finally {
    await close();
  }
});

test('without a DestinationRule, the waypoint\'s tcpIdleTimeoutMs closes an idle opaque TCP connection; the HTTP idle timeout does not', async () => {
  const { socket: s, close } = await echoOverOpaqueTcp(undefined, { limits: { tcpIdleTimeoutMs: 600, idleTimeoutMs: 100 } });
  try {
    const opened = Date.now();
    const closed = new Promise<number>((r) => s.on('close', () => r(Date.now())));
    const echo = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString())));
    s.write('a');
    assert.equal(await echo, 'a');
    const at = await closed;
    assert.ok(at - opened >= 500 && at - opened < 2500, `closed ${at - opened} ms after opening`);
  } finally {
    await close();
  }
});
