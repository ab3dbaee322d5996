import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AuthorizationPolicySpec } from '../../lib/api/kinds/security';
import { authorizeRequest, compilePolicy, type CompiledPolicy, type RequestAttributes } from '../../lib/policy/l7-authorize';
import { normalizePath } from '../../lib/policy/path-normalize';

// ---------------------------------------------------------------------------------------
// path normalization, table-driven
// ---------------------------------------------------------------------------------------

const NORMALIZE_OK: Array<[string, string]> = [
  ['/', '/'],
  ['/admin', '/admin'],
  ['/admin/', '/admin/'],
  ['//admin', '/admin'],
  ['///admin//x', '/admin/x'],
  ['/admin//', '/admin/'],
  ['/%61dmin', '/admin'],
  ['/%41DMIN', '/ADMIN'],
  ['/ADMIN', '/ADMIN'],
  ['/x/../admin', '/admin'],
  ['/x/y/../../admin', '/admin'],
  ['/../admin', '/admin'],
  ['/../../../admin', '/admin'],
  ['/./admin', '/admin'],
  ['/admin/.', '/admin/'],
  ['/admin/x/..', '/admin/'],
  ['/admin/..', '/'],
  ['/..', '/'],
  ['/admin#x', '/admin'],
  ['/admin?x=1', '/admin'],
  ['/admin?x=/../y#z', '/admin'],
  ['/admin#?x', '/admin'],
  ['/%2e%2e/admin', '/admin'],
  ['/x/%2E%2E/admin', '/admin'],
  ['/%2e/admin', '/admin'],
  ['/x/..%2fadmin', '/admin'],
  ['/x%2F..%2Fadmin', '/admin'],
  ['%2Fadmin', '/admin'],
  ['/admin%2f', '/admin/'],
  ['/admin%2Fx', '/admin/x'],
  ['/%5cadmin', '/admin'],
  ['/x%5C..%5Cadmin', '/admin'],
  ['\\admin', '/admin'],
  ['/x\\..\\admin', '/admin'],
  ['/a%7eb%5fc%2dd', '/a~b_c-d'],
  ['/a%3ab', '/a%3Ab'],
  ['/a%3Ab', '/a%3Ab'],
  // %25 stays encoded: decoding twice is the backend's business, not a way past us.
  ['/%252e%252e/admin', '/%252e%252e/admin'],
  ['/%2a%3c', '/%2A%3C'],
  ['/%25', '/%25'],
  ['/a%20b', '/a%20b'],
  ['/a;b=c', '/a;b=c'],
  ['/...', '/...'],
  ['/.hidden', '/.hidden'],
  ['/a/.b/..c', '/a/.b/..c'],
];

const NORMALIZE_BAD: Array<[string, string]> = [
  ['', 'must start with'],
  ['admin', 'must start with'],
  ['*', 'must start with'],
  ['%2e', 'must start with'],
  ['/%zz', 'percent-encoding'],
  ['/%4', 'percent-encoding'],
  ['/%', 'percent-encoding'],
  ['/a%g1', 'percent-encoding'],
  ['/a%00', 'control'],
  ['/a%0d%0a', 'control'],
  ['/a%7F', 'control'],
  ['/a\u0000', 'control'],
  ['/a\r\nx', 'control'],
  ['/a\tb', 'control'],
  ['/a b', 'space'],
  ['/caf\u00e9', 'non-ASCII'],
];

for (const [raw, want] of NORMALIZE_OK) {
  test(`normalizePath(${JSON.stringify(raw)}) = ${want}`, () => {
    assert.deepEqual(normalizePath(raw), { ok: true, path: want });
  });
}

for (const [raw, why] of NORMALIZE_BAD) {
  test(`normalizePath(${JSON.stringify(raw)}) is refused (${why})`, () => {
    const r = normalizePath(raw);
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, new RegExp(why));
  });
}

