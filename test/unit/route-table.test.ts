import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource } from '../../lib/api/registry';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { compileRouteTable, RouteMatch, RouteRequest } from '../../waypoint/http/route-table';
import { pickWeighted, seededRandom } from '../../waypoint/upstream/weighted-pick';

const GW = 'gateway.networking.k8s.io/v1';
const ISTIO = 'networking.istio.io/v1';
const NS = 'shop';
const parentRefs = [{ group: '', kind: 'Service', name: 'reviews' }];

/** Specs exactly as the waypoint receives them: validated, defaults applied. */
function obj(apiVersion: string, kind: string, name: string, spec: object, namespace = NS): { namespace: string; name: string; spec: unknown } {
  const v = validateResource({ apiVersion, kind, metadata: { name, namespace }, spec });
  if (!v.ok) throw new Error(`${kind} ${name}: ${JSON.stringify(v.errors)}`);
  return { namespace, name, spec: v.resource.spec };
}
const httpRoute = (name: string, rules: object[], extra: object = {}) => obj(GW, 'HTTPRoute', name, { parentRefs, rules, ...extra });
const grpcRoute = (name: string, rules: object[]) => obj(GW, 'GRPCRoute', name, { parentRefs, rules });
const vs = (name: string, http: object[]) => obj(ISTIO, 'VirtualService', name, { hosts: ['reviews'], http });
const dr = (name: string, spec: object) => obj(ISTIO, 'DestinationRule', name, spec);

function config(parts: Partial<WaypointServiceConfig>): WaypointServiceConfig {
  return {
    service: { name: 'reviews', namespace: NS, hostname: `reviews.${NS}.svc.cluster.local`, vips: ['10.96.0.10'], ports: [{ servicePort: 9080, targetPort: 9080 }] },
    waypoint: { namespace: NS, name: 'waypoint' },
    httpRoutes: [],
    grpcRoutes: [],
    virtualServices: [],
    destinationRules: [],
    authorizationPolicies: [],
    requestAuthentications: [],
    ...parts,
  };
}

function req(path: string, more: Partial<RouteRequest> = {}): RouteRequest {
  return { method: 'GET', path, headers: {}, port: 9080, ...more };
}

/** Routes whose single backend names the rule, so a test can say which rule won by its backend name. */
const to = (backend: string) => ({ backendRefs: [{ name: backend, port: 9080 }] });
const winner = (m: RouteMatch | null): string | null => (m === null ? null : m.backends.map((b) => b.name).join(','));

// ---------------------------------------------------------------------------------------------
// HTTPRoute precedence (Gateway API spec "the longest path match wins; then method; then headers; then query params")

const precedenceRoutes = [
  httpRoute('a-prefix', [
    { matches: [{ path: { type: 'PathPrefix', value: '/' } }], ...to('root') },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], ...to('api') },
    { matches: [{ path: { type: 'PathPrefix', value: '/api/v1/' } }], ...to('api-v1') },
    { matches: [{ path: { type: 'Exact', value: '/api/v1/health' } }], ...to('exact-health') },
    { matches: [{ path: { type: 'RegularExpression', value: '/api/v1/[a-z]+' } }], ...to('regex') },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST' }], ...to('api-post') },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'X-Env', value: 'canary' }] }], ...to('api-canary') },
    {
      matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'x-env', value: 'canary' }, { name: 'x-user', value: 'bob' }] }],
      ...to('api-canary-bob'),
    },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, queryParams: [{ name: 'debug', value: '1' }] }], ...to('api-debug') },
    { matches: [{ path: { type: 'PathPrefix', value: '/api' }, method: 'POST', queryParams: [{ name: 'debug', value: '1' }] }], ...to('api-post-debug') },
    { matches: [{ path: { type: 'RegularExpression', value: '/img/.*\\.png' } }], ...to('png') },
  ]),
];

