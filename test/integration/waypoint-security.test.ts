import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from 'jose';
import {
  buildSnapshot, h1Request, h2Request, hostOf, identityOf, ISTIO, obj, rawExchange, rawObj, SECURITY, serviceConfig, startBackend, startHarness, startTcpBackend,
  type Backend, type BackendRequest, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';

const api: ServiceDef = { name: 'api', vip: '10.96.1.1', ports: [80] };
const tcpSvc: ServiceDef = { name: 'db', vip: '10.96.1.2', ports: [5432] };
const host = hostOf('api');
const mesh = buildSnapshot(
  [api, tcpSvc],
  [
    { name: 'api-1', ip: '10.0.2.1', services: { [host]: [{ servicePort: 80, targetPort: 8080 }] } },
    { name: 'db-1', ip: '10.0.2.2', services: { [hostOf('db')]: [{ servicePort: 5432, targetPort: 5432 }] } },
  ],
);
const ISS = 'https://issuer.test';

let h: Harness;
let backend: Backend;
let tcpBackend: { port: number; close(): Promise<void> };
const seenPaths: string[] = [];
let key: { priv: KeyLike; jwk: JWK };
let other: { priv: KeyLike; jwk: JWK };
let jwksServer: http.Server;
let jwksUrl: string;

async function token(claims: Record<string, unknown>, signer = key, expSec = 3600): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: 'alice', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(ISS)
    .setIssuedAt(now - 10)
    .setExpirationTime(now + expSec)
    .sign(signer.priv);
}

function apply(parts: Parameters<typeof serviceConfig>[1], dbParts: Parameters<typeof serviceConfig>[1] = {}) {
  return h.engine.update(mesh, new Map([['l7/shop/api', serviceConfig(api, parts)], ['l7/shop/db', serviceConfig(tcpSvc, dbParts)]]));
}

const policy = (name: string, spec: object) => obj(SECURITY, 'AuthorizationPolicy', name, { targetRefs: [{ kind: 'Service', group: '', name: 'api' }], ...spec });

before(async () => {
  h = await startHarness();
  backend = await startBackend('api-1', (req: BackendRequest, res) => {
    seenPaths.push(String(req.url));
    req.resume();
    req.on('end', () => res.end(`ok ${req.url}`));
  });
  h.connector.ports.set('api-1', backend.port);
  tcpBackend = await startTcpBackend((s) => s.pipe(s));
  h.connector.ports.set('db-1', tcpBackend.port);
  const mk = async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    return { priv: privateKey, jwk: { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' } };
  };
  key = await mk();
  other = await mk();
  jwksServer = http.createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: [key.jwk] }));
  });
  await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', () => r()));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as net.AddressInfo).port}/jwks`;
});

after(async () => {
  await h.close();
  await backend.close();
  await tcpBackend.close();
  await new Promise<void>((r) => jwksServer.close(() => r()));
});

