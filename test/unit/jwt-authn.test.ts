import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { exportJWK, generateKeyPair, SignJWT, base64url, type JWK, type JWTPayload, type KeyLike } from 'jose';
import type { JwtRule } from '../../lib/api/kinds/security';
import {
  compileRequestAuthn,
  type AuthnFailure,
  type AuthnResult,
  type AuthnSuccess,
  type RequestAuthnOptions,
} from '../../waypoint/http/jwt-authn';

const ISS = 'https://issuer.example.com';
const T0 = 1_700_000_000_000;
const T0S = T0 / 1000;

interface Signer {
  kid: string;
  alg: string;
  priv: KeyLike;
  jwk: JWK;
}

async function signer(alg: 'ES256' | 'RS256', kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, priv: privateKey, jwk };
}

async function sign(s: Signer, claims: JWTPayload, opts: { iss?: string; kid?: string } = {}): Promise<string> {
  return new SignJWT({ sub: 'alice', exp: T0S + 3600, iat: T0S, ...claims })
    .setProtectedHeader({ alg: s.alg, kid: opts.kid ?? s.kid, typ: 'JWT' })
    .setIssuer(opts.iss ?? ISS)
    .sign(s.priv);
}

function jwks(...signers: Signer[]): string {
  return JSON.stringify({ keys: signers.map((s) => s.jwk) });
}

function authn(rules: JwtRule[], opts: RequestAuthnOptions = {}) {
  return compileRequestAuthn([{ namespace: 'ns', name: 'ra', spec: { jwtRules: rules } }], { now: () => T0, ...opts });
}

function req(headers: Record<string, string | string[]> = {}, query = ''): { headers: Record<string, string | string[]>; query: URLSearchParams } {
  return { headers, query: new URLSearchParams(query) };
}

function bearer(t: string) {
  return req({ authorization: `Bearer ${t}` });
}

function ok(r: AuthnResult): AuthnSuccess {
  if (!r.ok) assert.fail(`expected success, got 401: ${r.reason}`);
  return r;
}

function denied(r: AuthnResult, reason?: RegExp): AuthnFailure {
  if (r.ok) assert.fail(`expected 401, got success for ${r.principal}`);
  assert.equal(r.status, 401);
  if (reason) assert.match(r.reason, reason);
  return r;
}

let es: Signer;
let rs: Signer;
let other: Signer;

before(async () => {
  es = await signer('ES256', 'es-1');
  rs = await signer('RS256', 'rs-1');
  other = await signer('ES256', 'es-1'); // same kid, different key: a forger guessing the kid
});

test('valid ES256 and RS256 tokens yield principal and claims', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es, rs) }]);
  const r1 = ok(await a.authenticate(bearer(await sign(es, { groups: ['dev'], azp: 'cli', aud: 'api' }))));
  assert.equal(r1.principal, `${ISS}/alice`);
  assert.deepEqual(r1.claims?.groups, ['dev']);
  assert.deepEqual(r1.audiences, ['api']);
  assert.equal(r1.presenter, 'cli');
  const r2 = ok(await a.authenticate(bearer(await sign(rs, { sub: 'bob' }))));
  assert.equal(r2.principal, `${ISS}/bob`);
});

test('no token passes with a null principal', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es) }]);
  const r = ok(await a.authenticate(req({ host: 'x' })));
  assert.equal(r.principal, null);
  assert.equal(r.claims, null);
  assert.deepEqual(r.audiences, []);
  // A non-Bearer Authorization header is not a JWT location under the default rule.
  assert.equal(ok(await a.authenticate(req({ authorization: 'Basic dTpw' }))).principal, null);
});

test('a token signed by another key is refused', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es) }]);
  denied(await a.authenticate(bearer(await sign(other, {}))), /signature/);
});

test('expiry and nbf are enforced with the clock skew', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es) }]);
  denied(await a.authenticate(bearer(await sign(es, { exp: T0S - 61 }))), /expired/);
  denied(await a.authenticate(bearer(await sign(es, { nbf: T0S + 120 }))), /nbf/);
  ok(await a.authenticate(bearer(await sign(es, { exp: T0S - 30 }))));
  ok(await a.authenticate(bearer(await sign(es, { nbf: T0S + 30 }))));
  const strict = authn([{ issuer: ISS, jwks: jwks(es) }], { clockSkewSec: 0 });
  denied(await strict.authenticate(bearer(await sign(es, { exp: T0S - 30 }))), /expired/);
});