const precedenceCases: Array<[string, RouteRequest, string | null]> = [
  ['exact beats every prefix', req('/api/v1/health'), 'exact-health'],
  ['exact is case-sensitive', req('/api/v1/HEALTH'), 'api-v1'],
  ['longest prefix wins', req('/api/v1/users'), 'api-v1'],
  ['prefix beats regex whatever the length', req('/api/v1/anything'), 'api-v1'],
  ['shorter prefix', req('/api/orders'), 'api'],
  ['method beats headers at equal path', req('/api/orders', { method: 'POST', headers: { 'x-env': 'canary', 'x-user': 'bob' } }), 'api-post'],
  ['more headers beat fewer', req('/api/orders', { headers: { 'x-env': 'canary', 'x-user': 'bob' } }), 'api-canary-bob'],
  ['header names are case-insensitive', req('/api/orders', { headers: { 'x-env': 'canary' } }), 'api-canary'],
  ['header values are case-sensitive', req('/api/orders', { headers: { 'x-env': 'Canary' } }), 'api'],
  ['headers beat query params', req('/api/orders?debug=1', { headers: { 'x-env': 'canary' } }), 'api-canary'],
  ['query param match', req('/api/orders?a=b&debug=1'), 'api-debug'],
  ['method then query params', req('/api/orders?debug=1', { method: 'POST' }), 'api-post-debug'],
  ['query value mismatch', req('/api/orders?debug=2'), 'api'],
  ['prefix "/" outranks a matching regex', req('/img/cat.png'), 'root'],
  ['catch-all', req('/other'), 'root'],
];

for (const [name, r, want] of precedenceCases) {
  test(`HTTPRoute precedence: ${name}`, () => {
    assert.equal(winner(compileRouteTable(config({ httpRoutes: precedenceRoutes })).match(r)), want);
  });
}

test('HTTPRoute precedence: regex ranks below prefix, and a regex is a full match', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [
        httpRoute('r', [
          { matches: [{ path: { type: 'RegularExpression', value: '/img/.*\\.png' } }], ...to('png') },
          { matches: [{ path: { type: 'Exact', value: '/x' } }], ...to('x') },
        ]),
      ],
    }),
  );
  assert.equal(winner(t.match(req('/img/cat.png'))), 'png');
  assert.equal(winner(t.match(req('/img/cat.png.bak'))), null, 'anchored at the end');
  assert.equal(winner(t.match(req('/prefix/img/cat.png'))), null, 'anchored at the start');
  assert.equal(winner(t.match(req('/img/cat.png?size=2'))), 'png', 'the query string is not part of the path');
});

test('HTTPRoute precedence: ties break by namespace/name, then rule order', () => {
  const same = { matches: [{ path: { type: 'PathPrefix', value: '/same' } }] };
  const t = compileRouteTable(
    config({
      httpRoutes: [httpRoute('zeta', [{ ...same, ...to('zeta') }]), httpRoute('alpha', [{ ...same, ...to('alpha-0') }, { ...same, ...to('alpha-1') }])],
    }),
  );
  const m = t.match(req('/same/x'));
  assert.equal(winner(m), 'alpha-0');
  assert.deepEqual(m?.route, { kind: 'HTTPRoute', namespace: NS, name: 'alpha', ruleIndex: 0, ruleName: undefined });
});

// ---------------------------------------------------------------------------------------------
// PathPrefix element boundaries

const prefixCases: Array<[prefix: string, path: string, matches: boolean]> = [
  ['/foo', '/foo', true],
  ['/foo', '/foo/', true],
  ['/foo', '/foo/bar', true],
  ['/foo', '/foobar', false],
  ['/foo', '/fo', false],
  ['/foo/', '/foo', true],
  ['/foo/', '/foo/bar', true],
  ['/foo/', '/foobar', false],
  ['/foo/bar', '/foo/bar/baz', true],
  ['/foo/bar', '/foo/barbaz', false],
  ['/foo', '/FOO', false],
  ['/foo', '/foo?x=/y', true],
  ['/', '/anything/at/all', true],
];

for (const [prefix, path, want] of prefixCases) {
  test(`PathPrefix ${prefix} ${want ? 'matches' : 'does not match'} ${path}`, () => {
    const t = compileRouteTable(config({ httpRoutes: [httpRoute('p', [{ matches: [{ path: { type: 'PathPrefix', value: prefix } }], ...to('hit') }])] }));
    assert.equal(winner(t.match(req(path))), want ? 'hit' : null);
  });
}

test('header and query regexes are anchored full matches', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [
        httpRoute('r', [
          { matches: [{ headers: [{ type: 'RegularExpression', name: 'x-ver', value: 'v[0-9]' }] }], ...to('hdr') },
          { matches: [{ path: { type: 'Exact', value: '/q' }, queryParams: [{ type: 'RegularExpression', name: 'id', value: '[0-9]+' }] }], ...to('qry') },
        ]),
      ],
    }),
  );
  assert.equal(winner(t.match(req('/', { headers: { 'x-ver': 'v2' } }))), 'hdr');
  assert.equal(winner(t.match(req('/', { headers: { 'x-ver': 'v22' } }))), null);
  assert.equal(winner(t.match(req('/', { headers: { 'x-ver': 'xv2' } }))), null);
  assert.equal(winner(t.match(req('/q?id=123'))), 'qry');
  assert.equal(winner(t.match(req('/q?id=12a'))), null);
  assert.equal(winner(t.match(req('/q?id=%31%32'))), 'qry', 'query values are percent-decoded');
});

