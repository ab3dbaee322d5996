/**
 * DestinationRule connectionPool settings beyond the circuit-breaker limits: connect and idle
 * timeouts, the cap on concurrent retries, streams per upstream HTTP/2 connection, and
 * h2UpgradePolicy. Each is checked against what the endpoint sees.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  buildSnapshot, h1Request, hostOf, ISTIO, obj, pool, serviceConfig, sleep, startBackend, startHarness, startTcpBackend,
  type Backend, type BackendRequest, type BackendResponse, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';

const host = hostOf('ratings');

async function setup(
  svc: ServiceDef,
  trafficPolicy: object | undefined,
  handler: (req: BackendRequest, res: BackendResponse) => void,
  extra: { vs?: object; limits?: Parameters<typeof startHarness>[0] } = {},
): Promise<{ h: Harness; backend: Backend; port: number; close: () => Promise<void> }> {
  const h = await startHarness(extra.limits);
  const backend = await startBackend('ratings-a', (req, res) => {
    req.resume();
    req.on('end', () => handler(req, res));
  });
  const ports = svc.ports.map((p) => ({ servicePort: p, targetPort: p }));
  const mesh = buildSnapshot([svc], [{ name: 'ratings-a', ip: '10.0.7.1', services: { [host]: ports } }]);
  const parts: Parameters<typeof serviceConfig>[1] = {};
  if (trafficPolicy) parts.destinationRules = [obj(ISTIO, 'DestinationRule', 'ratings', { host: 'ratings', trafficPolicy })];
  if (extra.vs) parts.virtualServices = [obj(ISTIO, 'VirtualService', 'ratings', { hosts: ['ratings'], http: [{ route: [{ destination: { host: 'ratings' } }], ...extra.vs }] })];
  assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/ratings', serviceConfig(svc, parts)]])), []);
  h.connector.ports.set('ratings-a', backend.port);
  const port = await h.tunnel({ authority: `${svc.vip}:${svc.ports[0]}` });
  return {
    h,
    backend,
    port,
    close: async () => {
      await h.close();
      await backend.close();
    },
  };
}

const svc: ServiceDef = { name: 'ratings', vip: '10.96.7.1', ports: [8080] };

/**
 * Several endpoints behind `ratings`, each answering with `x-served-by: <name>` once the request
 * body is read (then `answer` finishes the response), and one DestinationRule traffic policy.
 */
async function setupEndpoints(
  names: string[],
  trafficPolicy: object,
  answer: (name: string, res: BackendResponse) => void,
): Promise<{ h: Harness; port: number; close: () => Promise<void> }> {
  const h = await startHarness();
  const backends: Backend[] = [];
  const close = async () => {
    await h.close();
    for (const b of backends) await b.close();
  };
  try {
    for (const name of names) {
      const b = await startBackend(name, (req, res) => {
        req.resume();
        req.on('end', () => {
          res.setHeader('x-served-by', name);
          answer(name, res);
        });
      });
      backends.push(b);
      h.connector.ports.set(name, b.port);
    }
    const mesh = buildSnapshot([svc], names.map((name, i) => ({ name, ip: `10.0.7.${10 + i}`, services: { [host]: [{ servicePort: 8080, targetPort: 8080 }] } })));
    const dr = obj(ISTIO, 'DestinationRule', 'ratings', { host: 'ratings', trafficPolicy });
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/ratings', serviceConfig(svc, { destinationRules: [dr] })]])), []);
    return { h, port: await h.tunnel({ authority: `${svc.vip}:8080` }), close };
  } catch (e) {
    await close();
    throw e;
  }
}

test('connectionPool.tcp.connectTimeout bounds the connect to an endpoint: 503 UF on time, not after the 10 s default', async () => {
  const t = await setup(svc, { connectionPool: { tcp: { connectTimeout: '250ms' } } }, (_q, res) => res.end('ok'));
  try {
    t.h.connector.hang.add('ratings-a');
    const start = Date.now();
    const r = await h1Request(t.port);
    const took = Date.now() - start;
    assert.equal(r.status, 503);
    assert.ok(took >= 200 && took < 3000, `answered after ${took} ms`);
    const [rec] = await t.h.telemetry.closed(1);
    // Istio's default policy retried the connect twice first (URX: retries exhausted), as Envoy logs it.
    assert.equal(rec.flags, 'URX,UF');
  } finally {
    await t.close();
  }
});

