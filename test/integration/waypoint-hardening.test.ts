/**
 * Hostile and broken peers against the waypoint engine: what a caller or an endpoint can do to it
 * (resets half-way, unsolicited upgrades, ambiguous Host values, config churn) must neither hang a
 * request nor make a broken exchange look like a good one.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import {
  buildSnapshot, h1Request, h2Request, hostOf, ISTIO, obj, rawExchange, SECURITY, serviceConfig, sleep, startBackend, startHarness, startTcpBackend,
  type Backend, type BackendRequest, type BackendResponse, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';
import { createOutlierDetector } from '../../waypoint/upstream/outlier-detection';

const web: ServiceDef = { name: 'web', vip: '10.96.0.40', ports: [8080] };
const raw: ServiceDef = { name: 'raw', vip: '10.96.0.41', ports: [8080] };
const ports = [{ servicePort: 8080, targetPort: 8080 }];
const workloads = [
  { name: 'web-a', ip: '10.0.4.1', services: { [hostOf('web')]: ports } },
  { name: 'raw-a', ip: '10.0.4.2', services: { [hostOf('raw')]: ports } },
];
const mesh = buildSnapshot([web, raw], workloads);

let behaviour: (req: BackendRequest, res: BackendResponse) => void = (req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
};
/** What the backend saw of each request body: 'end' (complete) or 'aborted'. */
const bodyOutcomes: string[] = [];

let h: Harness;
let backend: Backend;
let rawUpstream: { port: number; close(): Promise<void> };
let webPort: number;
let rawPort: number;

function apply(parts: Parameters<typeof serviceConfig>[1] = {}) {
  const errs = h.engine.update(
    mesh,
    new Map([
      ['l7/shop/web', serviceConfig(web, parts)],
      ['l7/shop/raw', serviceConfig(raw)],
    ]),
  );
  assert.deepEqual(errs, []);
}