test('regexes run on RE2: a catastrophic-backtracking pattern answers at once, and RE2 syntax works', () => {
  const t = compileRouteTable(
    config({
      virtualServices: [
        vs('v', [
          { match: [{ headers: { 'x-a': { regex: '(a+)+b' } } }], route: [{ destination: { host: 'redos' } }] },
          { match: [{ headers: { 'x-user': { regex: '(?i)jason' } } }], route: [{ destination: { host: 'jason' } }] },
          { match: [{ uri: { regex: '/IRe/[A-Z]+' }, ignoreUriCase: true }], route: [{ destination: { host: 'regex-case' } }] },
          { route: [{ destination: { host: 'rest' } }] },
        ]),
      ],
    }),
  );
  // A backtracking engine needs about 2^60 steps for this input: the test could not finish.
  assert.equal(winner(t.match(req('/', { headers: { 'x-a': `${'a'.repeat(60)}!` } }))), 'rest');
  assert.equal(winner(t.match(req('/', { headers: { 'x-a': 'aaab' } }))), 'redos');
  assert.equal(winner(t.match(req('/', { headers: { 'x-user': 'JaSoN' } }))), 'jason');
  // Istio applies ignoreUriCase to exact and prefix matches only; a regex spells (?i) itself.
  assert.equal(winner(t.match(req('/IRe/ABC'))), 'regex-case');
  assert.equal(winner(t.match(req('/ire/abc'))), 'rest');
});

test('a route from another namespace (a consumer route) does not route the service: no namespace re-routes another', () => {
  const hijack = obj(GW, 'HTTPRoute', 'hijack', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: NS }], rules: [to('sink')] }, 'evil');
  const t = compileRouteTable(config({ httpRoutes: [hijack], grpcRoutes: [obj(GW, 'GRPCRoute', 'g', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', namespace: NS }], rules: [to('sink')] }, 'evil')] }));
  // Only the default route remains: the service itself.
  assert.equal(winner(t.match(req('/'))), 'reviews');
  assert.equal(winner(t.match(req('/x', { headers: { 'content-type': 'application/grpc' } }))), 'reviews');
});

test('repeated request headers are matched comma-joined', () => {
  const t = compileRouteTable(config({ httpRoutes: [httpRoute('r', [{ matches: [{ headers: [{ name: 'x-a', value: '1,2' }] }], ...to('hit') }])] }));
  assert.equal(winner(t.match(req('/', { headers: { 'x-a': ['1', '2'] } }))), 'hit');
});

// ---------------------------------------------------------------------------------------------
// Weighted splits and header-based canary

test('90/10 split over 10,000 seeded picks is within 2.5 percentage points', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [
        httpRoute('split', [
          {
            backendRefs: [
              { name: 'reviews-v1', port: 9080, weight: 90 },
              { name: 'reviews-v2', port: 9080, weight: 10 },
              { name: 'reviews-v3', port: 9080, weight: 0 },
            ],
          },
        ]),
      ],
    }),
  );
  const m = t.match(req('/'));
  assert.ok(m);
  const random = seededRandom(42);
  const counts = new Map<string, number>();
  for (let i = 0; i < 10_000; i++) {
    const b = pickWeighted(m.backends, random);
    assert.ok(b);
    counts.set(b.name, (counts.get(b.name) ?? 0) + 1);
  }
  const v1 = ((counts.get('reviews-v1') ?? 0) / 10_000) * 100;
  assert.ok(Math.abs(v1 - 90) <= 2.5, `v1 got ${v1}%`);
  assert.ok(Math.abs(((counts.get('reviews-v2') ?? 0) / 10_000) * 100 - 10) <= 2.5);
  assert.equal(counts.get('reviews-v3'), undefined, 'weight 0 is never picked');
});

