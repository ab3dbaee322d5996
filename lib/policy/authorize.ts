import { Action, AuthorizationMsg, Cidr, Match, StringMatch } from '../api/workload-types';
import { cidrContains } from '../util/ip';

/** What L4 authorization sees of a connection. */
export interface ConnectionAttributes {
  /** Peer principal without the scheme, as Istio writes it: "cluster.local/ns/a/sa/b"; null for plaintext. */
  principal: string | null;
  namespace: string | null;
  sourceIp: Uint8Array;
  destinationIp: Uint8Array;
  destinationPort: number;
}

export interface Decision {
  allowed: boolean;
  /** "namespace/name" of the policy that decided, when one did. */
  policy?: string;
  reason: string;
  /** AUDIT policies that matched: logged, never enforced. */
  audited: string[];
}

function strMatch(m: StringMatch, v: string): boolean {
  if ('exact' in m && m.exact !== undefined && m.exact !== null) return v === m.exact;
  if ('prefix' in m && m.prefix !== undefined && m.prefix !== null) return v.startsWith(m.prefix);
  if ('suffix' in m && m.suffix !== undefined && m.suffix !== null) return v.endsWith(m.suffix);
  if ('presence' in m && m.presence) return v.length > 0;
  return false;
}

// A connection without an identity matches no positive principal/namespace condition and
// every negative one: the same semantics as Envoy's and ztunnel's RBAC, so that
// `notPrincipals: ["*"]` in a DENY catches exactly the unauthenticated callers.
function anyStr(list: StringMatch[], v: string | null): boolean {
  return v !== null && list.some((m) => strMatch(m, v));
}

function anyCidr(list: Cidr[], ip: Uint8Array): boolean {
  return list.some((c) => cidrContains(c, ip));
}

export function matchMatches(m: Match, a: ConnectionAttributes): boolean {
  if (m.principals.length > 0 && !anyStr(m.principals, a.principal)) return false;
  if (m.notPrincipals.length > 0 && anyStr(m.notPrincipals, a.principal)) return false;
  if (m.namespaces.length > 0 && !anyStr(m.namespaces, a.namespace)) return false;
  if (m.notNamespaces.length > 0 && anyStr(m.notNamespaces, a.namespace)) return false;
  if (m.sourceIps.length > 0 && !anyCidr(m.sourceIps, a.sourceIp)) return false;
  if (m.notSourceIps.length > 0 && anyCidr(m.notSourceIps, a.sourceIp)) return false;
  if (m.destinationIps.length > 0 && !anyCidr(m.destinationIps, a.destinationIp)) return false;
  if (m.notDestinationIps.length > 0 && anyCidr(m.notDestinationIps, a.destinationIp)) return false;
  if (m.destinationPorts.length > 0 && !m.destinationPorts.includes(a.destinationPort)) return false;
  if (m.notDestinationPorts.length > 0 && m.notDestinationPorts.includes(a.destinationPort)) return false;
  return true;
}

export function policyMatches(p: AuthorizationMsg, a: ConnectionAttributes): boolean {
  return p.rules.some((rule) => rule.clauses.every((clause) => clause.matches.some((m) => matchMatches(m, a))));
}

/**
 * Istio's evaluation order: any matching DENY denies; then, if any ALLOW policy applies,
 * one of them must match; with no ALLOW policy the connection is allowed. Pure and
 * synchronous: the data path calls it per connection.
 */
export function authorize(policies: readonly AuthorizationMsg[], a: ConnectionAttributes): Decision {
  const audited: string[] = [];
  let allowPolicies = 0;
  let allowedBy: string | undefined;
  for (const p of policies) {
    const name = `${p.namespace}/${p.name}`;
    if (p.action === Action.DENY) {
      if (policyMatches(p, a)) return { allowed: false, policy: name, reason: `denied by DENY policy ${name}`, audited };
    } else if (p.action === Action.AUDIT) {
      if (policyMatches(p, a)) audited.push(name);
    } else {
      allowPolicies++;
      if (allowedBy === undefined && policyMatches(p, a)) allowedBy = name;
    }
  }
  if (allowPolicies === 0) return { allowed: true, reason: 'no ALLOW policy applies', audited };
  if (allowedBy) return { allowed: true, policy: allowedBy, reason: `allowed by ${allowedBy}`, audited };
  return { allowed: false, reason: `no ALLOW policy matched (${allowPolicies} apply)`, audited };
}
