/**
 * RequestAuthentication (security.istio.io/v1) for the L7 waypoint.
 *
 * Istio semantics: a request whose token fails validation is refused with 401; a request with
 * no token at all passes (principal null) and is refused only by an AuthorizationPolicy that
 * requires a request principal (lib/policy/l7-authorize.ts).
 */
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type KeyLike,
} from 'jose';
import type { JwtRule, RequestAuthenticationSpec } from '../../lib/api/kinds/security';
import { parseDurationMs } from '../../lib/api/meta';

export interface RequestAuthnPolicy {
  namespace: string;
  name: string;
  spec: RequestAuthenticationSpec;
}

export interface RequestAuthnOptions {
  /** Fetches a JSON document (JWKS or OIDC discovery); injectable so tests and the caller control I/O. */
  fetchJwks?: (uri: string, timeoutMs: number) => Promise<unknown>;
  now?: () => number;
  clockSkewSec?: number;
  cacheTtlMs?: number;
}

export interface AuthnRequest {
  headers: Record<string, string | string[] | undefined>;
  query: URLSearchParams;
}

export interface AuthnSuccess {
  ok: true;
  principal: string | null;
  claims: Record<string, unknown> | null;
  audiences: string[];
  presenter?: string;
  /** Apply headersToRemove first, then headersToAdd. */
  headersToAdd: Record<string, string>;
  headersToRemove: string[];
}

export interface AuthnFailure {
  ok: false;
  status: 401;
  reason: string;
}

export type AuthnResult = AuthnSuccess | AuthnFailure;

export interface RequestAuthenticator {
  authenticate(req: AuthnRequest): Promise<AuthnResult>;
}

// Symmetric algorithms are excluded because a JWKS is public: accepting HS* would let anyone
// holding the published key material mint tokens. `none` is never acceptable.
export const ALLOWED_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'EdDSA',
];

const DEFAULT_SKEW_SEC = 60;
const DEFAULT_CACHE_TTL_MS = 5 * 60_000;
// Istio's default for fetching a JWKS.
const DEFAULT_FETCH_TIMEOUT_MS = 5000;
// Bounds how often a token carrying an unknown kid can make us hit the issuer.
const ROTATION_REFETCH_INTERVAL_MS = 30_000;
// During an outage of the JWKS endpoint, requests should not each wait out a fetch timeout.
const FAILURE_BACKOFF_MS = 5000;

type Location =
  | { kind: 'header'; name: string; prefix: string }
  | { kind: 'param'; name: string }
  | { kind: 'cookie'; name: string };

interface CompiledRule {
  source: string;
  rule: JwtRule;
  keys: JWTVerifyGetKey;
}

interface LocationGroup {
  loc: Location;
  rules: CompiledRule[];
}

class JwksFetchError extends Error {}

async function defaultFetchJwks(uri: string, timeoutMs: number): Promise<unknown> {
  const res = await fetch(uri, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}

function isJwks(doc: unknown): doc is JSONWebKeySet {
  return doc !== null && typeof doc === 'object' && Array.isArray((doc as { keys?: unknown }).keys);
}

/**
 * Key selection as Envoy's jwt_authn does it: a key is passed over for its kid only when both the
 * key and the token name one and they differ. jose also drops keys without a kid when the token
 * names one, which refuses valid tokens signed by a JWKS written without kids.
 */
function keySet(doc: JSONWebKeySet): JWTVerifyGetKey {
  const all = createLocalJWKSet(doc);
  const withoutKid = doc.keys.filter((k) => k.kid === undefined);
  const kidless = withoutKid.length > 0 ? createLocalJWKSet({ keys: withoutKid }) : null;
  return async (header, token) => {
    try {
      return await all(header, token);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey) || kidless === null || header.kid === undefined) throw e;
      const { kid: _kid, ...anyKey } = header;
      return kidless(anyKey, token);
    }
  };
}