test('pickWeighted: weight 0 excluded, all zero or empty picks nothing, the random source decides', () => {
  assert.equal(pickWeighted([{ weight: 0 }, { weight: 0 }]), null);
  assert.equal(pickWeighted([]), null);
  const items = [{ id: 'a', weight: 1 }, { id: 'z', weight: 0 }, { id: 'b', weight: 3 }];
  assert.equal(pickWeighted(items, () => 0)?.id, 'a');
  assert.equal(pickWeighted(items, () => 0.24)?.id, 'a');
  assert.equal(pickWeighted(items, () => 0.25)?.id, 'b');
  assert.equal(pickWeighted(items, () => 0.999999)?.id, 'b');
  const r1 = seededRandom(7);
  const r2 = seededRandom(7);
  for (let i = 0; i < 5; i++) assert.equal(r1(), r2());
});

test('a route whose backends are all weight 0 matches but picks nothing: the caller answers 500', () => {
  const t = compileRouteTable(config({ httpRoutes: [httpRoute('r', [{ backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 0 }] }])] }));
  const m = t.match(req('/'));
  assert.ok(m);
  assert.equal(pickWeighted(m.backends), null);
  assert.equal(m.noBackendStatus, 500);
  // GRPCRoute: UNAVAILABLE, which a 503 local reply carries.
  const g = compileRouteTable(config({ grpcRoutes: [grpcRoute('g', [{ backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 0 }] }])] }));
  const gm = g.match(req('/pkg.Svc/Method', { headers: { 'content-type': 'application/grpc' } }));
  assert.ok(gm);
  assert.equal(winner(gm), 'reviews-v1', 'the GRPCRoute matched, not the default route');
  assert.equal(gm.noBackendStatus, 503);
});

test('header match routes to v2, everything else to v1', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [
        httpRoute('canary', [
          { matches: [{ headers: [{ name: 'end-user', value: 'jason' }] }], backendRefs: [{ name: 'reviews-v2', port: 9080 }] },
          { backendRefs: [{ name: 'reviews-v1', port: 9080 }] },
        ]),
      ],
    }),
  );
  const cases: Array<[Record<string, string>, string, string]> = [
    [{ 'end-user': 'jason' }, '/', 'reviews-v2'],
    [{ 'end-user': 'jason' }, '/reviews/1', 'reviews-v2'],
    [{ 'end-user': 'mary' }, '/', 'reviews-v1'],
    [{}, '/reviews/1', 'reviews-v1'],
  ];
  for (const [headers, path, want] of cases) {
    const m = t.match(req(path, { headers }));
    assert.equal(winner(m), want, JSON.stringify(headers));
    assert.deepEqual(m?.backends[0], {
      hostname: `${want}.${NS}.svc.cluster.local`,
      name: want,
      namespace: NS,
      port: 9080,
      weight: 1,
      requestHeaders: undefined,
      responseHeaders: undefined,
    });
  }
});

// ---------------------------------------------------------------------------------------------
// HTTPRoute filters, timeouts, retries, ports

test('HTTPRoute filters, timeouts and retry are extracted as plain data', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [
        httpRoute('f', [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
            filters: [
              { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Set', value: 'a' }], add: [{ name: 'x-add', value: 'b' }], remove: ['X-Gone'] } },
              { type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'x-served-by', value: 'waypoint' }] } },
              { type: 'URLRewrite', urlRewrite: { hostname: 'new.example.com', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } },
              { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', namespace: 'test', port: 8080 }, percent: 25 } },
            ],
            backendRefs: [{ name: 'reviews', port: 9080 }],
            timeouts: { request: '10s', backendRequest: '2s' },
            retry: { attempts: 3, codes: [502, 503], backoff: '100ms' },
          },
          {
            matches: [{ path: { type: 'Exact', value: '/moved' } }],
            filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', path: { type: 'ReplaceFullPath', replaceFullPath: '/here' }, statusCode: 301 } }],
          },
          { matches: [{ path: { type: 'Exact', value: '/notimeout' } }], timeouts: { request: '0s' }, retry: { attempts: 0 }, ...to('reviews') },
        ]),
      ],
    }),
  );
  const m = t.match(req('/old/x'));
  assert.ok(m);
  assert.deepEqual(m.filters.requestHeaders, { set: [{ name: 'x-set', value: 'a' }], add: [{ name: 'x-add', value: 'b' }], remove: ['x-gone'] });
  assert.deepEqual(m.filters.responseHeaders, { set: [], add: [{ name: 'x-served-by', value: 'waypoint' }], remove: [] });
  assert.deepEqual(m.filters.rewrite, { hostname: 'new.example.com', path: { type: 'ReplacePrefixMatch', prefix: '/old', value: '/new' } });
  assert.deepEqual(m.filters.mirrors, [{ backend: { hostname: 'shadow.test.svc.cluster.local', name: 'shadow', namespace: 'test', port: 8080 }, percent: 25 }]);
  assert.deepEqual(m.timeouts, { requestMs: 10_000, perTryTimeoutMs: 2000 });
  assert.deepEqual(m.retry, {
    attempts: 3,
    perTryTimeoutMs: 2000,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
    codes: [502, 503],
    backoffBaseMs: 100,
  });

  const redirect = t.match(req('/moved'));
  assert.deepEqual(redirect?.filters.redirect, { scheme: 'https', hostname: undefined, port: undefined, path: { type: 'ReplaceFullPath', value: '/here' }, statusCode: 301, listenerPort: true });
  assert.deepEqual(redirect?.backends, []);

  const none = t.match(req('/notimeout'));
  assert.deepEqual(none?.timeouts, { requestMs: undefined, perTryTimeoutMs: undefined }, '"0s" disables the timeout');
  assert.equal(none?.retry, undefined, 'attempts 0 disables retries');
});