before(async () => {
  h = await startHarness();
  backend = await startBackend('web-a', (req, res) => {
    req.on('error', () => {});
    req.on('aborted', () => bodyOutcomes.push('aborted'));
    req.on('end', () => bodyOutcomes.push('end'));
    behaviour(req, res);
  });
  // An endpoint that answers every request with a 101 nobody asked for.
  rawUpstream = await startTcpBackend((s) => s.once('data', () => s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n')));
  h.connector.ports.set('web-a', backend.port);
  h.connector.ports.set('raw-a', rawUpstream.port);
  webPort = await h.tunnel({ authority: '10.96.0.40:8080' });
  rawPort = await h.tunnel({ authority: '10.96.0.41:8080' });
  apply();
});

after(async () => {
  await h.close();
  await backend.close();
  await rawUpstream.close();
});

test('an HTTP/2 endpoint that resets mid-response reaches the HTTP/2 caller as a reset, not as a short response', async () => {
  apply();
  behaviour = (req, res) => {
    req.resume();
    res.writeHead(200);
    (res as { write(c: string): boolean }).write('partial');
    // destroy(err) sends RST_STREAM alone (close() would end the stream first).
    setTimeout(() => (res as http2.Http2ServerResponse).stream.destroy(new Error('endpoint crashed')), 50);
  };
  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  session.on('error', () => {});
  try {
    const outcome = await new Promise<{ ended: boolean; rstCode: number | undefined; body: string }>((resolve) => {
      const req = session.request({ ':path': '/', ':authority': 'web' });
      let body = '';
      let ended = false;
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => (ended = true));
      req.on('error', () => {});
      req.on('close', () => resolve({ ended, rstCode: req.rstCode, body }));
    });
    assert.equal(outcome.body, 'partial');
    assert.equal(outcome.ended, false, 'a truncated response must not end cleanly');
    assert.notEqual(outcome.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  } finally {
    session.destroy();
    behaviour = (req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    };
  }
});

test('an HTTP/2 caller that cancels mid-upload makes the endpoint see an aborted body, never a complete one', async () => {
  apply();
  bodyOutcomes.length = 0;
  const hitsBefore = backend.hits;
  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  session.on('error', () => {});
  try {
    const req = session.request({ ':path': '/upload', ':method': 'POST', ':authority': 'web' }, { endStream: false });
    req.on('error', () => {});
    req.write('first part of the upload');
    const deadline = Date.now() + 5000;
    while (backend.hits === hitsBefore && Date.now() < deadline) await sleep(10);
    await sleep(50);
    // RST_STREAM alone: node's close() would send END_STREAM first, i.e. finish the upload.
    req.destroy(new Error('caller gave up'));
    while (bodyOutcomes.length === 0 && Date.now() < deadline) await sleep(10);
    // node's compat request also emits 'end' after 'aborted'; what counts is which came first.
    assert.equal(bodyOutcomes[0], 'aborted');
  } finally {
    session.destroy();
  }
});

test('an endpoint answering an unsolicited 101 gets the caller a 503, and the request does not hang', async () => {
  const r = await h1Request(rawPort, { timeoutMs: 3000 });
  assert.equal(r.status, 503);
  const rec = h.telemetry.records.at(-1)!;
  assert.equal(rec.code, 503);
  assert.equal(rec.flags, 'UC');
});

test('Host values that are not a plain host[:port], and repeated or conflicting hosts, are refused with 400', async () => {
  apply({
    authorizationPolicies: [
      obj(SECURITY, 'AuthorizationPolicy', 'deny-evil', { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], action: 'DENY', rules: [{ to: [{ operation: { hosts: ['evil', 'evil:*'] } }] }] }),
    ],
  });
  const hitsBefore = backend.hits;
  for (const host of ['web@evil', 'evil\tx', 'web/admin', 'web evil', 'web:80@evil']) {
    const r = await rawExchange(webPort, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 2000);
    assert.match(r.text, /^HTTP\/1\.1 400 /, `Host: ${JSON.stringify(host)}`);
  }
  // node keeps the first Host and drops the second; RFC 9112 §3.2 requires a 400 instead.
  const dup = await rawExchange(webPort, 'GET / HTTP/1.1\r\nHost: web\r\nHost: evil\r\nConnection: close\r\n\r\n', 2000);
  assert.match(dup.text, /^HTTP\/1\.1 400 /);
  assert.equal(backend.hits, hitsBefore, 'none of them reached the endpoint');

  // What stays fine: names, IPs, ports, bracketed IPv6, an empty Host, and the policy still applies.
  for (const host of ['web', 'web.shop.svc.cluster.local:8080', '10.96.0.40:8080', '[fd00::1]:8080', 'WEB.', '']) {
    const r = await rawExchange(webPort, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 2000);
    assert.match(r.text, /^HTTP\/1\.1 200 /, `Host: ${JSON.stringify(host)}`);
  }
  assert.match((await rawExchange(webPort, 'GET / HTTP/1.1\r\nHost: evil:80\r\nConnection: close\r\n\r\n', 2000)).text, /^HTTP\/1\.1 403 /);

  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  session.on('error', () => {});
  try {
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'web', host: 'evil' })).status, 400);
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'web', host: 'WEB' })).status, 200);
    assert.equal((await h2Request(session, { ':path': '/', ':authority': 'web' })).status, 200);
  } finally {
    session.destroy();
  }
});

test('an HTTP/1.1 CONNECT inside a tunnel gets 405 and a closed connection, first or after a keep-alive request', async () => {
  apply();
  const hitsBefore = backend.hits;
  const first = await rawExchange(webPort, 'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\nraw tunnel bytes', 2000);
  assert.match(first.text, /^HTTP\/1\.1 405 /);
  assert.match(first.text, /connection: close/i);
  assert.ok(first.closed, 'the connection is closed after the answer');
  assert.equal(h.telemetry.records.at(-1)!.code, 405);
  assert.equal(h.telemetry.records.at(-1)!.flags, 'DPE');

  const second = await rawExchange(webPort, 'GET / HTTP/1.1\r\nHost: web\r\n\r\nCONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n', 2000);
  assert.match(second.text, /^HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 405 /);
  assert.ok(second.closed);
  assert.equal(backend.hits, hitsBefore + 1, 'only the GET reached the endpoint');
});