test('audiences: one of the rule audiences must be present', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es), audiences: ['api', 'web'] }]);
  denied(await a.authenticate(bearer(await sign(es, { aud: 'other' }))), /audience/);
  denied(await a.authenticate(bearer(await sign(es, {}))), /aud/);
  const r = ok(await a.authenticate(bearer(await sign(es, { aud: ['x', 'web'] }))));
  assert.deepEqual(r.audiences, ['x', 'web']);
});

test('audiences compare as Envoy does: scheme and trailing slash aside', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es), audiences: ['https://api.example.com'] }]);
  for (const aud of ['https://api.example.com', 'https://api.example.com/', 'api.example.com', 'http://api.example.com']) {
    ok(await a.authenticate(bearer(await sign(es, { aud }))));
  }
  denied(await a.authenticate(bearer(await sign(es, { aud: 'https://api.example.com.evil' }))), /audience/);
  denied(await a.authenticate(bearer(await sign(es, { aud: 'https://api.example.com/other' }))), /audience/);
});

test('key selection as Envoy: a JWKS key without kid is tried; several kid-less candidates are all tried', async () => {
  const bare = (s: Signer) => {
    const { kid: _kid, ...jwk } = s.jwk;
    return jwk;
  };
  // The JWKS has no kids, the token names one: the key is still tried.
  const a = authn([{ issuer: ISS, jwks: JSON.stringify({ keys: [bare(es)] }) }]);
  ok(await a.authenticate(bearer(await sign(es, {}, { kid: 'k-from-the-idp' }))));
  // A kid-less key next to a keyed one, and a token with another kid.
  const mixed = authn([{ issuer: ISS, jwks: JSON.stringify({ keys: [rs.jwk, bare(es)] }) }]);
  ok(await mixed.authenticate(bearer(await sign(es, {}, { kid: 'elsewhere' }))));
  // Two kid-less keys of the same type, a token without kid: the right one verifies it, a forger's does not.
  const two = await signer('ES256', 'x');
  const both = authn([{ issuer: ISS, jwks: JSON.stringify({ keys: [bare(two), bare(es)] }) }]);
  const noKid = (s: Signer) => new SignJWT({ sub: 'alice', exp: T0S + 3600, iat: T0S }).setProtectedHeader({ alg: s.alg }).setIssuer(ISS).sign(s.priv);
  ok(await both.authenticate(bearer(await noKid(es))));
  ok(await both.authenticate(bearer(await noKid(two))));
  denied(await both.authenticate(bearer(await noKid(other))), /signature|invalid/);
  // A key whose kid differs from the token's is still passed over.
  const keyed = authn([{ issuer: ISS, jwks: jwks(es) }]);
  denied(await keyed.authenticate(bearer(await sign(es, {}, { kid: 'not-es-1' }))), /no key/);
});

test('a token from an unknown issuer is refused', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es) }]);
  denied(await a.authenticate(bearer(await sign(es, {}, { iss: 'https://evil.example' }))), /not trusted/);
});