test('a parentRef port narrows an HTTPRoute to that port; other ports get the default route', () => {
  const route = obj(GW, 'HTTPRoute', 'p', { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules: [to('reviews-v2')] });
  const cfg = config({ httpRoutes: [route] });
  cfg.service.ports.push({ servicePort: 9443, targetPort: 9443 });
  const t = compileRouteTable(cfg);
  assert.equal(winner(t.match(req('/'))), 'reviews-v2');
  const other = t.match(req('/', { port: 9443 }));
  assert.equal(other?.route.kind, 'Default');
  assert.equal(other?.backends[0].port, 9443);
});

test('routes exist but none matches: null, so the caller answers 404', () => {
  const t = compileRouteTable(config({ httpRoutes: [httpRoute('r', [{ matches: [{ path: { type: 'Exact', value: '/only' } }], ...to('x') }])] }));
  assert.equal(t.match(req('/other')), null);
});

// ---------------------------------------------------------------------------------------------
// GRPCRoute

test('GRPCRoute service/method matching and precedence', () => {
  const t = compileRouteTable(
    config({
      grpcRoutes: [
        grpcRoute('g', [
          { matches: [{ method: { service: 'shop.Reviews', method: 'Get' } }], ...to('get') },
          { matches: [{ method: { service: 'shop.Reviews' } }], ...to('any-method') },
          { matches: [{ method: { type: 'RegularExpression', service: 'shop\\..*', method: 'List.*' } }], ...to('regex-list') },
          { matches: [{ method: { method: 'Ping' }, headers: [{ name: 'x-probe', value: '1' }] }], ...to('probe') },
          to('fallback'),
        ]),
      ],
    }),
  );
  const grpc = (path: string, headers: Record<string, string> = {}) => req(path, { method: 'POST', headers: { 'content-type': 'application/grpc+proto', ...headers } });
  const cases: Array<[RouteRequest, string | null]> = [
    [grpc('/shop.Reviews/Get'), 'get'],
    [grpc('/shop.Reviews/Put'), 'any-method'],
    [grpc('/shop.Reviews/ListAll'), 'any-method'],
    [grpc('/shop.Orders/ListAll'), 'regex-list'],
    [grpc('/shop.Orders/XListAll'), 'fallback'],
    [grpc('/x.Health/Ping', { 'x-probe': '1' }), 'probe'],
    [grpc('/x.Health/Ping'), 'fallback'],
    [grpc('/not-grpc-shaped'), 'fallback'],
    [req('/shop.Reviews/Get', { method: 'POST' }), null],
  ];
  for (const [r, want] of cases) assert.equal(winner(t.match(r)), want, `${r.path} ${JSON.stringify(r.headers)}`);
  assert.equal(t.match(grpc('/shop.Reviews/Get'))?.route.kind, 'GRPCRoute');
});

// ---------------------------------------------------------------------------------------------
// VirtualService

const subsetRule = dr('reviews', {
  host: 'reviews',
  subsets: [
    { name: 'v1', labels: { version: 'v1' } },
    { name: 'v2', labels: { version: 'v2', track: 'canary' } },
  ],
});