test('a kept-alive upstream connection that dies under a reused request: GET is sent again once, POST is not repeated', async () => {
  // Every connection answers its first request and keeps alive; a second request on it is read
  // (the application saw it) and the connection dies without an answer.
  const arrivals: string[] = [];
  const flaky = await startTcpBackend((s) => {
    let served = 0;
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.slice(end + 4 + len);
        arrivals.push(head.split(' ')[0]);
        if (served++ === 0) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
        else s.destroy();
      }
    });
  });
  h.connector.ports.set('raw-a', flaky.port);
  try {
    const first = await h1Request(rawPort, { timeoutMs: 3000 });
    assert.equal(first.status, 200, 'the first request opens a connection, kept alive');
    const get = await h1Request(rawPort, { timeoutMs: 3000 });
    assert.equal(get.status, 200, 'the GET that met the dying connection was answered');
    assert.deepEqual(arrivals, ['GET', 'GET', 'GET'], 'it went again, on a new connection');
    // That new connection is kept alive in turn; a POST reusing it meets the same death.
    arrivals.length = 0;
    const post = await h1Request(rawPort, { method: 'POST', body: 'order=1', timeoutMs: 3000 });
    assert.equal(post.status, 503);
    assert.equal(h.telemetry.records.at(-1)!.flags, 'UC');
    assert.deepEqual(arrivals, ['POST'], 'the POST the application saw was not repeated');
  } finally {
    h.connector.ports.set('raw-a', rawUpstream.port);
    await flaky.close();
  }
});

test('a caller that leaves during an injected delay does not leave the delay timer behind', async () => {
  const vs = obj(ISTIO, 'VirtualService', 'web', { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }], fault: { delay: { fixedDelay: '60s', percentage: { value: 100 } } } }] });
  apply({ virtualServices: [vs] });
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  const s = net.connect(webPort, '127.0.0.1');
  s.on('error', () => {});
  s.write('GET / HTTP/1.1\r\nHost: web\r\n\r\n');
  const deadline = Date.now() + 5000;
  while (timers() === before && Date.now() < deadline) await sleep(10);
  assert.equal(timers(), before + 1, 'the delay is running');
  s.destroy();
  while (timers() > before && Date.now() < deadline) await sleep(10);
  assert.equal(timers(), before, 'the delay timer went with the request');
  apply();
});

test('clusters of services that left the mesh are forgotten', async () => {
  const x = await startHarness();
  try {
    x.connector.ports.set('web-a', backend.port);
    const port = await x.tunnel({ authority: '10.96.0.40:8080' });
    const dr = obj(ISTIO, 'DestinationRule', 'web', { host: 'web', trafficPolicy: { outlierDetection: { consecutive5xxErrors: 3, interval: '1s' } } });
    assert.deepEqual(x.engine.update(mesh, new Map([['l7/shop/web', serviceConfig(web, { destinationRules: [dr] })]])), []);
    assert.equal((await h1Request(port)).status, 200);
    const name = `outbound|8080||${hostOf('web')}`;
    assert.ok(x.engine.clusterStats().some((c) => c.name === name));
    // The service is deleted: its workloads and its config go with it.
    assert.deepEqual(x.engine.update(buildSnapshot([raw], [workloads[1]]), new Map()), []);
    assert.deepEqual(x.engine.clusterStats().map((c) => c.name), []);
  } finally {
    await x.close();
  }
});

test('outlier detection ignores results for endpoints that already left the cluster', () => {
  const od = createOutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 100 }, ['a', 'b']);
  od.setEndpoints(['b']);
  // A request that was in flight to "a" when it left reports its failure afterwards.
  od.onResult('a', { status: 503 });
  assert.deepEqual(od.ejected(), []);
  od.onResult('b', { status: 503 });
  assert.deepEqual(od.ejected(), ['b']);
});