test('alg none and HS256 tokens are refused', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es) }]);
  const enc = (o: object) => base64url.encode(JSON.stringify(o));
  const none = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ iss: ISS, sub: 'alice', exp: T0S + 60 })}.`;
  denied(await a.authenticate(bearer(none)), /algorithm/);
  // The classic confusion attack: the public key material used as an HMAC secret.
  const secret = new TextEncoder().encode(JSON.stringify(es.jwk));
  const hs = await new SignJWT({ sub: 'alice', exp: T0S + 60 })
    .setProtectedHeader({ alg: 'HS256', kid: es.kid })
    .setIssuer(ISS)
    .sign(secret);
  denied(await a.authenticate(bearer(hs)), /algorithm/);
});

test('token from a custom header with a prefix, and from a query parameter', async () => {
  const a = authn([
    { issuer: ISS, jwks: jwks(es), fromHeaders: [{ name: 'X-Jwt-Assertion', prefix: 'Token ' }], fromParams: ['jwt'] },
  ]);
  const t = await sign(es, {});
  const r = ok(await a.authenticate(req({ 'x-jwt-assertion': `Token ${t}` })));
  assert.equal(r.principal, `${ISS}/alice`);
  assert.deepEqual(r.headersToRemove, ['x-jwt-assertion']);
  assert.equal(ok(await a.authenticate(req({}, `jwt=${t}`))).principal, `${ISS}/alice`);
  // The default location is not consulted once the rule names its own.
  assert.equal(ok(await a.authenticate(bearer(t))).principal, null);
  // Cookies, too.
  const c = authn([{ issuer: ISS, jwks: jwks(es), fromCookies: ['session'] }]);
  assert.equal(ok(await c.authenticate(req({ cookie: `a=b; session=${t}` }))).principal, `${ISS}/alice`);
});

test('several tokens: any invalid one refuses the request', async () => {
  const a = authn([{ issuer: ISS, jwks: jwks(es), fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }], fromParams: ['jwt'] }]);
  const good = await sign(es, {});
  const bad = await sign(other, {});
  ok(await a.authenticate(req({ authorization: `Bearer ${good}` }, `jwt=${good}`)));
  denied(await a.authenticate(req({ authorization: `Bearer ${good}` }, `jwt=${bad}`)), /signature/);
});

test('jwksUri: fetched through the injected fetcher, cached, refetched once on key rotation', async () => {
  let now = T0;
  let served = jwks(es);
  const fetched: string[] = [];
  const a = authn([{ issuer: ISS, jwksUri: 'https://issuer.example.com/jwks' }], {
    now: () => now,
    fetchJwks: async (uri) => {
      fetched.push(uri);
      return JSON.parse(served) as unknown;
    },
  });
  const t = await sign(es, {});
  ok(await a.authenticate(bearer(t)));
  ok(await a.authenticate(bearer(t)));
  assert.deepEqual(fetched, ['https://issuer.example.com/jwks']);

  // The issuer rotates to a new kid.
  const rotated = await signer('ES256', 'es-2');
  served = jwks(es, rotated);
  const t2 = await sign(rotated, {});
  // Within 30 s of the last fetch an unknown kid does not hit the issuer again.
  now = T0 + 10_000;
  denied(await a.authenticate(bearer(t2)), /no key/);
  assert.equal(fetched.length, 1);
  now = T0 + 31_000;
  ok(await a.authenticate(bearer(await sign(rotated, { exp: T0S + 3600 }))));
  assert.equal(fetched.length, 2);
  // A forged kid right after that refetch is refused without another fetch.
  denied(await a.authenticate(bearer(await sign(other, {}, { kid: 'bogus' }))), /no key/);
  assert.equal(fetched.length, 2);
  // After the TTL the set is refetched.
  now = T0 + 31_000 + 5 * 60_000;
  ok(await a.authenticate(bearer(t)));
  assert.equal(fetched.length, 3);
});

test('JWKS fetch failure fails closed with a clear reason', async () => {
  let calls = 0;
  const a = authn([{ issuer: ISS, jwksUri: 'https://issuer.example.com/jwks' }], {
    fetchJwks: async () => {
      calls++;
      throw new Error('connect ECONNREFUSED');
    },
  });
  const r = denied(await a.authenticate(bearer(await sign(es, {}))), /JWKS fetch from https:\/\/issuer.example.com\/jwks failed: connect ECONNREFUSED/);
  assert.ok(r.reason.length > 0);
  // A request without a token is unaffected by the outage.
  ok(await a.authenticate(req()));
  assert.equal(calls, 1);
});

test('outputClaimToHeaders, outputPayloadToHeader, and forwardOriginalToken', async () => {
  const rule: JwtRule = {
    issuer: ISS,
    jwks: jwks(es),
    outputClaimToHeaders: [
      { header: 'x-user', claim: 'sub' },
      { header: 'x-groups', claim: 'groups' },
      { header: 'x-tenant', claim: 'org.tenant' },
      { header: 'x-evil', claim: 'evil' },
    ],
    outputPayloadToHeader: 'x-jwt-payload',
  };
  const t = await sign(es, { groups: ['a', 'b'], org: { tenant: 't1' }, evil: 'x\r\nset-cookie: y' });
  const r = ok(await authn([rule]).authenticate(bearer(t)));
  assert.deepEqual(r.headersToAdd, { 'x-user': 'alice', 'x-groups': 'a,b', 'x-tenant': 't1', 'x-jwt-payload': t.split('.')[1] });
  assert.ok(r.headersToRemove.includes('authorization'));
  // Spoofed output headers are stripped even when no token is presented.
  const none = ok(await authn([rule]).authenticate(req({ 'x-user': 'admin' })));
  assert.ok(none.headersToRemove.includes('x-user'));
  assert.deepEqual(none.headersToAdd, {});

  const fwd = ok(await authn([{ ...rule, forwardOriginalToken: true }]).authenticate(bearer(t)));
  assert.ok(!fwd.headersToRemove.includes('authorization'));
});