test('normalizePath is idempotent on everything it accepts', () => {
  for (const [raw] of NORMALIZE_OK) {
    const once = normalizePath(raw);
    assert.ok(once.ok);
    if (once.ok) assert.deepEqual(normalizePath(once.path), once, raw);
  }
});

// ---------------------------------------------------------------------------------------
// L7 authorization
// ---------------------------------------------------------------------------------------

const ALICE = 'cluster.local/ns/shop/sa/alice';
const BOB = 'cluster.local/ns/shop/sa/bob';

function req(over: Partial<RequestAttributes> = {}): RequestAttributes {
  return {
    principal: ALICE,
    namespace: 'shop',
    sourceIp: '10.1.0.5',
    remoteIp: '10.1.0.5',
    requestPrincipal: null,
    requestAuthClaims: null,
    requestAudiences: [],
    method: 'GET',
    host: 'web.shop.svc.cluster.local',
    port: 8080,
    path: '/',
    headers: {},
    destinationIp: '10.96.0.10',
    ...over,
  };
}

function pol(name: string, spec: Partial<AuthorizationPolicySpec> & { action?: AuthorizationPolicySpec['action'] }): CompiledPolicy {
  return compilePolicy({ namespace: 'shop', name, spec: { action: 'ALLOW', ...spec } as AuthorizationPolicySpec });
}

function allowed(policies: CompiledPolicy[], over: Partial<RequestAttributes>): boolean {
  return authorizeRequest(policies, req(over)).allowed;
}

const denyAdmin = pol('deny-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }] });

const ADMIN_BYPASSES = [
  '/admin',
  '/admin/',
  '/admin/x',
  '//admin',
  '///admin',
  '/%61dmin',
  '/%61%64%6d%69%6e',
  '/x/../admin',
  '/../admin',
  '/admin#x',
  '/admin?x=1',
  '/./admin',
  '/admin/.',
  '/admin//',
  '/admin/x/..',
  '/%2e/admin',
  '/x/%2e%2e/admin',
  '/x/..%2fadmin',
  '/x%2f..%2fadmin',
  '/admin%2f',
  '/admin%2Fsecret',
  '\\admin',
  '/x\\..\\admin',
  '/%5cadmin',
  '//admin//x',
];

for (const path of ADMIN_BYPASSES) {
  test(`DENY on /admin catches ${JSON.stringify(path)}`, () => {
    const d = authorizeRequest([denyAdmin], req({ path }));
    assert.equal(d.allowed, false, `normalized to ${d.normalizedPath}`);
    assert.equal(d.policy, 'shop/deny-admin');
    assert.equal(d.badRequest, undefined);
  });
}

test('DENY on /admin leaves other paths alone, and paths stay case-sensitive', () => {
  for (const path of ['/', '/administrator', '/ADMIN', '/x/admin', '/%252e%252e/admin', '/adm']) {
    assert.equal(allowed([denyAdmin], { path }), true, path);
  }
});

test('an invalid path is refused as a bad request even with no policy at all', () => {
  for (const path of ['/%zz', '/admin%', '/a%00', '/a\u0001', '/a b', '']) {
    const d = authorizeRequest([], req({ path }));
    assert.equal(d.allowed, false, path);
    assert.equal(d.badRequest, true, path);
    assert.match(d.reason, /invalid request path/);
  }
});

test('an invalid percent-encoding cannot slip past a DENY', () => {
  const d = authorizeRequest([denyAdmin], req({ path: '/%6zadmin' }));
  assert.equal(d.allowed, false);
  assert.equal(d.badRequest, true);
});

test('exact "/admin" alone does not cover "/admin/" (Istio semantics)', () => {
  const exactOnly = pol('d', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin'] } }] }] });
  assert.equal(allowed([exactOnly], { path: '//admin' }), false);
  assert.equal(allowed([exactOnly], { path: '/admin/' }), true);
});

test('suffix and presence path matches use the normalized path', () => {
  const p = pol('d', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['*.php'] } }] }] });
  assert.equal(allowed([p], { path: '/x/index%2ephp' }), false);
  assert.equal(allowed([p], { path: '/x/index.php?a=b' }), false);
  assert.equal(allowed([p], { path: '/x/index.html' }), true);
  const any = pol('a', { rules: [{ to: [{ operation: { paths: ['*'] } }] }] });
  assert.equal(allowed([any], { path: '/' }), true);
});

