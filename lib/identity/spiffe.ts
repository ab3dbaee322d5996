/**
 * SPIFFE IDs. Parsing is exact on purpose: an identity is compared as a whole string,
 * never by prefix, and anything the SPIFFE ID spec forbids (uppercase trust domain,
 * empty or dot segments, percent-encoding, query, fragment, NUL) is refused.
 */
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  trustDomain: string;
  /** Path segments, e.g. ['ns', 'default', 'sa', 'web']. */
  segments: string[];
}

export function parseSpiffeId(uri: string): SpiffeId | null {
  if (!uri.startsWith('spiffe://') || uri.length > 2048) return null;
  const rest = uri.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN.test(td)) return null;
  if (slash < 0) return { trustDomain: td, segments: [] };
  const segments = rest.slice(slash + 1).split('/');
  for (const s of segments) if (!SEGMENT.test(s) || s === '.' || s === '..') return null;
  return { trustDomain: td, segments };
}

export function isValidTrustDomain(td: string): boolean {
  return TRUST_DOMAIN.test(td);
}

export function workloadId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** Identities the control plane hands to people and hosts; never of the /ns/../sa/.. form, so never a workload's. */
export function adminId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ambit/admin`;
}

export function nodeId(trustDomain: string, node: string): string {
  return `spiffe://${trustDomain}/ambit/node/${node}`;
}

export type Principal =
  | { role: 'admin'; id: string }
  | { role: 'node'; id: string; node: string }
  | { role: 'workload'; id: string; namespace: string; serviceAccount: string };

/** Classifies an authenticated identity of this trust domain; null for anything else. */
export function classify(uri: string, trustDomain: string): Principal | null {
  const id = parseSpiffeId(uri);
  if (!id || id.trustDomain !== trustDomain) return null;
  const s = id.segments;
  if (s.length === 2 && s[0] === 'ambit' && s[1] === 'admin') return { role: 'admin', id: uri };
  if (s.length === 3 && s[0] === 'ambit' && s[1] === 'node') return { role: 'node', id: uri, node: s[2] };
  if (s.length === 4 && s[0] === 'ns' && s[2] === 'sa') {
    return { role: 'workload', id: uri, namespace: s[1], serviceAccount: s[3] };
  }
  return null;
}
