import type { HeaderMutation, PathRewrite } from '../route-table';
import type { HeaderMap } from '../types';

// Headers a route filter must never be able to set: they would break framing or the mesh's own
// guarantees (the upstream trusts x-forwarded-for because only we set it).
const PROTECTED = new Set(['content-length', 'transfer-encoding', 'connection', 'host', 'x-forwarded-for']);

/** Gateway API order: set, then add, then remove. Names are already lower-case. */
export function applyHeaderMutation(h: HeaderMap, m: HeaderMutation | undefined): void {
  if (!m) return;
  for (const { name, value } of m.set) if (!PROTECTED.has(name) && !name.startsWith(':')) h[name] = value;
  for (const { name, value } of m.add) {
    if (PROTECTED.has(name) || name.startsWith(':')) continue;
    const cur = h[name];
    h[name] = cur === undefined ? value : Array.isArray(cur) ? [...cur, value] : [cur, value];
  }
  for (const name of m.remove) if (!PROTECTED.has(name)) delete h[name];
}

/** Applies a rewrite to "path?query"; the query is kept, as in Envoy. */
export function rewritePath(pathAndQuery: string, rw: PathRewrite): string {
  const q = pathAndQuery.indexOf('?');
  const path = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q);
  if (rw.type === 'ReplaceFullPath') return rw.value + query;
  const prefix = rw.prefix.length > 1 && rw.prefix.endsWith('/') ? rw.prefix.slice(0, -1) : rw.prefix;
  const starts = rw.ignoreCase ? path.slice(0, prefix.length).toLowerCase() === prefix.toLowerCase() : path.startsWith(prefix);
  if (!starts) return pathAndQuery;
  let rest = path.slice(prefix.length);
  let value = rw.value;
  // "/api" -> "/" applied to "/api/x" must give "/x", not "//x".
  if (value.endsWith('/') && rest.startsWith('/')) value = value.slice(0, -1);
  if (value === '' && rest === '') rest = '/';
  if (rest !== '' && !rest.startsWith('/') && !value.endsWith('/')) rest = `/${rest}`;
  const out = value + rest;
  return (out === '' ? '/' : out) + query;
}