test('an ALLOW for one principal refuses another, and a caller without identity', () => {
  const p = pol('alice-only', { rules: [{ from: [{ source: { principals: [ALICE] } }] }] });
  assert.equal(allowed([p], { principal: ALICE }), true);
  const d = authorizeRequest([p], req({ principal: BOB }));
  assert.equal(d.allowed, false);
  assert.match(d.reason, /no ALLOW policy matched/);
  assert.equal(allowed([p], { principal: null, namespace: null }), false);
});

test('principal prefix/suffix/presence', () => {
  const prefix = pol('p', { rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/*'] } }] }] });
  assert.equal(allowed([prefix], { principal: BOB }), true);
  assert.equal(allowed([prefix], { principal: 'cluster.local/ns/other/sa/x' }), false);
  const suffix = pol('s', { rules: [{ from: [{ source: { principals: ['*/sa/bob'] } }] }] });
  assert.equal(allowed([suffix], { principal: BOB }), true);
  assert.equal(allowed([suffix], { principal: ALICE }), false);
  const presence = pol('any', { rules: [{ from: [{ source: { principals: ['*'] } }] }] });
  assert.equal(allowed([presence], { principal: BOB }), true);
  assert.equal(allowed([presence], { principal: null }), false);
});

test('notPrincipals ["*"] in a DENY catches exactly the unauthenticated', () => {
  const p = pol('d', { action: 'DENY', rules: [{ from: [{ source: { notPrincipals: ['*'] } }] }] });
  assert.equal(allowed([p], { principal: null }), false);
  assert.equal(allowed([p], { principal: ALICE }), true);
});

test('namespaces and notNamespaces', () => {
  const p = pol('ns', { rules: [{ from: [{ source: { namespaces: ['shop'], notNamespaces: ['shop-test'] } }] }] });
  assert.equal(allowed([p], { namespace: 'shop' }), true);
  assert.equal(allowed([p], { namespace: 'other' }), false);
  assert.equal(allowed([p], { namespace: null }), false);
  const n = pol('not', { rules: [{ from: [{ source: { notNamespaces: ['evil'] } }] }] });
  assert.equal(allowed([n], { namespace: 'evil' }), false);
  assert.equal(allowed([n], { namespace: null }), true);
});

test('methods are exact and case-sensitive', () => {
  const p = pol('get', { rules: [{ to: [{ operation: { methods: ['GET'] } }] }] });
  assert.equal(allowed([p], { method: 'GET' }), true);
  assert.equal(allowed([p], { method: 'get' }), false);
  assert.equal(allowed([p], { method: 'Get' }), false);
  assert.equal(allowed([p], { method: 'POST' }), false);
  const d = pol('d', { action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] });
  assert.equal(allowed([d], { method: 'DELETE' }), false);
  assert.equal(allowed([d], { method: 'delete' }), true);
});

test('notMethods and notPaths', () => {
  const p = pol('ro', { rules: [{ to: [{ operation: { notMethods: ['POST', 'PUT', 'DELETE'], notPaths: ['/internal/*'] } }] }] });
  assert.equal(allowed([p], { method: 'GET', path: '/x' }), true);
  assert.equal(allowed([p], { method: 'POST', path: '/x' }), false);
  assert.equal(allowed([p], { method: 'GET', path: '/internal/x' }), false);
  assert.equal(allowed([p], { method: 'GET', path: '//internal/./x' }), false);
  assert.equal(allowed([p], { method: 'GET', path: '/public/../internal/x' }), false);
  // A DENY on everything but /healthz must not be dodged by spelling /admin differently...
  const d = pol('d', { action: 'DENY', rules: [{ to: [{ operation: { notPaths: ['/healthz'] } }] }] });
  assert.equal(allowed([d], { path: '/healthz' }), true);
  assert.equal(allowed([d], { path: '/%68ealthz' }), true);
  assert.equal(allowed([d], { path: '/healthz/../admin' }), false);
});

test('hosts are case-insensitive and match with or without the port', () => {
  const p = pol('h', { rules: [{ to: [{ operation: { hosts: ['web.shop.svc.cluster.local', 'Web'] } }] }] });
  for (const host of ['web.shop.svc.cluster.local', 'WEB.Shop.svc.cluster.local', 'web.shop.svc.cluster.local:8080', 'web', 'WEB:80', 'web.']) {
    assert.equal(allowed([p], { host }), true, host);
  }
  for (const host of ['other', 'web.other', 'web:80x', 'webx:80']) {
    assert.equal(allowed([p], { host }), false, host);
  }
  const withPort = pol('hp', { rules: [{ to: [{ operation: { hosts: ['web:8080'] } }] }] });
  assert.equal(allowed([withPort], { host: 'web:8080' }), true);
  assert.equal(allowed([withPort], { host: 'WEB:8080' }), true);
  assert.equal(allowed([withPort], { host: 'web:9090' }), false);
  assert.equal(allowed([withPort], { host: 'web' }), false);
  const suffix = pol('hs', { rules: [{ to: [{ operation: { hosts: ['*.example.com'] } }] }] });
  assert.equal(allowed([suffix], { host: 'API.example.COM:443' }), true);
  const v6 = pol('v6', { rules: [{ to: [{ operation: { hosts: ['[::1]'] } }] }] });
  assert.equal(allowed([v6], { host: '[::1]:8080' }), true);
});

test('a DENY on a host cannot be dodged by case, port or trailing dot', () => {
  const d = pol('d', { action: 'DENY', rules: [{ to: [{ operation: { hosts: ['admin.shop.svc.cluster.local'] } }] }] });
  for (const host of ['ADMIN.shop.svc.cluster.local', 'admin.shop.svc.cluster.local:80', 'admin.shop.svc.cluster.local.', 'Admin.Shop.Svc.Cluster.Local.:8080']) {
    assert.equal(allowed([d], { host }), false, host);
  }
  const nh = pol('nh', { action: 'DENY', rules: [{ to: [{ operation: { notHosts: ['web'] } }] }] });
  // notHosts compares the authority exactly as sent (case aside), as Istio does: adding a port or
  // a trailing dot does not take a request out of the DENY.
  assert.equal(allowed([nh], { host: 'WEB' }), true);
  assert.equal(allowed([nh], { host: 'WEB:80' }), false);
  assert.equal(allowed([nh], { host: 'web.' }), false);
  assert.equal(allowed([nh], { host: 'evil' }), false);
  const nhPort = pol('nhp', { action: 'DENY', rules: [{ to: [{ operation: { notHosts: ['web', 'web:*'] } }] }] });
  assert.equal(allowed([nhPort], { host: 'web:8080' }), true, 'the Istio idiom for "any port" works');
});

test('ports and notPorts compare as numbers', () => {
  const p = pol('p', { rules: [{ to: [{ operation: { ports: ['8080'], notPorts: ['9090'] } }] }] });
  assert.equal(allowed([p], { port: 8080 }), true);
  assert.equal(allowed([p], { port: 80 }), false);
  const n = pol('n', { rules: [{ to: [{ operation: { notPorts: ['9090'] } }] }] });
  assert.equal(allowed([n], { port: 9090 }), false);
  assert.equal(allowed([n], { port: 8080 }), true);
});

test('ipBlocks, notIpBlocks and remoteIpBlocks', () => {
  const p = pol('ip', { rules: [{ from: [{ source: { ipBlocks: ['10.1.0.0/16', '192.168.1.7'], notIpBlocks: ['10.1.9.0/24'] } }] }] });
  assert.equal(allowed([p], { sourceIp: '10.1.0.5' }), true);
  assert.equal(allowed([p], { sourceIp: '192.168.1.7' }), true);
  assert.equal(allowed([p], { sourceIp: '192.168.1.8' }), false);
  assert.equal(allowed([p], { sourceIp: '10.1.9.3' }), false);
  assert.equal(allowed([p], { sourceIp: '10.2.0.5' }), false);
  // Node reports IPv4 peers on dual-stack sockets in mapped form.
  assert.equal(allowed([p], { sourceIp: '::ffff:10.1.0.5' }), true);
  assert.equal(allowed([p], { sourceIp: 'not-an-ip' }), false);
  const v6 = pol('v6', { rules: [{ from: [{ source: { ipBlocks: ['fd00::/8'] } }] }] });
  assert.equal(allowed([v6], { sourceIp: 'fd00::1' }), true);
  assert.equal(allowed([v6], { sourceIp: '10.1.0.5' }), false);
  const r = pol('r', { rules: [{ from: [{ source: { remoteIpBlocks: ['203.0.113.0/24'] } }] }] });
  assert.equal(allowed([r], { remoteIp: '203.0.113.9', sourceIp: '10.1.0.5' }), true);
  assert.equal(allowed([r], { remoteIp: '10.1.0.5', sourceIp: '203.0.113.9' }), false);
  const d = pol('d', { action: 'DENY', rules: [{ from: [{ source: { notRemoteIpBlocks: ['10.0.0.0/8'] } }] }] });
  assert.equal(allowed([d], { remoteIp: '8.8.8.8' }), false);
  assert.equal(allowed([d], { remoteIp: '10.3.3.3' }), true);
});

test('requestPrincipals with and without a token', () => {
  const p = pol('jwt', { rules: [{ from: [{ source: { requestPrincipals: ['https://issuer.example/*'] } }] }] });
  assert.equal(allowed([p], { requestPrincipal: 'https://issuer.example/alice' }), true);
  assert.equal(allowed([p], { requestPrincipal: 'https://other.example/alice' }), false);
  assert.equal(allowed([p], { requestPrincipal: null }), false);
  const any = pol('any-jwt', { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }] });
  assert.equal(allowed([any], { requestPrincipal: null }), false);
  assert.equal(allowed([any], { requestPrincipal: 'iss/sub' }), true);
  const requireJwt = pol('require', { action: 'DENY', rules: [{ from: [{ source: { notRequestPrincipals: ['*'] } }] }] });
  assert.equal(allowed([requireJwt], { requestPrincipal: null }), false);
  assert.equal(allowed([requireJwt], { requestPrincipal: 'iss/sub' }), true);
});

