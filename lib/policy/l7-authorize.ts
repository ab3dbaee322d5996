import net from 'node:net';
import ipaddr from 'ipaddr.js';
import type { AuthorizationPolicySpec, AuthorizationPolicyRule } from '../api/kinds/security';
import type { Decision } from './authorize';
import { normalizePath } from './path-normalize';

/** What the waypoint's L7 authorization sees of one HTTP request. */
export interface RequestAttributes {
  /** Peer SPIFFE ID without "spiffe://": "cluster.local/ns/a/sa/b"; null for plaintext. */
  principal: string | null;
  namespace: string | null;
  sourceIp: string;
  /** Original client address, from a trusted source only (equal to sourceIp until one exists). */
  remoteIp: string;
  /** "iss/sub" of a validated JWT; null without one. */
  requestPrincipal: string | null;
  requestAuthClaims: Record<string, unknown> | null;
  requestAudiences: string[];
  presenter?: string;
  method: string;
  /** The :authority, possibly with a port. */
  host: string;
  port: number;
  /** Raw request-target path; normalized here before matching. */
  path: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[]>;
  destinationIp: string;
  sni?: string;
}

export interface L7Decision extends Decision {
  /** The request was refused because it cannot be matched safely (bad path): answer 400, not 403. */
  badRequest?: boolean;
  /** The path policies were matched against, when it could be normalized. */
  normalizedPath?: string;
}

type StrMatch =
  | { kind: 'exact'; v: string }
  | { kind: 'prefix'; v: string }
  | { kind: 'suffix'; v: string }
  | { kind: 'presence' };

interface Cidr {
  bytes: number[];
  length: number;
}

/** A string-valued request attribute; null when the request does not carry it. */
type Str = string | null;

/** The request as matching needs it, derived once per request. */
interface View {
  a: RequestAttributes;
  path: string;
  /** Host forms a rule may name: as sent, without port, without trailing dot; all lower case. */
  hosts: string[];
  sourceIp: number[] | null;
  remoteIp: number[] | null;
  destinationIp: number[] | null;
}

type Predicate = (v: View) => boolean;

interface CompiledRule {
  from: Predicate[];
  to: Predicate[];
  when: Predicate[];
}

/** An AuthorizationPolicy turned into matchers once, at config time. */
export interface CompiledPolicy {
  namespace: string;
  name: string;
  action: 'ALLOW' | 'DENY' | 'AUDIT';
  rules: CompiledRule[];
}

export function compileStringMatch(s: string): StrMatch {
  if (s === '*') return { kind: 'presence' };
  if (s.endsWith('*')) return { kind: 'prefix', v: s.slice(0, -1) };
  if (s.startsWith('*')) return { kind: 'suffix', v: s.slice(1) };
  return { kind: 'exact', v: s };
}

function strMatch(m: StrMatch, v: string): boolean {
  switch (m.kind) {
    case 'exact':
      return v === m.v;
    case 'prefix':
      return v.startsWith(m.v);
    case 'suffix':
      return v.endsWith(m.v);
    case 'presence':
      return v.length > 0;
  }
}

// A request without the attribute (no peer identity, no JWT, no such header) matches no
// positive condition and every negative one, as in lib/policy/authorize.ts, so that
// `notRequestPrincipals: ["*"]` in a DENY catches exactly the callers without a token.
function anyOf(list: StrMatch[], values: readonly string[]): boolean {
  return values.some((v) => list.some((m) => strMatch(m, v)));
}

function present(v: Str | undefined): string[] {
  return v === null || v === undefined ? [] : [v];
}

/** Raw address bytes with IPv4-mapped IPv6 unwrapped, since Node reports v4 peers on dual-stack sockets as "::ffff:a.b.c.d". */
function ipBytes(ip: string): number[] | null {
  if (net.isIP(ip) === 0) return null;
  try {
    return ipaddr.process(ip).toByteArray();
  } catch {
    return null;
  }
}