test('connectionPool.http.idleTimeout closes pooled upstream connections after that much idleness', async () => {
  const t = await setup(svc, { connectionPool: { http: { idleTimeout: '300ms' } } }, (_q, res) => res.end('ok'));
  try {
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.open, 1, 'the upstream connection is kept for reuse');
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.connections, 1, 'and reused');
    await sleep(1200);
    assert.equal(t.backend.open, 0, 'closed once idle for 300 ms (the default would keep it 4 s)');
    assert.equal((await h1Request(t.port)).status, 200, 'a new connection serves the next request');
    assert.equal(t.backend.connections, 2);
  } finally {
    await t.close();
  }
});

/** One request over an HTTP/2 upstream, then the pooled session must be gone `waitMs` later, and a new one serve the next request. */
async function expectH2SessionClosed(trafficPolicy: object, waitMs: number, why: string): Promise<void> {
  const h2svc: ServiceDef = { ...svc, appProtocols: { 8080: 'http2' } };
  const t = await setup(h2svc, trafficPolicy, (_q, res) => res.end('ok'));
  try {
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.open, 1);
    await sleep(waitMs);
    assert.equal(t.backend.open, 0, why);
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.connections, 2);
  } finally {
    await t.close();
  }
}

test('connectionPool.http.idleTimeout applies to pooled upstream HTTP/2 sessions', async () => {
  await expectH2SessionClosed({ connectionPool: { http: { idleTimeout: '300ms' } } }, 1200, 'the idle session was closed');
});

test('connectionPool.http.maxRetries caps retries in flight at once below the retry budget', async () => {
  // Every attempt fails after 200 ms. Ten callers fail together; the budget alone would let three
  // retry at once (its minimum concurrency); maxRetries: 1 lets one.
  const measure = async (trafficPolicy: object | undefined): Promise<{ maxConcurrentRetries: number; retried: number }> => {
    let inFlight = 0;
    let max = 0;
    let retried = 0;
    // Each caller names itself; a second arrival of the same name is a retry.
    const seen = new Set<string>();
    const t = await setup(
      svc,
      trafficPolicy,
      (q, res) => {
        const caller = String(q.headers['x-caller']);
        const isRetry = seen.has(caller);
        seen.add(caller);
        if (isRetry) {
          retried++;
          inFlight++;
          max = Math.max(max, inFlight);
        }
        setTimeout(() => {
          if (isRetry) inFlight--;
          res.statusCode = 503;
          res.end('down');
        }, 200);
      },
      { vs: { retries: { attempts: 3, retryOn: '5xx' } } },
    );
    try {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => h1Request(t.port, { headers: { 'x-caller': `c${i}` } })));
      assert.ok(results.every((r) => r.status === 503));
      return { maxConcurrentRetries: max, retried };
    } finally {
      await t.close();
    }
  };
  const capped = await measure({ connectionPool: { http: { maxRetries: 1 } } });
  assert.equal(capped.maxConcurrentRetries, 1, JSON.stringify(capped));
  assert.ok(capped.retried >= 1);
  const budgetOnly = await measure(undefined);
  assert.ok(budgetOnly.maxConcurrentRetries >= 2, `without maxRetries more retries run at once: ${JSON.stringify(budgetOnly)}`);
});

/** A handler answering after 300 ms that records the most requests it held at once. */
function slowCounting(): { handler: (q: BackendRequest, res: BackendResponse) => void; max: number } {
  let inFlight = 0;
  const c = {
    max: 0,
    handler: (_q: BackendRequest, res: BackendResponse) => {
      inFlight++;
      c.max = Math.max(c.max, inFlight);
      setTimeout(() => {
        inFlight--;
        res.end('ok');
      }, 300);
    },
  };
  return c;
}

test('connectionPool.http.maxConcurrentStreams opens another upstream HTTP/2 connection instead of exceeding it', async () => {
  const h2svc: ServiceDef = { ...svc, appProtocols: { 8080: 'http2' } };
  const counting = slowCounting();
  const slow = counting.handler;
  const t = await setup(h2svc, { connectionPool: { http: { maxConcurrentStreams: 2 } } }, slow);
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
    const results = await Promise.all(Array.from({ length: 6 }, () => h1Request(t.port, { agent })));
    agent.destroy();
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(counting.max, 6, 'all six ran at once');
    assert.equal(t.backend.connections, 3, 'two streams per connection');
  } finally {
    await t.close();
  }
  const u = await setup(h2svc, undefined, slow);
  try {
    await Promise.all(Array.from({ length: 6 }, () => h1Request(u.port)));
    assert.equal(u.backend.connections, 1, 'without the setting one session carries them all');
  } finally {
    await u.close();
  }
});