test('when: request headers, any of several values, notValues, missing header', () => {
  const p = pol('hdr', { rules: [{ when: [{ key: 'request.headers[X-Tenant]', values: ['acme', 'beta-*'] }] }] });
  assert.equal(allowed([p], { headers: { 'x-tenant': 'acme' } }), true);
  assert.equal(allowed([p], { headers: { 'x-tenant': 'beta-1' } }), true);
  assert.equal(allowed([p], { headers: { 'x-tenant': 'Acme' } }), false);
  assert.equal(allowed([p], { headers: { 'x-tenant': ['other', 'acme'] } }), true);
  assert.equal(allowed([p], { headers: {} }), false);
  const n = pol('d', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-debug]', notValues: ['off'] }] }] });
  assert.equal(allowed([n], { headers: { 'x-debug': 'on' } }), false);
  assert.equal(allowed([n], { headers: { 'x-debug': 'off' } }), true);
  assert.equal(allowed([n], { headers: {} }), false);
  const presence = pol('pr', { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-internal]', values: ['*'] }] }] });
  assert.equal(allowed([presence], { headers: { 'x-internal': '1' } }), false);
  assert.equal(allowed([presence], { headers: {} }), true);
});

test('when: JWT claims, nested and arrays', () => {
  const claims = {
    iss: 'https://issuer.example',
    groups: ['dev', 'admin'],
    realm_access: { roles: ['reader'], level: 'gold' },
    n: 5,
  };
  const groups = pol('g', { rules: [{ when: [{ key: 'request.auth.claims[groups]', values: ['admin'] }] }] });
  assert.equal(allowed([groups], { requestAuthClaims: claims }), true);
  assert.equal(allowed([groups], { requestAuthClaims: { groups: ['dev'] } }), false);
  assert.equal(allowed([groups], { requestAuthClaims: { groups: 'admin' } }), true);
  assert.equal(allowed([groups], { requestAuthClaims: null }), false);
  const nested = pol('n', { rules: [{ when: [{ key: 'request.auth.claims[realm_access][roles]', values: ['reader'] }] }] });
  assert.equal(allowed([nested], { requestAuthClaims: claims }), true);
  assert.equal(allowed([nested], { requestAuthClaims: { realm_access: { roles: ['writer'] } } }), false);
  assert.equal(allowed([nested], { requestAuthClaims: { realm_access: 'reader' } }), false);
  const level = pol('l', { rules: [{ when: [{ key: 'request.auth.claims[realm_access][level]', values: ['gold'] }] }] });
  assert.equal(allowed([level], { requestAuthClaims: claims }), true);
  // Claims that are neither strings nor lists of strings match nothing.
  const num = pol('num', { rules: [{ when: [{ key: 'request.auth.claims[n]', values: ['5'] }] }] });
  assert.equal(allowed([num], { requestAuthClaims: claims }), false);
  // Inherited object properties are not claims.
  const proto = pol('proto', { rules: [{ when: [{ key: 'request.auth.claims[constructor]', values: ['*'] }] }] });
  assert.equal(allowed([proto], { requestAuthClaims: claims }), false);
  const notAdmin = pol('d', { action: 'DENY', rules: [{ when: [{ key: 'request.auth.claims[groups]', notValues: ['admin'] }] }] });
  assert.equal(allowed([notAdmin], { requestAuthClaims: claims }), true);
  assert.equal(allowed([notAdmin], { requestAuthClaims: { groups: ['dev'] } }), false);
  assert.equal(allowed([notAdmin], { requestAuthClaims: null }), false);
  // scope and permission are space-delimited strings, matched word by word (as Istio does).
  const denyScope = pol('ds', { action: 'DENY', rules: [{ when: [{ key: 'request.auth.claims[scope]', values: ['admin'] }] }] });
  assert.equal(allowed([denyScope], { requestAuthClaims: { scope: 'read admin' } }), false);
  assert.equal(allowed([denyScope], { requestAuthClaims: { scope: 'read administer' } }), true);
  const allowPerm = pol('ap', { rules: [{ when: [{ key: 'request.auth.claims[permission]', values: ['read'] }] }] });
  assert.equal(allowed([allowPerm], { requestAuthClaims: { permission: 'read write' } }), true);
  const other = pol('o', { rules: [{ when: [{ key: 'request.auth.claims[role]', values: ['admin'] }] }] });
  assert.equal(allowed([other], { requestAuthClaims: { role: 'read admin' } }), false, 'other claims are not split');
});

test('when on request.headers[:authority], [host], [:method] and [:path] reads the request itself', () => {
  const cases: Array<[string, string[], Partial<RequestAttributes>, Partial<RequestAttributes>]> = [
    ['request.headers[:authority]', ['admin*'], { host: 'admin.example:8080' }, { host: 'www.example' }],
    ['request.headers[host]', ['admin.example'], { host: 'admin.example' }, { host: 'www.example' }],
    ['request.headers[:method]', ['DELETE'], { method: 'DELETE' }, { method: 'GET' }],
    ['request.headers[:path]', ['/admin*'], { path: '//admin/../admin/x?y=1' }, { path: '/public' }],
    ['request.headers[:path]', ['/a?q=1'], { path: '/a?q=1#frag' }, { path: '/a?q=2' }],
  ];
  for (const [key, values, hit, miss] of cases) {
    const d = pol('d', { action: 'DENY', rules: [{ when: [{ key, values }] }] });
    assert.equal(allowed([d], hit), false, `${key} ${JSON.stringify(hit)}`);
    assert.equal(allowed([d], miss), true, `${key} ${JSON.stringify(miss)}`);
  }
});

test('when: request.auth principal, audiences, presenter', () => {
  const p = pol('a', {
    rules: [{
      when: [
        { key: 'request.auth.principal', values: ['iss/alice'] },
        { key: 'request.auth.audiences', values: ['api'] },
        { key: 'request.auth.presenter', values: ['frontend*'] },
      ],
    }],
  });
  const ok = { requestPrincipal: 'iss/alice', requestAudiences: ['web', 'api'], presenter: 'frontend-1' };
  assert.equal(allowed([p], ok), true);
  assert.equal(allowed([p], { ...ok, requestAudiences: ['web'] }), false);
  assert.equal(allowed([p], { ...ok, presenter: undefined }), false);
  assert.equal(allowed([p], { ...ok, requestPrincipal: 'iss/bob' }), false);
});

test('when: source and destination attributes, sni', () => {
  const p = pol('w', {
    rules: [{
      when: [
        { key: 'source.ip', values: ['10.1.0.0/16'] },
        { key: 'remote.ip', notValues: ['10.1.0.9'] },
        { key: 'source.namespace', values: ['shop'] },
        { key: 'source.principal', values: ['*/sa/alice'] },
        { key: 'destination.ip', values: ['10.96.0.0/12'] },
        { key: 'destination.port', values: ['8080'] },
      ],
    }],
  });
  assert.equal(allowed([p], {}), true);
  assert.equal(allowed([p], { sourceIp: '10.2.0.1' }), false);
  assert.equal(allowed([p], { remoteIp: '10.1.0.9' }), false);
  assert.equal(allowed([p], { namespace: 'other' }), false);
  assert.equal(allowed([p], { principal: BOB }), false);
  assert.equal(allowed([p], { destinationIp: '10.200.0.1' }), false);
  assert.equal(allowed([p], { port: 80 }), false);
  const sni = pol('sni', { rules: [{ when: [{ key: 'connection.sni', values: ['*.shop.svc.cluster.local'] }] }] });
  assert.equal(allowed([sni], { sni: 'web.shop.svc.cluster.local' }), true);
  assert.equal(allowed([sni], {}), false);
});

test('rule structure: sources OR, operations OR, fields and conditions AND', () => {
  const p = pol('s', {
    rules: [{
      from: [{ source: { principals: [ALICE] } }, { source: { namespaces: ['ops'] } }],
      to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }, { operation: { methods: ['POST'], paths: ['/api/write'] } }],
      when: [{ key: 'request.headers[x-a]', values: ['1'] }, { key: 'request.headers[x-b]', values: ['2'] }],
    }],
  });
  const h = { 'x-a': '1', 'x-b': '2' };
  assert.equal(allowed([p], { path: '/api/x', headers: h }), true);
  assert.equal(allowed([p], { principal: BOB, namespace: 'ops', path: '/api/x', headers: h }), true);
  assert.equal(allowed([p], { principal: BOB, namespace: 'shop', path: '/api/x', headers: h }), false);
  assert.equal(allowed([p], { method: 'POST', path: '/api/write', headers: h }), true);
  assert.equal(allowed([p], { method: 'POST', path: '/api/x', headers: h }), false);
  assert.equal(allowed([p], { path: '/api/x', headers: { 'x-a': '1' } }), false);
});

