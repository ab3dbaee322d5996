import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import {
  buildSnapshot, h1Request, h2Request, hostOf, ISTIO, obj, pool, serviceConfig, sleep, startBackend, startHarness,
  type Backend, type BackendRequest, type BackendResponse, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';

const svc: ServiceDef = { name: 'ratings', vip: '10.96.0.20', ports: [8080] };
const ghost: ServiceDef = { name: 'ghost', vip: '10.96.0.21', ports: [8080] };
const broken: ServiceDef = { name: 'broken', vip: '10.96.0.22', ports: [8080] };
const host = hostOf('ratings');
const ports = [{ servicePort: 8080, targetPort: 8080 }];
const mesh = buildSnapshot(
  [svc, ghost, broken],
  [
    { name: 'ratings-a', ip: '10.0.1.1', version: 'v1', services: { [host]: ports } },
    { name: 'ratings-b', ip: '10.0.1.2', version: 'v1', services: { [host]: ports } },
    // No backend is registered for it in the connector: every connect fails.
    { name: 'broken-a', ip: '10.0.1.9', services: { [hostOf('broken')]: ports } },
  ],
);

/** What each backend does, switchable per test. */
let behaviour: (name: string, req: BackendRequest, res: BackendResponse) => void = (_n, _q, res) => res.end('ok');

let h: Harness;
let a: Backend;
let b: Backend;
let port: number;
let ghostPort: number;
let brokenPort: number;

function apply(parts: Parameters<typeof serviceConfig>[1]) {
  const errs = h.engine.update(
    mesh,
    new Map([
      ['l7/shop/ratings', serviceConfig(svc, parts)],
      ['l7/shop/ghost', serviceConfig(ghost)],
      ['l7/shop/broken', serviceConfig(broken)],
    ]),
  );
  assert.deepEqual(errs, []);
}

const vs = (http: object) => obj(ISTIO, 'VirtualService', 'ratings', { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings' } }], ...http }] });
const clusterStats = () => h.engine.clusterStats().find((c) => c.name === `outbound|8080||${host}`);

before(async () => {
  h = await startHarness();
  const handler = (name: string) => (req: BackendRequest, res: BackendResponse) => {
    req.resume();
    req.on('end', () => {
      res.setHeader('x-served-by', name);
      behaviour(name, req, res);
    });
  };
  a = await startBackend('ratings-a', handler('a'));
  b = await startBackend('ratings-b', handler('b'));
  h.connector.ports.set('ratings-a', a.port);
  h.connector.ports.set('ratings-b', b.port);
  port = await h.tunnel({ authority: '10.96.0.20:8080' });
  ghostPort = await h.tunnel({ authority: '10.96.0.21:8080' });
  brokenPort = await h.tunnel({ authority: `${hostOf('broken')}:8080` });
});

after(async () => {
  await h.close();
  await a.close();
  await b.close();
});

test('no endpoint is 503 UH; a failing connect is 503 UF', async () => {
  apply({});
  const r1 = await h1Request(ghostPort);
  assert.equal(r1.status, 503);
  const r2 = await h1Request(brokenPort);
  assert.equal(r2.status, 503);
  const recs = await h.telemetry.closed(2);
  assert.equal(recs[0].flags, 'UH');
  assert.equal(recs[1].flags, 'URX,UF', 'connect failures are retried by default, then given up');
});

test('each upstream attempt carries x-envoy-attempt-count, so an endpoint can tell a retry', async () => {
  const seen: string[] = [];
  behaviour = (_n, req, res) => {
    const n = String(req.headers['x-envoy-attempt-count'] ?? '');
    seen.push(n);
    res.statusCode = n === '1' ? 503 : 200;
    res.end(n);
  };
  apply({ virtualServices: [vs({ retries: { attempts: 2, retryOn: '5xx' } })] });
  const r = await h1Request(port, { headers: { 'x-envoy-attempt-count': '7' } });
  assert.equal(r.status, 200);
  assert.deepEqual(seen, ['1', '2'], 'the caller\'s own value is replaced');
});

test('retries turn a backend failing 30% with 503 into >99% success', async () => {
  behaviour = (_n, _q, res) => {
    if (Math.random() < 0.3) {
      res.statusCode = 503;
      res.end('flaky');
    } else res.end('ok');
  };
  apply({ virtualServices: [vs({ retries: { attempts: 5, retryOn: '5xx' } })] });
  // Two callers at a time: below the budget's minimum of 3 concurrent retries, so the budget never
  // interferes here. (A 30% failure rate needs ~43% extra attempts, which is more than a 20% budget
  // grants at high concurrency: the next test is about exactly that cap.)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const results = await pool(600, 2, () => h1Request(port, { agent }));
  agent.destroy();
  const ok = results.filter((r) => r.status === 200).length;
  assert.ok(ok / results.length > 0.99, `success rate ${ok}/${results.length} ${JSON.stringify(clusterStats())} ${JSON.stringify(h.telemetry.records.slice(-5).map((r) => [r.code, r.flags]))}`);
  assert.ok((clusterStats()?.retries ?? 0) > 100, 'retries happened');
});

test('with a backend failing 100%, retries stay within the retry budget', async () => {
  behaviour = (_n, _q, res) => {
    res.statusCode = 503;
    res.end('down');
  };
  apply({ virtualServices: [vs({ retries: { attempts: 3, retryOn: '5xx' } })] });
  const before = { hits: a.hits + b.hits, retries: clusterStats()?.retries ?? 0, suppressed: clusterStats()?.retriesSuppressed ?? 0 };
  const n = 600;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 40 });
  const results = await pool(n, 40, () => h1Request(port, { agent }));
  agent.destroy();
  assert.ok(results.every((r) => r.status === 503));
  const hits = a.hits + b.hits - before.hits;
  const s = clusterStats();
  const retries = (s?.retries ?? 0) - before.retries;
  const suppressed = (s?.retriesSuppressed ?? 0) - before.suppressed;
  // Without a budget every request would be tried 4 times (2,400 hits).
  assert.equal(hits, n + retries, 'the backend saw each first attempt plus each retry');
  assert.ok(retries > 0, 'some retries were made');
  assert.ok(suppressed > 0, 'the budget refused some');
  if (process.env.WAYPOINT_TEST_VERBOSE) console.log({ hits, retries, suppressed });
  assert.ok(hits <= n * 1.3, `backend saw ${hits} attempts for ${n} requests (retries ${retries}, suppressed ${suppressed})`);
  const recs = h.telemetry.records.slice(-n);
  assert.ok(recs.every((r) => r.flags?.includes('URX')));
});

test('perTryTimeout and the route timeout answer 504 UT in time', async () => {
  behaviour = (_n, req, res) => {
    if (req.url?.startsWith('/slow')) setTimeout(() => res.end('late'), 3000).unref();
    else res.end('ok');
  };
  apply({ virtualServices: [vs({ retries: { attempts: 1, perTryTimeout: '200ms', retryOn: '5xx' }, timeout: '20s' })] });
  let t0 = Date.now();
  let r = await h1Request(port, { path: '/slow' });
  let elapsed = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.ok(elapsed >= 350 && elapsed < 2500, `per-try timeouts took ${elapsed} ms`);
  let rec = (await h.telemetry.closed(h.telemetry.records.length)).at(-1);
  assert.equal(rec?.flags?.split(',').includes('UT'), true);

  apply({ virtualServices: [vs({ timeout: '300ms' })] });
  t0 = Date.now();
  r = await h1Request(port, { path: '/slow' });
  elapsed = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.equal(r.body, 'upstream request timeout');
  assert.ok(elapsed >= 250 && elapsed < 2500, `timeout took ${elapsed} ms`);
  rec = (await h.telemetry.closed(h.telemetry.records.length)).at(-1);
  assert.equal(rec?.flags, 'UT');
  behaviour = (_n, _q, res) => res.end('ok');
});

test('fault abort and delay happen at the configured percentages', async () => {
  behaviour = (_n, _q, res) => res.end('ok');
  apply({ virtualServices: [vs({ fault: { abort: { httpStatus: 418, percentage: { value: 40 } }, delay: { fixedDelay: '1ms', percentage: { value: 25 } } } })] });
  const start = h.telemetry.records.length;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  const results = await pool(800, 8, () => h1Request(port, { agent }));
  agent.destroy();
  const aborted = results.filter((r) => r.status === 418).length;
  assert.ok(results.every((r) => r.status === 418 || r.status === 200));
  assert.ok(Math.abs(aborted / 800 - 0.4) < 0.08, `aborted ${aborted}/800`);
  const recs = h.telemetry.records.slice(start);
  const delayed = recs.filter((r) => r.flags?.includes('DI')).length;
  assert.ok(Math.abs(delayed / 800 - 0.25) < 0.08, `delayed ${delayed}/800`);
  assert.ok(recs.filter((r) => r.code === 418).every((r) => r.flags?.includes('FI')));
});

test('connection pool limits answer 503 UO when exceeded', async () => {
  behaviour = (_n, _q, res) => setTimeout(() => res.end('ok'), 300);
  apply({ destinationRules: [obj(ISTIO, 'DestinationRule', 'ratings', { host: 'ratings', trafficPolicy: { connectionPool: { http: { http2MaxRequests: 2 } } } })] });
  const results = await Promise.all(Array.from({ length: 6 }, () => h1Request(port)));
  const overflow = results.filter((r) => r.status === 503).length;
  assert.ok(overflow >= 1, `overflows: ${overflow}`);
  assert.equal(results.filter((r) => r.status === 200).length + overflow, 6);
  assert.ok(h.telemetry.records.some((r) => r.flags === 'UO'));
  behaviour = (_n, _q, res) => res.end('ok');
});

test('outlier detection ejects an endpoint returning 5xx and brings it back after baseEjectionTime', async () => {
  let aBroken = true;
  behaviour = (name, _q, res) => {
    if (name === 'a' && aBroken) {
      res.statusCode = 500;
      res.end('broken');
    } else res.end('ok');
  };
  apply({
    destinationRules: [
      obj(ISTIO, 'DestinationRule', 'ratings', {
        host: 'ratings',
        trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '1s', maxEjectionPercent: 100 } },
      }),
    ],
  });
  const first = [];
  for (let i = 0; i < 20; i++) first.push(await h1Request(port));
  assert.equal(first.filter((r) => r.status === 500).length, 3, 'three failures, then a is ejected');
  assert.deepEqual(clusterStats()?.ejected, ['wl/shop/ratings-a:8080']);
  const during = [];
  for (let i = 0; i < 10; i++) during.push(await h1Request(port));
  assert.ok(during.every((r) => r.headers['x-served-by'] === 'b'));
  aBroken = false;
  await sleep(1300);
  const later = [];
  for (let i = 0; i < 10; i++) later.push(await h1Request(port));
  assert.ok(later.some((r) => r.headers['x-served-by'] === 'a'), 'a serves again');
  assert.ok(later.every((r) => r.status === 200));
});