test('VirtualService: first match wins in order, with every match field', () => {
  const t = compileRouteTable(
    config({
      destinationRules: [subsetRule],
      virtualServices: [
        vs('reviews', [
          { match: [{ uri: { prefix: '/admin' } }], route: [{ destination: { host: 'admin' } }] },
          // Listed after /admin so "/admin-tools" goes to admin: order, not specificity, decides.
          { match: [{ uri: { prefix: '/admin-tools' } }], route: [{ destination: { host: 'tools' } }] },
          { match: [{ uri: { exact: '/Case', }, ignoreUriCase: true }], route: [{ destination: { host: 'nocase' } }] },
          { match: [{ uri: { regex: '/r/[0-9]+' } }], route: [{ destination: { host: 'regex' } }] },
          { match: [{ headers: { 'end-user': { exact: 'jason' } } }], route: [{ destination: { host: 'reviews', subset: 'v2' } }] },
          { match: [{ headers: { 'x-present': {} } }], route: [{ destination: { host: 'present' } }] },
          { match: [{ method: { exact: 'DELETE' } }, { queryParams: { force: { exact: 'yes' } } }], route: [{ destination: { host: 'dangerous' } }] },
          { match: [{ authority: { prefix: 'legacy.' } }], route: [{ destination: { host: 'legacy' } }] },
          { match: [{ scheme: { exact: 'https' } }], route: [{ destination: { host: 'secure' } }] },
          { match: [{ port: 9443 }], route: [{ destination: { host: 'tls-port' } }] },
          { match: [{ withoutHeaders: { 'x-internal': {} }, uri: { prefix: '/public' } }], route: [{ destination: { host: 'public' } }] },
          { match: [{ sourceNamespace: 'ops' }], route: [{ destination: { host: 'ops-only' } }] },
          { route: [{ destination: { host: 'reviews', subset: 'v1' } }] },
        ]),
      ],
    }),
  );
  const cases: Array<[string, RouteRequest, string]> = [
    ['prefix', req('/admin/users'), 'admin'],
    ['order beats specificity (Istio prefix is a plain string prefix)', req('/admin-tools'), 'admin'],
    ['ignoreUriCase', req('/cASE'), 'nocase'],
    ['regex is anchored', req('/r/12'), 'regex'],
    ['regex not matching a longer path', req('/r/12/x'), 'reviews'],
    ['header exact', req('/', { headers: { 'end-user': 'jason' } }), 'reviews'],
    ['header presence', req('/', { headers: { 'x-present': '' } }), 'present'],
    ['either match of a route: method', req('/', { method: 'DELETE' }), 'dangerous'],
    ['either match of a route: query', req('/?force=yes'), 'dangerous'],
    ['authority from host', req('/', { headers: { host: 'legacy.example.com' } }), 'legacy'],
    ['authority from :authority', req('/', { headers: { ':authority': 'legacy.example.com' } }), 'legacy'],
    ['scheme', req('/', { headers: { 'x-forwarded-proto': 'https' } }), 'secure'],
    ['port', req('/', { port: 9443 }), 'tls-port'],
    ['withoutHeaders absent', req('/public/a'), 'public'],
    ['withoutHeaders present', req('/public/a', { headers: { 'x-internal': '1' } }), 'reviews'],
    ['sourceNamespace', req('/', { source: { namespace: 'ops' } }), 'ops-only'],
    ['sourceNamespace fails closed without a source', req('/'), 'reviews'],
  ];
  for (const [name, r, want] of cases) assert.equal(winner(t.match(r)), want, name);

  const v2 = t.match(req('/', { headers: { 'end-user': 'jason' } }));
  assert.deepEqual(v2?.backends[0].subset, { name: 'v2', labels: { version: 'v2', track: 'canary' } });
  assert.equal(v2?.backends[0].hostname, `reviews.${NS}.svc.cluster.local`);
  assert.equal(v2?.backends[0].port, 9080, 'no destination port: the request port');
  const v1 = t.match(req('/anything'));
  assert.deepEqual(v1?.backends[0].subset, { name: 'v1', labels: { version: 'v1' } });
  assert.equal(v1?.route.kind, 'VirtualService');
  assert.equal(v1?.route.ruleIndex, 12);
  assert.equal(v1?.noBackendStatus, 503);
});

test('VirtualService subsets: unknown subset resolves to null labels; an FQDN DestinationRule host resolves too', () => {
  const t = compileRouteTable(
    config({
      destinationRules: [dr('fq', { host: `reviews.${NS}.svc.cluster.local`, subsets: [{ name: 'v3', labels: { version: 'v3' } }] })],
      virtualServices: [
        vs('reviews', [
          { match: [{ uri: { prefix: '/v3' } }], route: [{ destination: { host: 'reviews', subset: 'v3', port: { number: 9081 } } }] },
          { route: [{ destination: { host: 'reviews', subset: 'missing' } }] },
        ]),
      ],
    }),
  );
  const v3 = t.match(req('/v3'));
  assert.deepEqual(v3?.backends[0].subset, { name: 'v3', labels: { version: 'v3' } });
  assert.equal(v3?.backends[0].port, 9081);
  assert.deepEqual(t.match(req('/'))?.backends[0].subset, { name: 'missing', labels: null });
});