/** Envoy compares audiences without their scheme and trailing slash: "https://api.example.com/" is "api.example.com". */
function sanitizeAudience(a: string): string {
  let s = a;
  if (s.startsWith('https://')) s = s.slice(8);
  else if (s.startsWith('http://')) s = s.slice(7);
  while (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

function audienceAllowed(aud: unknown, allowed: readonly string[]): boolean {
  const have = (typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((x): x is string => typeof x === 'string') : []).map(sanitizeAudience);
  return allowed.some((a) => have.includes(sanitizeAudience(a)));
}

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/**
 * A JWKS fetched from a URI, cached with a TTL and shared by every rule naming the same URI.
 * A token whose kid is missing from the cached set triggers one refetch (the issuer may have
 * rotated keys), rate-limited so forged kids cannot turn the waypoint into a request amplifier.
 */
class RemoteKeySet {
  private local: JWTVerifyGetKey | null = null;
  private fetchedAt = -Infinity;
  private failedAt = -Infinity;
  private lastError = '';
  private inflight: Promise<void> | null = null;

  constructor(
    private readonly uri: string,
    private readonly discover: boolean,
    private readonly timeoutMs: number,
    private readonly fetchDoc: (uri: string, timeoutMs: number) => Promise<unknown>,
    private readonly now: () => number,
    private readonly ttlMs: number,
  ) {}

  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    if (this.local === null || this.now() - this.fetchedAt >= this.ttlMs) {
      // A stale set is still better than none: we never accept a token without verifying it,
      // so using expired-from-cache keys during an outage does not fail open.
      await this.refresh(this.local === null);
    }
    const local = this.local;
    if (local === null) throw new JwksFetchError(`JWKS fetch from ${this.uri} failed: ${this.lastError}`);
    try {
      return await local(header, token);
    } catch (e) {
      if (!(e instanceof errors.JWKSNoMatchingKey)) throw e;
      if (this.now() - this.fetchedAt < ROTATION_REFETCH_INTERVAL_MS) throw e;
      await this.refresh(false);
      const fresh = this.local;
      if (fresh === null || fresh === local) throw e;
      return fresh(header, token);
    }
  };

  private async refresh(mustSucceed: boolean): Promise<void> {
    if (this.now() - this.failedAt < FAILURE_BACKOFF_MS) {
      if (mustSucceed) throw new JwksFetchError(`JWKS fetch from ${this.uri} failed: ${this.lastError}`);
      return;
    }
    if (this.inflight === null) {
      this.inflight = this.load().finally(() => {
        this.inflight = null;
      });
    }
    await this.inflight;
    if (mustSucceed && this.local === null) {
      throw new JwksFetchError(`JWKS fetch from ${this.uri} failed: ${this.lastError}`);
    }
  }

  private async load(): Promise<void> {
    try {
      let jwksUri = this.uri;
      if (this.discover) {
        const doc = await this.fetchDoc(this.uri, this.timeoutMs);
        const discovered = (doc as { jwks_uri?: unknown } | null)?.jwks_uri;
        if (typeof discovered !== 'string') throw new Error('OpenID discovery document has no jwks_uri');
        jwksUri = discovered;
      }
      const doc = await this.fetchDoc(jwksUri, this.timeoutMs);
      if (!isJwks(doc)) throw new Error('response is not a JSON Web Key Set');
      this.local = keySet(doc);
      this.fetchedAt = this.now();
    } catch (e) {
      this.failedAt = this.now();
      this.lastError = errMessage(e);
    }
  }
}

function locationKey(l: Location): string {
  return l.kind === 'header' ? `header:${l.name}:${l.prefix}` : `${l.kind}:${l.name}`;
}

function locationName(l: Location): string {
  return l.kind === 'header' ? `header ${l.name}` : l.kind === 'param' ? `query parameter ${l.name}` : `cookie ${l.name}`;
}

function ruleLocations(r: JwtRule): Location[] {
  const locs: Location[] = [];
  for (const h of r.fromHeaders ?? []) locs.push({ kind: 'header', name: h.name.toLowerCase(), prefix: h.prefix ?? '' });
  for (const p of r.fromParams ?? []) locs.push({ kind: 'param', name: p });
  for (const c of r.fromCookies ?? []) locs.push({ kind: 'cookie', name: c });
  // Istio's defaults apply only when the rule names no location at all.
  if (locs.length === 0) {
    locs.push({ kind: 'header', name: 'authorization', prefix: 'Bearer ' });
    locs.push({ kind: 'param', name: 'access_token' });
  }
  return locs;
}

function headerValues(headers: AuthnRequest['headers'], name: string): string[] {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    return Array.isArray(v) ? v : [v];
  }
  return [];
}

function cookieValues(headers: AuthnRequest['headers'], name: string): string[] {
  const out: string[] = [];
  for (const line of headerValues(headers, 'cookie')) {
    for (const part of line.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      out.push(v);
    }
  }
  return out;
}