test('empty rules: an ALLOW without rules denies all, rules [{}] allows all, a DENY without rules never matches', () => {
  assert.equal(allowed([pol('none', {})], {}), false);
  assert.equal(allowed([pol('none', { rules: [] })], {}), false);
  assert.equal(allowed([pol('all', { rules: [{}] })], {}), true);
  assert.equal(allowed([pol('d', { action: 'DENY' })], {}), true);
  assert.equal(allowed([pol('d', { action: 'DENY', rules: [{}] })], {}), false);
});

test('DENY is evaluated before ALLOW regardless of order', () => {
  const allowAll = pol('allow-all', { rules: [{}] });
  for (const order of [[allowAll, denyAdmin], [denyAdmin, allowAll]]) {
    const d = authorizeRequest(order, req({ path: '//admin' }));
    assert.equal(d.allowed, false);
    assert.equal(d.policy, 'shop/deny-admin');
    const ok = authorizeRequest(order, req({ path: '/x' }));
    assert.equal(ok.allowed, true);
    assert.equal(ok.policy, 'shop/allow-all');
  }
});

test('no policy allows; any ALLOW policy makes matching one mandatory', () => {
  assert.deepEqual(authorizeRequest([], req()), { allowed: true, reason: 'no ALLOW policy applies', audited: [], normalizedPath: '/' });
  const a = pol('a', { rules: [{ from: [{ source: { principals: [BOB] } }] }] });
  const b = pol('b', { rules: [{ to: [{ operation: { paths: ['/public/*'] } }] }] });
  assert.equal(allowed([a, b], { path: '/public/x' }), true);
  assert.equal(allowed([a, b], { principal: BOB }), true);
  const d = authorizeRequest([a, b], req());
  assert.equal(d.allowed, false);
  assert.match(d.reason, /2 apply/);
});