test('VirtualService weights, retries, timeout, fault, mirror, rewrite and headers', () => {
  const t = compileRouteTable(
    config({
      destinationRules: [subsetRule],
      virtualServices: [
        vs('reviews', [
          {
            match: [{ uri: { prefix: '/api' } }],
            route: [
              { destination: { host: 'reviews', subset: 'v1' }, weight: 75 },
              { destination: { host: 'reviews', subset: 'v2' }, weight: 25, headers: { request: { set: { 'x-canary': 'true' } } } },
            ],
            timeout: '1.5s',
            retries: { attempts: 4, perTryTimeout: '500ms', retryOn: '5xx,gateway-error,429' },
            fault: { delay: { fixedDelay: '2s', percentage: { value: 10 } }, abort: { httpStatus: 418 } },
            mirror: { host: 'shadow', port: { number: 80 } },
            mirrorPercentage: { value: 5 },
            rewrite: { uri: '/v2/api', authority: 'internal' },
            headers: { request: { add: { 'x-via': 'waypoint' }, remove: ['cookie'] }, response: { set: { 'cache-control': 'no-store' } } },
          },
          { match: [{ uri: { exact: '/grpc' } }], route: [{ destination: { host: 'reviews' } }], fault: { abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 50 } } }, retries: { attempts: 0 } },
          { match: [{ uri: { exact: '/old' } }], redirect: { uri: '/new', authority: 'example.com' } },
          { route: [{ destination: { host: 'reviews' } }], retries: { attempts: 3 } },
        ]),
      ],
    }),
  );
  const m = t.match(req('/api/x'));
  assert.ok(m);
  assert.deepEqual(m.backends.map((b) => [b.subset?.name, b.weight]), [['v1', 75], ['v2', 25]]);
  assert.deepEqual(m.backends[1].requestHeaders, { set: [{ name: 'x-canary', value: 'true' }], add: [], remove: [] });
  assert.deepEqual(m.timeouts, { requestMs: 1500, perTryTimeoutMs: 500 });
  assert.deepEqual(m.retry, { attempts: 4, perTryTimeoutMs: 500, retryOn: ['5xx', 'gateway-error', 'retriable-status-codes'], codes: [429] });
  assert.deepEqual(m.fault, { delay: { ms: 2000, percent: 10 }, abort: { status: 418, percent: 100 } });
  assert.deepEqual(m.filters.mirrors, [{ backend: { hostname: 'shadow.shop.svc.cluster.local', name: 'shadow', namespace: NS, port: 80, subset: undefined }, percent: 5 }]);
  assert.deepEqual(m.filters.rewrite, { hostname: 'internal', path: { type: 'ReplacePrefixMatch', prefix: '/api', value: '/v2/api' } });
  assert.deepEqual(m.filters.requestHeaders, { set: [], add: [{ name: 'x-via', value: 'waypoint' }], remove: ['cookie'] });
  assert.deepEqual(m.filters.responseHeaders, { set: [{ name: 'cache-control', value: 'no-store' }], add: [], remove: [] });

  const g = t.match(req('/grpc'));
  assert.deepEqual(g?.fault, { abort: { status: 200, grpcStatus: 14, percent: 50 } });
  assert.equal(g?.retry, undefined);

  const r = t.match(req('/old'));
  assert.deepEqual(r?.filters.redirect, { scheme: undefined, hostname: 'example.com', port: undefined, derivePort: undefined, path: { type: 'ReplaceFullPath', value: '/new' }, statusCode: 301 });
  assert.deepEqual(r?.backends, []);

  const d = t.match(req('/'));
  assert.deepEqual(d?.retry, {
    attempts: 3,
    perTryTimeoutMs: undefined,
    retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'],
    codes: [503],
  });
});