test('DENY on /admin holds against path tricks sent over raw sockets', async () => {
  assert.deepEqual(apply({ authorizationPolicies: [policy('deny-admin', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin', '/admin/*'] } }] }] })] }), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  seenPaths.length = 0;
  for (const target of ['/admin', '//admin', '/%61dmin', '/x/../admin', '/admin#x', '/admin/', '/./admin', '/admin%2Fx', '/x/%2e%2e/admin', '/admin/..;/admin']) {
    const r = await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`);
    const status = Number(r.text.slice(9, 12));
    assert.ok(status === 403 || status === 400, `${target} answered ${status}`);
    if (status === 403) assert.match(r.text, /RBAC: access denied$/);
  }
  assert.deepEqual(seenPaths.filter((p) => /admin/i.test(p)), [], 'no admin request reached the backend');
  // Paths are case-sensitive, as in Istio: /ADMIN is another path (and reaches the backend as such).
  const upper = await rawExchange(port, 'GET /ADMIN HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
  assert.match(upper.text, /^HTTP\/1\.1 200/);
  const ok = await rawExchange(port, 'GET /public HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
  assert.match(ok.text, /^HTTP\/1\.1 200/);
});

test('ALLOW for one principal refuses another', async () => {
  assert.deepEqual(apply({ authorizationPolicies: [policy('allow-frontend', { action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/shop/sa/frontend'] } }] }] })] }), []);
  const good = await h.tunnel({ authority: '10.96.1.1:80', peerIdentity: identityOf('frontend') });
  const bad = await h.tunnel({ authority: '10.96.1.1:80', peerIdentity: identityOf('intruder') });
  const anon = await h.tunnel({ authority: '10.96.1.1:80', peerIdentity: null });
  assert.equal((await h1Request(good)).status, 200);
  const r = await h1Request(bad);
  assert.equal(r.status, 403);
  assert.equal(r.body, 'RBAC: access denied');
  assert.equal((await h1Request(anon)).status, 403);
});

test('JWT: invalid tokens are 401; no token is refused only where a policy requires a request principal', async () => {
  const ra = obj(SECURITY, 'RequestAuthentication', 'jwt', { targetRefs: [{ kind: 'Service', group: '', name: 'api' }], jwtRules: [{ issuer: ISS, jwks: JSON.stringify({ keys: [key.jwk] }), audiences: ['api'] }] });
  const requireJwt = policy('require-jwt', { action: 'ALLOW', rules: [{ from: [{ source: { requestPrincipals: ['*'] } }], to: [{ operation: { paths: ['/private'] } }] }, { to: [{ operation: { paths: ['/public'] } }] }] });
  assert.deepEqual(apply({ requestAuthentications: [ra], authorizationPolicies: [requireJwt] }), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  assert.equal((await h1Request(port, { path: '/public' })).status, 200, 'no token where none is required');
  assert.equal((await h1Request(port, { path: '/private' })).status, 403, 'no token where one is required');
  assert.equal((await h1Request(port, { path: '/private', headers: bearer(await token({ aud: 'api' })) })).status, 200, 'valid token');
  assert.equal((await h1Request(port, { path: '/private', headers: bearer(await token({ aud: 'api' }, other)) })).status, 401, 'bad signature');
  assert.equal((await h1Request(port, { path: '/private', headers: bearer(await token({ aud: 'api' }, key, -3600)) })).status, 401, 'expired');
  assert.equal((await h1Request(port, { path: '/private', headers: bearer(await token({ aud: 'other' })) })).status, 401, 'wrong audience');
  assert.equal((await h1Request(port, { path: '/public', headers: bearer('not-a-jwt') })).status, 401, 'garbage token is refused even where none is required');
});

test('empty lines before a request line do not turn HTTP into opaque TCP; a port declared HTTP never passes bytes through unparsed', async () => {
  const ra = obj(SECURITY, 'RequestAuthentication', 'jwt', { targetRefs: [{ kind: 'Service', group: '', name: 'api' }], jwtRules: [{ issuer: ISS, jwks: JSON.stringify({ keys: [key.jwk] }), outputClaimToHeaders: [{ header: 'x-sub', claim: 'sub' }] }] });
  const forged = 'GET /whoami HTTP/1.1\r\nHost: api\r\nx-sub: admin\r\nAuthorization: Bearer forged.token.here\r\nConnection: close\r\n\r\n';
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  for (const declared of [undefined, 'http']) {
    const cfg = serviceConfig(declared ? { ...api, appProtocols: { 80: declared } } : api, { requestAuthentications: [ra] });
    assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/api', cfg]])), []);
    seenPaths.length = 0;
    for (const prefix of ['', '\r\n', '\r\n\r\n', '\n']) {
      const r = await rawExchange(port, prefix + forged);
      assert.match(r.text, /^HTTP\/1\.1 401/, `${JSON.stringify(prefix)} before the request line, port declared ${declared ?? 'nothing'}`);
    }
    assert.deepEqual(seenPaths, [], 'the forged token and header never reached the backend');
  }
  // Declared HTTP: bytes that are not HTTP are refused by the HTTP parser, not carried to the backend.
  const r = await rawExchange(port, 'HELLO not http\r\n\r\n');
  assert.match(r.text, /^HTTP\/1\.1 400/);
  assert.deepEqual(seenPaths, []);
  apply({});
});

test('JWT: keys fetched from a jwksUri', async () => {
  const ra = obj(SECURITY, 'RequestAuthentication', 'jwt', { targetRefs: [{ kind: 'Service', group: '', name: 'api' }], jwtRules: [{ issuer: ISS, jwksUri: jwksUrl }] });
  assert.deepEqual(apply({ requestAuthentications: [ra] }), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  assert.equal((await h1Request(port, { headers: { authorization: `Bearer ${await token({})}` } })).status, 200);
  assert.equal((await h1Request(port, { headers: { authorization: `Bearer ${await token({}, other)}` } })).status, 401);
});

test('bad config is refused naming the resource, and the last good config keeps serving', async () => {
  assert.deepEqual(apply({}), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  assert.equal((await h1Request(port, { path: '/before' })).status, 200);
  const custom = rawObj('ext-authz', { action: 'CUSTOM', provider: { name: 'x' }, rules: [{}] });
  let errs = apply({ authorizationPolicies: [custom] });
  assert.equal(errs.length, 1);
  assert.equal(errs[0].resource, 'AuthorizationPolicy/shop/ext-authz');
  assert.equal((await h1Request(port, { path: '/still' })).status, 200, 'last good config serves');
  const badRegex = rawObj('bad-regex', { hosts: ['api'], http: [{ match: [{ uri: { regex: '([a-z' } }], route: [{ destination: { host: 'api' } }] }] });
  errs = apply({ virtualServices: [badRegex] });
  assert.equal(errs.length, 1);
  assert.equal(errs[0].resource, 'VirtualService/shop/bad-regex');
  assert.equal((await h1Request(port, { path: '/still' })).status, 200);
  // A service that never had a good config is not served at all (fail closed).
  const fresh: ServiceDef = { name: 'fresh', vip: '10.96.1.9', ports: [80] };
  errs = h.engine.update(mesh, new Map([['l7/shop/api', serviceConfig(api)], ['l7/shop/fresh', serviceConfig(fresh, { authorizationPolicies: [custom] })]]));
  assert.equal(errs.length, 1);
  const freshPort = await h.tunnel({ authority: '10.96.1.9:80' });
  await assert.rejects(h1Request(freshPort));
});

test('request smuggling attempts get 400 and the connection is closed', async () => {
  assert.deepEqual(apply({}), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  seenPaths.length = 0;
  const recordsBefore = h.telemetry.records.length;
  const attacks = [
    'POST /a HTTP/1.1\r\nHost: api\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: api\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
    'GET /a HTTP/1.1\nHost: api\n\nGET /smuggled HTTP/1.1\r\nHost: api\r\n\r\n',
    'POST /a HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'GET /a HTTP/1.1\r\nHost: api\r\nBad Header: x\r\n\r\n',
  ];
  for (const a of attacks) {
    const r = await rawExchange(port, a);
    assert.match(r.text, /^HTTP\/1\.1 400 /, `answer to ${JSON.stringify(a.slice(0, 60))}: ${r.text.slice(0, 40)}`);
    assert.ok(r.closed, 'connection closed');
  }
  assert.ok(!seenPaths.includes('/smuggled'), 'nothing smuggled reached the backend');
  // Each refusal is counted and logged (400 DPE), so an attack shows on dashboards.
  const recs = h.telemetry.records.slice(recordsBefore);
  assert.equal(recs.filter((r) => r.code === 400 && r.flags === 'DPE').length, attacks.length, JSON.stringify(recs.map((r) => [r.code, r.flags])));
});

test('too many or too large headers are refused', async () => {
  assert.deepEqual(apply({}), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  const many: Record<string, string> = {};
  for (let i = 0; i < 150; i++) many[`x-h${i}`] = 'v';
  assert.equal((await h1Request(port, { headers: many })).status, 431);
  const big = await rawExchange(port, `GET / HTTP/1.1\r\nHost: api\r\nx-big: ${'a'.repeat(70 * 1024)}\r\n\r\n`);
  assert.match(big.text, /^HTTP\/1\.1 431 /);
});

test('a rapid-reset flood on one HTTP/2 connection does not take the engine down', async () => {
  assert.deepEqual(apply({}), []);
  const port = await h.tunnel({ authority: '10.96.1.1:80' });
  const attacker = http2.connect(`http://127.0.0.1:${port}`);
  attacker.on('error', () => {});
  let attackerClosed = false;
  attacker.on('goaway', () => {
    attackerClosed = true;
  });
  attacker.on('close', () => {
    attackerClosed = true;
  });
  await new Promise<void>((r) => attacker.once('connect', () => r()));
  let opened = 0;
  for (let i = 0; i < 5000 && !attacker.destroyed && !attacker.closed; i++) {
    try {
      const s = attacker.request({ ':path': `/flood/${i}`, ':authority': 'api' });
      s.on('error', () => {});
      s.close(http2.constants.NGHTTP2_CANCEL);
      opened++;
    } catch {
      break;
    }
    if (i % 500 === 0) await new Promise<void>((r) => setImmediate(r));
  }
  await new Promise<void>((r) => setTimeout(r, 500));
  assert.ok(attackerClosed, `the flooding connection was closed by the waypoint (${opened} streams opened)`);
  attacker.destroy();
  assert.ok(opened > 0);
  const s = http2.connect(`http://127.0.0.1:${port}`);
  try {
    const r = await h2Request(s, { ':path': '/after-flood', ':authority': 'api' });
    assert.equal(r.status, 200);
  } finally {
    s.close();
  }
  assert.equal((await h1Request(port, { path: '/after-flood-h1' })).status, 200);
});

test('opaque TCP: bytes pass unchanged; only L4 policy applies, failing closed', async () => {
  const dbPolicy = (name: string, spec: object) => obj(SECURITY, 'AuthorizationPolicy', name, { targetRefs: [{ kind: 'Service', group: '', name: 'db' }], ...spec });
  assert.deepEqual(apply({}, {}), []);
  const port = await h.tunnel({ authority: '10.96.1.2:5432' });
  const payload = Buffer.from([0, 0, 0, 8, 4, 210, 22, 47, 0xff, 0x00, 0x10]);
  const echo = (p: number) =>
    new Promise<Buffer>((resolve) => {
      const s = net.connect(p, '127.0.0.1');
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('error', () => resolve(Buffer.concat(chunks)));
      s.on('close', () => resolve(Buffer.concat(chunks)));
      s.write(payload, () => s.end());
    });
  assert.deepEqual(await echo(port), payload, 'echoed byte for byte');

  // An ALLOW rule that needs HTTP attributes never matches TCP: nothing is allowed.
  assert.deepEqual(apply({}, { authorizationPolicies: [dbPolicy('allow-get', { action: 'ALLOW', rules: [{ to: [{ operation: { methods: ['GET'] } }] }] })] }), []);
  assert.equal((await echo(port)).length, 0, 'HTTP-only ALLOW refuses TCP');

  // A DENY rule is enforced on its L4 part: methods are dropped, the namespace condition stays.
  assert.deepEqual(apply({}, { authorizationPolicies: [dbPolicy('deny-shop-posts', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['shop'] } }], to: [{ operation: { methods: ['POST'] } }] }] })] }), []);
  assert.equal((await echo(port)).length, 0, 'DENY applies on its L4 part');
  const fromElsewhere = await h.tunnel({ authority: '10.96.1.2:5432', peerIdentity: identityOf('x', 'other') });
  assert.deepEqual(await echo(fromElsewhere), payload, 'other namespaces pass');
  const recs = h.telemetry.records.filter((r) => r.info.protocol === 'tcp');
  assert.ok(recs.length >= 4);
});

test('a caller that never finishes its request head is cut off (request-header timeout)', async () => {
  const slow = await startHarness({ limits: { requestHeadersTimeoutMs: 300 } });
  try {
    slow.engine.update(mesh, new Map([['l7/shop/api', serviceConfig(api)]]));
    slow.connector.ports.set('api-1', backend.port);
    const port = await slow.tunnel({ authority: '10.96.1.1:80' });
    const t0 = Date.now();
    const r = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: api\r\nX-Slow: ', 8000);
    assert.ok(r.closed, 'closed by the waypoint');
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.ok(Date.now() - t0 < 6000);
  } finally {
    await slow.close();
  }
});