function compileCidr(s: string): Cidr {
  const slash = s.indexOf('/');
  const addr = ipBytes(slash === -1 ? s : s.slice(0, slash));
  if (!addr) throw new Error(`not an IP address or CIDR: ${s}`);
  let length = slash === -1 ? addr.length * 8 : Number(s.slice(slash + 1));
  // A mapped-v6 CIDR was unwrapped to v4 above; its prefix length shrinks with it.
  if (slash !== -1 && addr.length === 4 && net.isIP(s.slice(0, slash)) === 6) length -= 96;
  if (!Number.isInteger(length) || length < 0 || length > addr.length * 8) throw new Error(`bad prefix length in ${s}`);
  return { bytes: addr, length };
}

function cidrContains(c: Cidr, ip: number[] | null): boolean {
  if (ip === null || ip.length !== c.bytes.length) return false;
  let bits = c.length;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((ip[i] & mask) !== (c.bytes[i] & mask)) return false;
  }
  return true;
}

/** A positive list (values) and a negative one (notValues), either possibly absent. */
function both<T>(
  pos: T[] | undefined,
  neg: T[] | undefined,
  test: (list: T[], v: View) => boolean,
): Predicate[] {
  const out: Predicate[] = [];
  if (pos && pos.length > 0) out.push((v) => test(pos, v));
  if (neg && neg.length > 0) out.push((v) => !test(neg, v));
  return out;
}

function strField(pos: string[] | undefined, neg: string[] | undefined, get: (v: View) => readonly string[], lower = false): Predicate[] {
  const c = (l: string[] | undefined) => l?.map((s) => compileStringMatch(lower ? s.toLowerCase() : s));
  return both(c(pos), c(neg), (list, v) => anyOf(list, get(v)));
}

function ipField(pos: string[] | undefined, neg: string[] | undefined, get: (v: View) => number[] | null): Predicate[] {
  const c = (l: string[] | undefined) => l?.map(compileCidr);
  return both(c(pos), c(neg), (list, v) => {
    const ip = get(v);
    return list.some((cidr) => cidrContains(cidr, ip));
  });
}

function portField(pos: string[] | undefined, neg: string[] | undefined, get: (v: View) => number): Predicate[] {
  const c = (l: string[] | undefined) => l?.map(Number);
  return both(c(pos), c(neg), (list, v) => list.includes(get(v)));
}

/**
 * Header values for `request.headers[name]`. Envoy's RBAC reads its own header map, where Host is
 * `:authority` and the pseudo-headers are present; here they live outside the map, so they are
 * answered from the request itself (`:path` is the normalized path with the query, as Envoy sees
 * it after normalization). Without this a DENY on `request.headers[:authority]` would never match.
 */
function headerValues(v: View, name: string): string[] {
  const a = v.a;
  switch (name) {
    case ':authority':
    case 'host':
      return a.host === '' ? [] : [a.host];
    case ':method':
      return [a.method];
    case ':path': {
      const q = a.path.indexOf('?');
      const hash = a.path.indexOf('#');
      const query = q === -1 || (hash !== -1 && hash < q) ? '' : a.path.slice(q, hash === -1 ? undefined : hash);
      return [v.path + query];
    }
    case ':scheme':
      return ['http'];
  }
  const h = a.headers[name];
  if (h === undefined) return [];
  return Array.isArray(h) ? h : [h];
}

/** Claim values a `when` may match: a string, or the string elements of a list; other JSON types match nothing. */
function claimValues(claims: Record<string, unknown> | null, path: string[]): string[] {
  let cur: unknown = claims;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.prototype.hasOwnProperty.call(cur, k)) return [];
    cur = (cur as Record<string, unknown>)[k];
  }
  if (typeof cur === 'string') return path.length === 1 && SPACE_DELIMITED_CLAIMS.has(path[0]) ? cur.split(' ').filter((x) => x !== '') : [cur];
  if (Array.isArray(cur)) return cur.filter((x): x is string => typeof x === 'string');
  return [];
}