test('AUDIT never changes the decision; it only records', () => {
  const audit = pol('audit-admin', { action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }] });
  const allowAlice = pol('alice', { rules: [{ from: [{ source: { principals: [ALICE] } }] }] });
  let d = authorizeRequest([audit], req({ path: '/%61dmin' }));
  assert.equal(d.allowed, true);
  assert.deepEqual(d.audited, ['shop/audit-admin']);
  d = authorizeRequest([audit, allowAlice], req({ path: '/admin', principal: BOB }));
  assert.equal(d.allowed, false);
  assert.deepEqual(d.audited, ['shop/audit-admin']);
  d = authorizeRequest([audit, allowAlice], req({ path: '/x' }));
  assert.equal(d.allowed, true);
  assert.deepEqual(d.audited, []);
  // AUDIT alone does not count as an ALLOW policy.
  assert.equal(authorizeRequest([audit], req({ path: '/x' })).reason, 'no ALLOW policy applies');
});

test('compilePolicy refuses what validation should have refused', () => {
  assert.throws(() => pol('bad', { rules: [{ when: [{ key: 'request.bogus', values: ['x'] }] }] }), /unsupported when key/);
  assert.throws(() => pol('bad', { rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/99'] } }] }] }), /prefix length/);
  assert.throws(() => pol('bad', { rules: [{ from: [{ source: { ipBlocks: ['nope'] } }] }] }), /not an IP/);
});

test('a policy arriving as JSON (the waypoint config) compiles the same', () => {
  const spec = JSON.parse(JSON.stringify({ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }] })) as AuthorizationPolicySpec;
  const p = compilePolicy({ namespace: 'shop', name: 'json', spec });
  assert.equal(authorizeRequest([p], req({ path: '/x/..%2Fadmin' })).allowed, false);
});