test('an endpoint\'s own SETTINGS_MAX_CONCURRENT_STREAMS also caps a pooled HTTP/2 session: more streams open another', async () => {
  const h2svc: ServiceDef = { ...svc, appProtocols: { 8080: 'http2' } };
  const counting = slowCounting();
  const t = await setup(h2svc, undefined, counting.handler);
  try {
    t.backend.h2.updateSettings({ maxConcurrentStreams: 2 });
    // The first request opens the session and learns the endpoint's settings.
    assert.equal((await h1Request(t.port)).status, 200);
    counting.max = 0;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
    const results = await Promise.all(Array.from({ length: 6 }, () => h1Request(t.port, { agent })));
    agent.destroy();
    assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 200, 200]);
    assert.equal(counting.max, 6, 'all six ran at once, none queued behind the limit');
    assert.equal(t.backend.connections, 3, 'two streams per connection, as the endpoint asked');
  } finally {
    await t.close();
  }
});

test('an HTTP/2 endpoint that never sends its SETTINGS is a connect failure within connectTimeout (503 UF), not a hang', async () => {
  const h2svc: ServiceDef = { ...svc, appProtocols: { 8080: 'http2' } };
  const h = await startHarness();
  const silent = await startTcpBackend((s) => s.on('data', () => {}));
  try {
    const mesh = buildSnapshot([h2svc], [{ name: 'ratings-a', ip: '10.0.7.1', services: { [host]: [{ servicePort: 8080, targetPort: 8080 }] } }]);
    const dr = obj(ISTIO, 'DestinationRule', 'ratings', { host: 'ratings', trafficPolicy: { connectionPool: { tcp: { connectTimeout: '300ms' } } } });
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/ratings', serviceConfig(h2svc, { destinationRules: [dr] })]])), []);
    h.connector.ports.set('ratings-a', silent.port);
    const port = await h.tunnel({ authority: `${h2svc.vip}:8080` });
    const start = Date.now();
    const r = await h1Request(port);
    const took = Date.now() - start;
    assert.equal(r.status, 503);
    assert.ok(took >= 280 && took < 5000, `answered after ${took} ms`);
    const recs = await h.telemetry.closed(1);
    assert.equal(recs[0].flags, 'URX,UF', 'retried twice (the default policy), then given up');
  } finally {
    await h.close();
    await silent.close();
  }
});

test('connectionPool.http.h2UpgradePolicy UPGRADE sends HTTP/1.1 callers\' requests to the endpoint as HTTP/2', async () => {
  for (const [policy, expected] of [['UPGRADE', '2.0'], ['DO_NOT_UPGRADE', '1.1'], [undefined, '1.1']] as const) {
    const tp = policy ? { connectionPool: { http: { h2UpgradePolicy: policy } } } : undefined;
    const t = await setup({ ...svc, appProtocols: { 8080: 'http' } }, tp, (req, res) => {
      res.setHeader('x-version', req.httpVersion);
      res.end(`${req.method} ${req.url}`);
    });
    try {
      const r = await h1Request(t.port, { method: 'POST', path: '/a?b=1', body: 'xyz' });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-version'], expected, `policy ${policy ?? 'unset'}`);
      assert.equal(r.body, 'POST /a?b=1');
    } finally {
      await t.close();
    }
  }
});

test('connectionPool.tcp.maxConnectionDuration retires upstream HTTP/1.1 connections: an idle one closes at its age, a busy one after its request', async () => {
  let delayMs = 0;
  const t = await setup(svc, { connectionPool: { tcp: { maxConnectionDuration: '400ms' } } }, (_q, res) => {
    setTimeout(() => res.end('ok'), delayMs);
  });
  try {
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.open, 1, 'kept alive while young');
    await sleep(900);
    assert.equal(t.backend.open, 0, 'closed at 400 ms although the idle timeout (4 s) had not run out');
    // A request still running when the connection comes of age finishes on it; the connection then closes.
    delayMs = 700;
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.connections, 2);
    await sleep(100);
    assert.equal(t.backend.open, 0, 'closed once its request ended');
    delayMs = 0;
    assert.equal((await h1Request(t.port)).status, 200);
    assert.equal(t.backend.connections, 3, 'the next request gets a new connection');
  } finally {
    await t.close();
  }
});