// OAuth 2.0 writes these as one space-separated string ("read admin"); Istio has Envoy split them
// into lists before matching, so a DENY on scope "admin" holds for a token with "read admin".
const SPACE_DELIMITED_CLAIMS = new Set(['scope', 'permission']);

const HEADER_KEY = /^request\.headers\[([^[\]]+)\]$/;
const CLAIM_KEY = /^request\.auth\.claims((?:\[[^[\]]+\])+)$/;

function compileCondition(c: { key: string; values?: string[]; notValues?: string[] }): Predicate[] {
  const { key, values, notValues } = c;
  switch (key) {
    case 'source.ip':
      return ipField(values, notValues, (v) => v.sourceIp);
    case 'remote.ip':
      return ipField(values, notValues, (v) => v.remoteIp);
    case 'destination.ip':
      return ipField(values, notValues, (v) => v.destinationIp);
    case 'destination.port':
      return portField(values, notValues, (v) => v.a.port);
    case 'source.namespace':
      return strField(values, notValues, (v) => present(v.a.namespace));
    case 'source.principal':
      return strField(values, notValues, (v) => present(v.a.principal));
    case 'request.auth.principal':
      return strField(values, notValues, (v) => present(v.a.requestPrincipal));
    case 'request.auth.audiences':
      return strField(values, notValues, (v) => v.a.requestAudiences);
    case 'request.auth.presenter':
      return strField(values, notValues, (v) => present(v.a.presenter));
    case 'connection.sni':
      return strField(values, notValues, (v) => present(v.a.sni));
  }
  const header = HEADER_KEY.exec(key);
  if (header) {
    const name = header[1].toLowerCase();
    return strField(values, notValues, (v) => headerValues(v, name));
  }
  const claim = CLAIM_KEY.exec(key);
  if (claim) {
    const path = claim[1].slice(1, -1).split('][');
    return strField(values, notValues, (v) => claimValues(v.a.requestAuthClaims, path));
  }
  // Validation refuses unknown keys; ignoring one here would silently widen an ALLOW or
  // narrow a DENY, so a config that slipped through fails loudly instead.
  throw new Error(`unsupported when key "${key}"`);
}

type Source = NonNullable<AuthorizationPolicyRule['from']>[number]['source'];
type Operation = NonNullable<AuthorizationPolicyRule['to']>[number]['operation'];

function compileSource(s: Source): Predicate {
  const preds = [
    ...strField(s.principals, s.notPrincipals, (v) => present(v.a.principal)),
    ...strField(s.requestPrincipals, s.notRequestPrincipals, (v) => present(v.a.requestPrincipal)),
    ...strField(s.namespaces, s.notNamespaces, (v) => present(v.a.namespace)),
    ...ipField(s.ipBlocks, s.notIpBlocks, (v) => v.sourceIp),
    ...ipField(s.remoteIpBlocks, s.notRemoteIpBlocks, (v) => v.remoteIp),
  ];
  return (v) => preds.every((p) => p(v));
}

function compileOperation(o: Operation): Predicate {
  const preds = [
    // hosts: any form of the authority (so a DENY on "web" also holds for "web:80" and "web.");
    // notHosts: the authority exactly as sent, as Istio compares it, so adding a port or a
    // trailing dot cannot take a request out of a DENY's notHosts.
    ...strField(o.hosts, undefined, (v) => v.hosts, true),
    ...strField(undefined, o.notHosts, (v) => v.hosts.slice(0, 1), true),
    ...portField(o.ports, o.notPorts, (v) => v.a.port),
    ...strField(o.methods, o.notMethods, (v) => [v.a.method]),
    ...strField(o.paths, o.notPaths, (v) => [v.path]),
  ];
  return (v) => preds.every((p) => p(v));
}

function compileRule(r: AuthorizationPolicyRule): CompiledRule {
  return {
    from: (r.from ?? []).map((f) => compileSource(f.source)),
    to: (r.to ?? []).map((t) => compileOperation(t.operation)),
    when: (r.when ?? []).flatMap(compileCondition),
  };
}

