import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import {
  buildSnapshot, GW, h1Request, h2Request, hostOf, ISTIO, obj, pool, rawExchange, serviceConfig, startBackend, startHarness,
  type Backend, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';

const reviews: ServiceDef = { name: 'reviews', vip: '10.96.0.10', ports: [9080] };
const host = hostOf('reviews');
const workloads = [
  { name: 'reviews-v1', ip: '10.0.0.1', version: 'v1', app: 'reviews', services: { [host]: [{ servicePort: 9080, targetPort: 9080 }] } },
  { name: 'reviews-v2', ip: '10.0.0.2', version: 'v2', app: 'reviews', services: { [host]: [{ servicePort: 9080, targetPort: 9080 }] } },
];
const mesh = buildSnapshot([reviews], workloads);
const dr = obj(ISTIO, 'DestinationRule', 'reviews', { host: 'reviews', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] });
const weighted = (w1: number, w2: number) =>
  obj(ISTIO, 'VirtualService', 'reviews', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: w1 }, { destination: { host: 'reviews', subset: 'v2' }, weight: w2 }] }] });

let h: Harness;
let v1: Backend;
let v2: Backend;
let port: number;
const seen: Array<{ host: string; backendOnly: string }> = [];

function apply(parts: Parameters<typeof serviceConfig>[1]) {
  return h.engine.update(mesh, new Map([['l7/shop/reviews', serviceConfig(reviews, parts)]]));
}

before(async () => {
  h = await startHarness();
  const handler = (name: string) => (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    req.resume();
    seen.push({ host: String(req.headers[':authority'] ?? req.headers.host), backendOnly: String(req.headers['x-backend-only'] ?? '') });
    req.on('end', () => {
      res.setHeader('x-served-by', name);
      res.setHeader('x-saw-xff', String(req.headers['x-forwarded-for'] ?? ''));
      res.setHeader('x-saw-envoy', String(req.headers['x-envoy-internal'] ?? ''));
      res.setHeader('x-saw-path', String(req.url));
      res.setHeader('x-saw-traceparent', String(req.headers.traceparent ?? ''));
      res.setHeader('x-saw-tracestate', String(req.headers.tracestate ?? ''));
      res.end(`hello from ${name}`);
    });
  };
  v1 = await startBackend('reviews-v1', handler('v1'));
  v2 = await startBackend('reviews-v2', handler('v2'));
  h.connector.ports.set('reviews-v1', v1.port);
  h.connector.ports.set('reviews-v2', v2.port);
  port = await h.tunnel({ authority: '10.96.0.10:9080' });
});

after(async () => {
  await h.close();
  await v1.close();
  await v2.close();
});

test('a plain request reaches an endpoint; caller-sent internal headers are replaced', async () => {
  assert.deepEqual(apply({}), []);
  const r = await h1Request(port, { path: '/x', headers: { 'x-forwarded-for': '6.6.6.6', 'x-envoy-internal': 'true', traceparent: '00-11111111111111111111111111111111-2222222222222222-01' } });
  assert.equal(r.status, 200);
  assert.match(r.body, /hello from v[12]/);
  assert.equal(r.headers['x-saw-xff'], '10.1.0.1');
  assert.equal(r.headers['x-saw-envoy'], '');
  const recs = await h.telemetry.closed(1);
  const rec = recs[recs.length - 1];
  assert.equal(rec.code, 200);
  assert.equal(rec.flags, '-');
  assert.equal(r.headers['x-saw-traceparent'], rec.traceparent);
  assert.equal(rec.info.traceparent, '00-11111111111111111111111111111111-2222222222222222-01');
  // tracestate goes on with the caller's trace, and is dropped when a new trace had to start.
  const kept = await h1Request(port, { headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01', tracestate: 'congo=t61' } });
  assert.equal(kept.headers['x-saw-tracestate'], 'congo=t61');
  assert.match(String(kept.headers['x-saw-traceparent']), /^00-11111111111111111111111111111111-/);
  const fresh = await h1Request(port, { headers: { traceparent: '00-XYZ-bad-01', tracestate: 'congo=t61' } });
  assert.equal(fresh.headers['x-saw-tracestate'], '');
  const alone = await h1Request(port, { headers: { tracestate: 'congo=t61' } });
  assert.equal(alone.headers['x-saw-tracestate'], '');
});

test('90/10 weighted split over 2,000 requests, within 3 points', async () => {
  assert.deepEqual(apply({ virtualServices: [weighted(90, 10)], destinationRules: [dr] }), []);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const results = await pool(2000, 16, () => h1Request(port, { agent }));
  agent.destroy();
  const byV1 = results.filter((r) => r.headers['x-served-by'] === 'v1').length;
  assert.ok(results.every((r) => r.status === 200), 'every request succeeded');
  const share = (byV1 / results.length) * 100;
  assert.ok(Math.abs(share - 90) <= 3, `v1 got ${share.toFixed(1)}%`);
});

test('a weight change under load applies to new requests with no failed request', async () => {
  assert.deepEqual(apply({ virtualServices: [weighted(100, 0)], destinationRules: [dr] }), []);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let switched = false;
  const seen: Array<{ after: boolean; by: string; status: number }> = [];
  const load = pool(1200, 8, async (i) => {
    if (i === 400) {
      apply({ virtualServices: [weighted(0, 100)], destinationRules: [dr] });
      switched = true;
    }
    const after = switched;
    const r = await h1Request(port, { agent });
    seen.push({ after, by: String(r.headers['x-served-by']), status: r.status });
  });
  await load;
  agent.destroy();
  assert.ok(seen.every((s) => s.status === 200), 'no failed request');
  // Requests the client had sent but the waypoint had not yet read may see the new weights (at most one per connection).
  assert.ok(seen.filter((s) => !s.after && s.by !== 'v1').length <= 8, 'before the change only v1, but for those in flight');
  assert.ok(seen.filter((s) => s.after).every((s) => s.by === 'v2'), 'requests started after the change go to v2');
});

test('a header match routes to v2 and everything else to v1 (subsets by DestinationRule)', async () => {
  const vs = obj(ISTIO, 'VirtualService', 'reviews', {
    hosts: ['reviews'],
    http: [
      { match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [{ destination: { host: 'reviews', subset: 'v2' } }] },
      { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
    ],
  });
  assert.deepEqual(apply({ virtualServices: [vs], destinationRules: [dr] }), []);
  for (let i = 0; i < 20; i++) {
    const a = await h1Request(port, { headers: { 'end-user': 'jason' } });
    const b = await h1Request(port, { headers: { 'end-user': 'other' } });
    assert.equal(a.headers['x-served-by'], 'v2');
    assert.equal(b.headers['x-served-by'], 'v1');
  }
});

test('HTTPRoute: no match is 404 NR; header modifiers, rewrite and redirect apply', async () => {
  const parentRefs = [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }];
  const route = obj(GW, 'HTTPRoute', 'reviews', {
    parentRefs,
    rules: [
      {
        matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
        filters: [
          { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } },
          { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-route', value: 'api' }] } },
        ],
        backendRefs: [{ name: 'reviews', port: 9080 }],
      },
      {
        matches: [{ path: { type: 'Exact', value: '/old' } }],
        filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 302 } }],
      },
    ],
  });
  assert.deepEqual(apply({ httpRoutes: [route] }), []);
  const a = await h1Request(port, { path: '/api/items?x=1' });
  assert.equal(a.status, 200);
  assert.equal(a.headers['x-saw-path'], '/v1/items?x=1');
  assert.equal(a.headers['x-route'], 'api');
  const b = await h1Request(port, { path: '/nothing' });
  assert.equal(b.status, 404);
  const c = await h1Request(port, { path: '/old' });
  assert.equal(c.status, 302);
  assert.match(String(c.headers.location), /\/new$/);
  const recs = await h.telemetry.closed(3);
  assert.ok(recs.some((r) => r.code === 404 && r.flags === 'NR'));
  // A reply the waypoint makes itself counts its body, as Envoy's bytes sent do.
  const nr = recs.find((r) => r.code === 404)!;
  assert.equal(nr.responseBytes, Buffer.byteLength(b.body), 'the 404 body is counted in the response bytes');
});