function extract(req: AuthnRequest, l: Location): string[] {
  let raw: string[];
  if (l.kind === 'header') {
    raw = [];
    for (const v of headerValues(req.headers, l.name)) {
      // Auth schemes are case-insensitive (RFC 9110 §11.1), so "bearer x" must not slip past.
      if (v.length >= l.prefix.length && v.slice(0, l.prefix.length).toLowerCase() === l.prefix.toLowerCase()) {
        raw.push(v.slice(l.prefix.length));
      }
    }
  } else if (l.kind === 'param') {
    raw = req.query.getAll(l.name);
  } else {
    raw = cookieValues(req.headers, l.name);
  }
  return raw.map((t) => t.trim()).filter((t) => t.length > 0);
}

function claimAt(payload: Record<string, unknown>, path: string): unknown {
  if (path in payload) return payload[path];
  // Envoy reads nested claims with "." as the separator.
  let cur: unknown = payload;
  for (const seg of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

function claimHeaderValue(v: unknown): string | undefined {
  const prim = (x: unknown): string | undefined =>
    typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean' ? String(x) : undefined;
  let s: string | undefined;
  if (Array.isArray(v)) {
    const parts = v.map(prim);
    s = parts.every((p): p is string => p !== undefined) ? parts.join(',') : undefined;
  } else {
    s = prim(v);
  }
  // A signed claim is still attacker-influenced data (e.g. a user-chosen name); never let it split headers.
  if (s === undefined || /[\r\n\0]/.test(s)) return undefined;
  return s;
}

function describeVerifyError(e: unknown): string {
  if (e instanceof JwksFetchError) return e.message;
  if (e instanceof errors.JWTExpired) return 'token has expired';
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.claim === 'nbf') return 'token is not yet valid (nbf)';
    if (e.claim === 'aud') return 'token audience is not allowed';
    if (e.claim === 'iss') return 'token issuer does not match';
    return `token claim ${e.claim} is invalid: ${e.reason}`;
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return 'token signing algorithm is not allowed';
  if (e instanceof errors.JWKSNoMatchingKey) return 'no key in the JWKS matches the token';
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  return `token is invalid: ${errMessage(e)}`;
}

interface Verified {
  payload: JWTPayload;
  rule: CompiledRule;
  loc: Location;
  token: string;
}

export function compileRequestAuthn(policies: RequestAuthnPolicy[], opts: RequestAuthnOptions = {}): RequestAuthenticator {
  const now = opts.now ?? Date.now;
  const skewSec = opts.clockSkewSec ?? DEFAULT_SKEW_SEC;
  const ttlMs = opts.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
  const fetchDoc = opts.fetchJwks ?? defaultFetchJwks;

  const remote = new Map<string, RemoteKeySet>();
  const groups = new Map<string, LocationGroup>();
  const issuers = new Set<string>();
  // Output headers are always stripped from the incoming request so a client cannot forge
  // what downstream services believe came from a verified token.
  const outputHeaders = new Set<string>();

  for (const p of policies) {
    (p.spec.jwtRules ?? []).forEach((rule, i) => {
      const source = `${p.namespace}/${p.name} jwtRules[${i}]`;
      let keys: JWTVerifyGetKey;
      if (rule.jwks !== undefined) {
        let doc: unknown;
        try {
          doc = JSON.parse(rule.jwks);
        } catch {
          doc = null;
        }
        // Validation should have caught this; an unusable rule must still refuse its tokens.
        keys = isJwks(doc)
          ? keySet(doc)
          : async () => {
              throw new JwksFetchError(`${source}: inline jwks is not a JSON Web Key Set`);
            };
      } else {
        const discover = rule.jwksUri === undefined;
        const uri = rule.jwksUri ?? `${rule.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
        const timeoutMs = rule.timeout !== undefined ? parseDurationMs(rule.timeout) : DEFAULT_FETCH_TIMEOUT_MS;
        const cacheKey = `${discover ? 'oidc' : 'jwks'}:${uri}`;
        let set = remote.get(cacheKey);
        if (!set) {
          set = new RemoteKeySet(uri, discover, timeoutMs, fetchDoc, now, ttlMs);
          remote.set(cacheKey, set);
        }
        keys = set.getKey;
      }
      const compiled: CompiledRule = { source, rule, keys };
      issuers.add(rule.issuer);
      if (rule.outputPayloadToHeader) outputHeaders.add(rule.outputPayloadToHeader.toLowerCase());
      for (const o of rule.outputClaimToHeaders ?? []) outputHeaders.add(o.header.toLowerCase());
      for (const loc of ruleLocations(rule)) {
        const k = locationKey(loc);
        let g = groups.get(k);
        if (!g) {
          g = { loc, rules: [] };
          groups.set(k, g);
        }
        g.rules.push(compiled);
      }
    });
  }

  async function verifyOne(token: string, g: LocationGroup): Promise<Verified | string> {
    let iss: unknown;
    try {
      // Unverified reads only pick the rule; everything is re-checked by jwtVerify.
      decodeProtectedHeader(token);
      iss = decodeJwt(token).iss;
    } catch {
      return `malformed token in ${locationName(g.loc)}`;
    }
    if (typeof iss !== 'string') return `token in ${locationName(g.loc)} has no issuer`;
    const candidates = g.rules.filter((r) => r.rule.issuer === iss);
    if (candidates.length === 0) {
      return issuers.has(iss)
        ? `issuer ${iss} is not accepted in ${locationName(g.loc)}`
        : `token issuer ${iss} is not trusted`;
    }
    let reason = '';
    for (const c of candidates) {
      const aud = c.rule.audiences;
      const opts = { issuer: c.rule.issuer, algorithms: ALLOWED_ALGORITHMS, clockTolerance: skewSec, currentDate: new Date(now()) };
      let payload: JWTPayload | null = null;
      try {
        payload = (await jwtVerify(token, c.keys, opts)).payload;
      } catch (e) {
        reason = describeVerifyError(e);
        // Several keys fit the token (no kid to tell them apart): the one that verifies it wins.
        if (e instanceof errors.JWKSMultipleMatchingKeys) {
          for await (const key of e as unknown as AsyncIterable<KeyLike>) {
            try {
              payload = (await jwtVerify(token, key, opts)).payload;
              break;
            } catch (e2) {
              reason = describeVerifyError(e2);
            }
          }
        }
      }
      if (payload === null) continue;
      // Checked after the signature, as jose would, but with Envoy's audience comparison.
      if (aud && aud.length > 0 && !audienceAllowed(payload.aud, aud)) {
        reason = 'token audience is not allowed';
        continue;
      }
      return { payload, rule: c, loc: g.loc, token };
    }
    return reason;
  }

  async function authenticate(req: AuthnRequest): Promise<AuthnResult> {
    const found: Array<{ token: string; g: LocationGroup }> = [];
    for (const g of groups.values()) {
      for (const token of extract(req, g.loc)) found.push({ token, g });
    }
    const headersToRemove = new Set<string>(outputHeaders);
    if (found.length === 0) {
      return { ok: true, principal: null, claims: null, audiences: [], headersToAdd: {}, headersToRemove: [...headersToRemove] };
    }

    // Every token must verify: letting a valid token vouch for an invalid one beside it would let
    // a client smuggle a forged token to an upstream that reads a different location.
    const verified: Verified[] = [];
    for (const { token, g } of found) {
      const r = await verifyOne(token, g);
      if (typeof r === 'string') return { ok: false, status: 401, reason: r };
      verified.push(r);
    }

    const headersToAdd: Record<string, string> = {};
    for (const v of verified) {
      const rule = v.rule.rule;
      if (!rule.forwardOriginalToken && v.loc.kind === 'header') headersToRemove.add(v.loc.name);
      if (rule.outputPayloadToHeader) {
        // The payload segment is already base64url, which is what Envoy forwards.
        headersToAdd[rule.outputPayloadToHeader.toLowerCase()] = v.token.split('.')[1];
      }
      for (const o of rule.outputClaimToHeaders ?? []) {
        const value = claimHeaderValue(claimAt(v.payload, o.claim));
        if (value !== undefined) headersToAdd[o.header.toLowerCase()] = value;
      }
    }

    const first = verified[0].payload;
    const aud = first.aud === undefined ? [] : Array.isArray(first.aud) ? first.aud : [first.aud];
    // Istio forms the principal only when both iss and sub are present.
    const principal = typeof first.sub === 'string' && first.sub.length > 0 ? `${first.iss}/${first.sub}` : null;
    const result: AuthnSuccess = {
      ok: true,
      principal,
      claims: { ...first },
      audiences: aud,
      headersToAdd,
      headersToRemove: [...headersToRemove],
    };
    if (typeof first.azp === 'string') result.presenter = first.azp;
    return result;
  }

  return { authenticate };
}