/**
 * Compiles a validated policy spec. Throws on anything validation should have refused (an
 * unknown `when` key, an unparsable CIDR), so a bad config is rejected at push time rather
 * than mis-enforced per request.
 */
export function compilePolicy(p: { namespace: string; name: string; spec: AuthorizationPolicySpec }): CompiledPolicy {
  return {
    namespace: p.namespace,
    name: p.name,
    action: p.spec.action ?? 'ALLOW',
    rules: (p.spec.rules ?? []).map(compileRule),
  };
}

function ruleMatches(r: CompiledRule, v: View): boolean {
  // Within a rule: any source, any operation, every condition; an omitted section matches all.
  return (
    (r.from.length === 0 || r.from.some((p) => p(v))) &&
    (r.to.length === 0 || r.to.some((p) => p(v))) &&
    r.when.every((p) => p(v))
  );
}

/** Istio: a policy without rules matches nothing (so an empty ALLOW denies everything); `rules: [{}]` matches all. */
function policyMatchesRequest(p: CompiledPolicy, v: View): boolean {
  return p.rules.some((r) => ruleMatches(r, v));
}

function stripPort(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.lastIndexOf(':');
  // More than one colon without brackets is a bare IPv6 address, not host:port.
  if (colon === -1 || host.indexOf(':') !== colon) return host;
  return /^[0-9]*$/.test(host.slice(colon + 1)) ? host.slice(0, colon) : host;
}

// The authority as sent comes first. A rule host matches it with or without its port, so
// "web" covers "web:80" (Istio compares only the exact string, which lets "web:80" past a
// DENY on "web"). A trailing dot ("web.ns.svc.cluster.local.") reaches the same service, so
// it must not slip past a DENY on the dotless name either.
function hostForms(authority: string): string[] {
  const full = authority.toLowerCase();
  const bare = stripPort(full);
  const forms = new Set([full, bare]);
  if (bare.endsWith('.') && bare.length > 1) {
    const dotless = bare.slice(0, -1);
    forms.add(dotless);
    if (full !== bare) forms.add(dotless + full.slice(bare.length));
  }
  return [...forms];
}

/**
 * Per-request evaluation, in Istio's order: any matching DENY denies; then, if any ALLOW
 * policy applies, one of them must match; AUDIT only records. A path that cannot be
 * normalized is refused before any policy is consulted, since no match on it can be trusted.
 */
export function authorizeRequest(policies: readonly CompiledPolicy[], a: RequestAttributes): L7Decision {
  const audited: string[] = [];
  const np = normalizePath(a.path);
  if (!np.ok) return { allowed: false, badRequest: true, reason: `invalid request path: ${np.reason}`, audited };
  const v: View = {
    a,
    path: np.path,
    hosts: hostForms(a.host),
    sourceIp: ipBytes(a.sourceIp),
    remoteIp: ipBytes(a.remoteIp),
    destinationIp: ipBytes(a.destinationIp),
  };
  let allowPolicies = 0;
  let allowedBy: string | undefined;
  for (const p of policies) {
    const name = `${p.namespace}/${p.name}`;
    if (p.action === 'DENY') {
      if (policyMatchesRequest(p, v)) {
        return { allowed: false, policy: name, reason: `denied by DENY policy ${name}`, audited, normalizedPath: np.path };
      }
    } else if (p.action === 'AUDIT') {
      if (policyMatchesRequest(p, v)) audited.push(name);
    } else {
      allowPolicies++;
      if (allowedBy === undefined && policyMatchesRequest(p, v)) allowedBy = name;
    }
  }
  if (allowPolicies === 0) return { allowed: true, reason: 'no ALLOW policy applies', audited, normalizedPath: np.path };
  if (allowedBy) return { allowed: true, policy: allowedBy, reason: `allowed by ${allowedBy}`, audited, normalizedPath: np.path };
  return { allowed: false, reason: `no ALLOW policy matched (${allowPolicies} apply)`, audited, normalizedPath: np.path };
}