test('HTTPRoute: a backendRef to a missing Service gets 500 for its share; a backendRef filter does not reach the mirror', async () => {
  const parentRefs = [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }];
  const route = obj(GW, 'HTTPRoute', 'reviews', {
    parentRefs,
    rules: [
      { matches: [{ path: { type: 'PathPrefix', value: '/gone' } }], backendRefs: [{ name: 'nosuch', port: 9080 }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/wrong-port' } }], backendRefs: [{ name: 'reviews', port: 9999 }] },
      {
        matches: [{ path: { type: 'PathPrefix', value: '/mirrored' } }],
        filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'reviews', port: 9080 } } }],
        backendRefs: [{ name: 'reviews', port: 9080, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-backend-only', value: 'yes' }] } }] }],
      },
    ],
  });
  assert.deepEqual(apply({ httpRoutes: [route] }), []);
  for (const path of ['/gone', '/wrong-port']) {
    const r = await h1Request(port, { path });
    assert.equal(r.status, 500, path);
  }
  const recs = await h.telemetry.closed(2);
  assert.ok(recs.slice(-2).every((r) => r.code === 500 && r.flags === 'NC'), JSON.stringify(recs.slice(-2).map((r) => [r.code, r.flags])));
  seen.length = 0;
  const m = await h1Request(port, { path: '/mirrored' });
  assert.equal(m.status, 200);
  for (let i = 0; i < 50 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  const primary = seen.find((x) => !x.host.includes('-shadow'));
  const mirror = seen.find((x) => x.host.includes('-shadow'));
  assert.equal(primary?.backendOnly, 'yes');
  assert.ok(mirror, `the mirror got its copy: ${JSON.stringify(seen)}`);
  assert.equal(mirror.backendOnly, '', 'backendRef filters apply to that backend only');
});

test('an absolute-form request target is accepted: its authority replaces Host (RFC 9112 3.2.2)', async () => {
  assert.deepEqual(apply({}), []);
  seen.length = 0;
  const r = await rawExchange(port, 'GET http://reviews.shop.svc.cluster.local:9080/abs?q=1 HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 200/);
  assert.match(r.text, /x-saw-path: \/abs\?q=1\r\n/i);
  assert.equal(seen[seen.length - 1].host, 'reviews.shop.svc.cluster.local:9080');
  const bad = await rawExchange(port, 'GET http://user@reviews/x HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n');
  assert.match(bad.text, /^HTTP\/1\.1 400/, 'userinfo in the authority is refused');
});

test('HTTP/2 callers are served over HTTP/2 upstream', async () => {
  assert.deepEqual(apply({}), []);
  const s = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => h2Request(s, { ':path': `/h2/${i}`, ':authority': 'reviews' })));
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.match(r.body, /hello from v[12]/);
    }
  } finally {
    s.close();
  }
});