test('VirtualService 90/10 split picks within tolerance', () => {
  const t = compileRouteTable(
    config({
      destinationRules: [subsetRule],
      virtualServices: [vs('reviews', [{ route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 10 }] }])],
    }),
  );
  const m = t.match(req('/'));
  assert.ok(m);
  const random = seededRandom(2026);
  let v2 = 0;
  for (let i = 0; i < 10_000; i++) if (pickWeighted(m.backends, random)?.subset?.name === 'v2') v2++;
  assert.ok(Math.abs(v2 / 100 - 10) <= 2.5, `v2 got ${v2 / 100}%`);
});

test('HTTPRoutes win over VirtualServices for the same service', () => {
  const t = compileRouteTable(
    config({
      httpRoutes: [httpRoute('gw', [{ matches: [{ path: { type: 'PathPrefix', value: '/gw' } }], ...to('gateway-api') }])],
      virtualServices: [vs('reviews', [{ route: [{ destination: { host: 'istio' } }] }])],
    }),
  );
  assert.equal(winner(t.match(req('/gw'))), 'gateway-api');
  assert.equal(t.match(req('/elsewhere')), null, 'the VirtualService is not consulted at all');
});

// ---------------------------------------------------------------------------------------------
// Default route

test('no route at all: the service itself on the request port, weight 1', () => {
  const t = compileRouteTable(config({}));
  const m = t.match(req('/anything?x=1', { method: 'PATCH' }));
  assert.deepEqual(m, {
    route: { kind: 'Default', namespace: NS, name: 'reviews', ruleIndex: 0 },
    backends: [{ hostname: `reviews.${NS}.svc.cluster.local`, name: 'reviews', namespace: NS, port: 9080, weight: 1 }],
    filters: { mirrors: [] },
    timeouts: {},
    retry: { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], codes: [503] },
    noBackendStatus: 503,
  });
  assert.equal(pickWeighted(m.backends)?.name, 'reviews');
});

test("Istio's default retry policy applies where a route configures none; a retries block without attempts turns retries off", () => {
  const ISTIO_DEFAULT = { attempts: 2, retryOn: ['connect-failure', 'refused-stream', 'unavailable', 'cancelled', 'retriable-status-codes'], codes: [503] };
  const t = compileRouteTable(
    config({
      httpRoutes: [httpRoute('r', [{ matches: [{ path: { type: 'PathPrefix', value: '/gw' } }], ...to('reviews') }])],
      grpcRoutes: [grpcRoute('g', [to('reviews')])],
    }),
  );
  assert.deepEqual(t.match(req('/gw'))?.retry, ISTIO_DEFAULT, 'HTTPRoute rule without retry');
  assert.deepEqual(t.match(req('/pkg.S/M', { headers: { 'content-type': 'application/grpc' } }))?.retry, ISTIO_DEFAULT, 'GRPCRoute');
  const v = compileRouteTable(
    config({
      virtualServices: [
        vs('reviews', [
          { match: [{ uri: { prefix: '/plain' } }], route: [{ destination: { host: 'reviews' } }] },
          { match: [{ uri: { prefix: '/no-attempts' } }], route: [{ destination: { host: 'reviews' } }], retries: { retryOn: '5xx' } },
        ]),
      ],
    }),
  );
  assert.deepEqual(v.match(req('/plain'))?.retry, ISTIO_DEFAULT, 'VirtualService route without retries');
  assert.equal(v.match(req('/no-attempts'))?.retry, undefined, 'retries without attempts: off, as in Istio');
  const b = compileRouteTable(
    config({ virtualServices: [vs('reviews', [{ route: [{ destination: { host: 'reviews' } }], retries: { attempts: 3, backoff: '250ms', retryIgnorePreviousHosts: false } }])] }),
  );
  assert.deepEqual(b.match(req('/'))?.retry, { attempts: 3, perTryTimeoutMs: undefined, retryOn: ISTIO_DEFAULT.retryOn, codes: [503], backoffBaseMs: 250, retryPreviousHosts: true });
});

test('a VirtualService with no http routes leaves the default route in place', () => {
  const t = compileRouteTable(config({ virtualServices: [obj(ISTIO, 'VirtualService', 'empty', { hosts: ['reviews'] })] }));
  assert.equal(t.match(req('/'))?.route.kind, 'Default');
});

test('a custom cluster domain is taken from the service hostname', () => {
  const cfg = config({ virtualServices: [vs('reviews', [{ route: [{ destination: { host: 'ratings' } }] }])] });
  cfg.service.hostname = `reviews.${NS}.svc.corp.internal`;
  assert.equal(compileRouteTable(cfg).match(req('/'))?.backends[0].hostname, `ratings.${NS}.svc.corp.internal`);
});