test('a request body is replayed on retry, but one larger than the retry buffer is not retried', async () => {
  const attempts = new Map<string, number>();
  behaviour = (_n, req, res) => {
    const id = String(req.headers['x-id']);
    const n = (attempts.get(id) ?? 0) + 1;
    attempts.set(id, n);
    if (n === 1) {
      res.statusCode = 503;
      res.end('first attempt fails');
    } else res.end(`len=${String(req.headers['x-len'])}`);
  };
  apply({ virtualServices: [vs({ retries: { attempts: 2, retryOn: '5xx' } })] });
  const small = Buffer.alloc(10 * 1024, 1);
  let r = await h1Request(port, { method: 'POST', body: small, headers: { 'x-id': 'small', 'x-len': String(small.length) } });
  assert.equal(r.status, 200);
  assert.equal(attempts.get('small'), 2);
  const large = Buffer.alloc(100 * 1024, 2);
  r = await h1Request(port, { method: 'POST', body: large, headers: { 'x-id': 'large', 'x-len': String(large.length) } });
  assert.equal(r.status, 503, 'not retried: the body was not kept');
  assert.equal(attempts.get('large'), 1);
  behaviour = (_n, _q, res) => res.end('ok');
});

test('retried POST bodies arrive intact at the endpoint (HTTP/1 and HTTP/2 callers)', async () => {
  const attempts = new Map<string, number>();
  const bodies = new Map<string, string>();
  apply({ virtualServices: [vs({ retries: { attempts: 2, retryOn: '5xx' } })] });
  const check = (id: string) => {
    assert.equal(attempts.get(id), 2);
    assert.equal(bodies.get(id), `payload-${id}`.repeat(100));
  };
  // Handlers that read the body themselves, so they see exactly what the waypoint sent (last test: they stay).
  const handler = (req: BackendRequest, res: BackendResponse) => {
    const id = String(req.headers['x-id']);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      bodies.set(id, Buffer.concat(chunks).toString());
      if (n === 1) res.statusCode = 503;
      res.end();
    });
  };
  a.h1.removeAllListeners('request');
  b.h1.removeAllListeners('request');
  a.h2.removeAllListeners('request');
  b.h2.removeAllListeners('request');
  for (const s of [a.h1, b.h1, a.h2, b.h2]) s.on('request', handler);
  const r1 = await h1Request(port, { method: 'POST', body: 'payload-h1'.repeat(100), headers: { 'x-id': 'h1' } });
  assert.equal(r1.status, 200);
  check('h1');
  const s = http2.connect(`http://127.0.0.1:${port}`);
  const r2 = await h2Request(s, { ':method': 'POST', ':path': '/', 'x-id': 'h2' }, 'payload-h2'.repeat(100));
  s.close();
  assert.equal(r2.status, 200);
  check('h2');
});