test('connectionPool.tcp.maxConnectionDuration retires upstream HTTP/2 sessions', async () => {
  await expectH2SessionClosed({ connectionPool: { tcp: { maxConnectionDuration: '400ms' } } }, 900, 'closed at its age, not after the 60 s idle timeout');
});

test('connectionPool.http.useClientProtocol keeps the caller\'s protocol whatever the port declares, and overrides h2UpgradePolicy', async () => {
  const cases = [
    [{ 8080: 'http2' }, { useClientProtocol: true }, '1.1'],
    [{ 8080: 'http2' }, { useClientProtocol: false }, '2.0'],
    [{ 8080: 'http' }, { useClientProtocol: true, h2UpgradePolicy: 'UPGRADE' }, '1.1'],
  ] as const;
  for (const [appProtocols, http, expected] of cases) {
    const t = await setup({ ...svc, appProtocols }, { connectionPool: { http } }, (req, res) => {
      res.setHeader('x-version', req.httpVersion);
      res.end('ok');
    });
    try {
      const r = await h1Request(t.port);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-version'], expected, JSON.stringify({ appProtocols, http }));
    } finally {
      await t.close();
    }
  }
});

test('durations beyond what a timer can hold mean "about never", not an immediate timeout', async () => {
  const t = await setup(svc, { connectionPool: { tcp: { connectTimeout: '1000h' }, http: { idleTimeout: '1000h' } } }, (_q, res) => res.end('ok'));
  try {
    assert.equal((await h1Request(t.port)).status, 200);
    await sleep(100);
    assert.equal(t.backend.open, 1, 'the pooled connection was not closed at once');
  } finally {
    await t.close();
  }
});

test('LEAST_REQUEST counts a request as load until its response body ends, not only until its headers', async () => {
  const t = await setupEndpoints(['ratings-a', 'ratings-b', 'ratings-slow'], { loadBalancer: { simple: 'LEAST_REQUEST' } }, (name, res) => {
    if (name !== 'ratings-slow') return res.end('ok');
    // Headers at once, the body half a second later: a stream that keeps the endpoint busy.
    const r = res as http.ServerResponse;
    r.writeHead(200);
    r.write('head ');
    setTimeout(() => r.end('tail'), 500);
  });
  const { port } = t;
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
    const results = await pool(150, 10, () => h1Request(port, { agent }));
    agent.destroy();
    const slow = results.filter((r) => r.headers['x-served-by'] === 'ratings-slow').length;
    assert.ok(results.every((r) => r.status === 200));
    // An even share would be 50; counted until headers only, the slow endpoint got about that many.
    assert.ok(slow < 20, `the endpoint with a long response got ${slow} of 150`);
  } finally {
    await t.close();
  }
});

test('consistentHash.httpCookie with a ttl generates the cookie for a new client, who then sticks to one endpoint', async () => {
  const policy = { loadBalancer: { consistentHash: { httpCookie: { name: 'sticky', path: '/app', ttl: '60s' } } } };
  const t = await setupEndpoints(['ratings-a', 'ratings-b', 'ratings-c', 'ratings-d'], policy, (_name, res) => {
    res.setHeader('set-cookie', 'app=1');
    res.end('ok');
  });
  const { port } = t;
  try {
    for (let client = 0; client < 3; client++) {
      const first = await h1Request(port);
      const cookies = ([] as string[]).concat(first.headers['set-cookie'] ?? []);
      assert.ok(cookies.includes('app=1'), 'the endpoint\'s own cookie is kept');
      const generated = cookies.find((c) => c.startsWith('sticky='));
      assert.ok(generated, `a cookie is generated: ${JSON.stringify(cookies)}`);
      assert.match(generated, /^sticky="[0-9a-f]{16}"; Max-Age=60; Path=\/app; HttpOnly$/);
      const cookie = generated.split(';')[0];
      const served = new Set<string>([String(first.headers['x-served-by'])]);
      for (let i = 0; i < 8; i++) {
        const r = await h1Request(port, { headers: { cookie } });
        served.add(String(r.headers['x-served-by']));
        assert.deepEqual(([] as string[]).concat(r.headers['set-cookie'] ?? []), ['app=1'], 'no new cookie once the caller sends one');
      }
      assert.equal(served.size, 1, `one endpoint for the cookie ${cookie}: ${[...served].join(',')}`);
    }
  } finally {
    await t.close();
  }
});