test('an HTTP/2 request whose body is only an empty END_STREAM DATA frame reaches the endpoint complete, first try and retry', async () => {
  let n = 0;
  behaviour = (req, res) => {
    const first = n++ === 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.statusCode = retrying && first ? 503 : 200;
      res.end(`got ${Buffer.concat(chunks).length} bytes`);
    });
  };
  let retrying = false;
  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  session.on('error', () => {});
  const post = () =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      // Headers without END_STREAM, then end(): node sends an empty DATA frame carrying END_STREAM.
      const req = session.request({ ':path': '/', ':method': 'POST', ':authority': 'web' }, { endStream: false });
      let status = 0;
      let body = '';
      req.on('response', (hh) => (status = Number(hh[':status'])));
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => resolve({ status, body }));
      req.on('error', reject);
      req.setTimeout(3000, () => req.destroy(new Error('no response: the endpoint never saw the end of the body')));
      req.end();
    });
  try {
    apply();
    assert.deepEqual(await post(), { status: 200, body: 'got 0 bytes' });
    retrying = true;
    n = 0;
    apply({ virtualServices: [obj(ISTIO, 'VirtualService', 'web', { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }], retries: { attempts: 2, retryOn: '503' } }] })] });
    assert.deepEqual(await post(), { status: 200, body: 'got 0 bytes' });
    assert.equal(n, 2);
  } finally {
    session.destroy();
    behaviour = (req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    };
    apply();
  }
});

test('a DestinationRule the clusters cannot build is refused by name, and the last good config keeps serving', async () => {
  apply();
  const bad = { namespace: 'shop', name: 'web', spec: { host: 'web', trafficPolicy: { outlierDetection: { consecutive5xxErrors: 3, interval: 'soon' } } } };
  let errs: ReturnType<typeof h.engine.update> = [];
  assert.doesNotThrow(() => {
    errs = h.engine.update(mesh, new Map([['l7/shop/web', serviceConfig(web, { destinationRules: [bad] })], ['l7/shop/raw', serviceConfig(raw)]]));
  });
  assert.equal(errs.length, 1);
  assert.equal(errs[0].resource, 'DestinationRule/shop/web');
  assert.match(errs[0].message, /soon/);
  assert.equal((await h1Request(webPort)).status, 200);
  // Pushed again, it is refused again: nothing of it was recorded as applied.
  assert.equal(h.engine.update(mesh, new Map([['l7/shop/web', serviceConfig(web, { destinationRules: [bad] })], ['l7/shop/raw', serviceConfig(raw)]])).length, 1);
  apply();
});

test('an endpoint that never answers an Upgrade gets the caller a 504 when the route timeout runs out', async () => {
  const x = await startHarness();
  // Takes the request and says nothing.
  const silent = await startTcpBackend((s) => s.on('data', () => {}));
  try {
    x.connector.ports.set('web-a', silent.port);
    const vs = obj(ISTIO, 'VirtualService', 'web', { hosts: ['web'], http: [{ route: [{ destination: { host: 'web' } }], timeout: '0.3s' }] });
    assert.deepEqual(x.engine.update(mesh, new Map([['l7/shop/web', serviceConfig(web, { virtualServices: [vs] })]])), []);
    const port = await x.tunnel({ authority: '10.96.0.40:8080' });
    const started = Date.now();
    const r = await rawExchange(port, 'GET /chat HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n', 5000);
    assert.match(r.text, /^HTTP\/1\.1 504 /);
    assert.ok(Date.now() - started < 2000, `answered after ${Date.now() - started} ms`);
    const rec = x.telemetry.records.at(-1);
    assert.equal(rec?.code, 504);
    assert.equal(rec?.flags, 'UT');
  } finally {
    await x.close();
    await silent.close();
  }
});
