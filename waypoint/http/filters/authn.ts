import type { RequestAuthenticationSpec } from '../../../lib/api/kinds/security';
import { compileRequestAuthn, type AuthnResult, type RequestAuthenticator } from '../jwt-authn';
import type { HeaderMap } from '../types';

export interface AuthnFilterOptions {
  fetchJwks?: (uri: string, timeoutMs: number) => Promise<unknown>;
  now?: () => number;
}

/** null when no RequestAuthentication applies: nothing to check and nothing to strip. */
export function compileAuthn(
  policies: ReadonlyArray<{ namespace: string; name: string; spec: unknown }>,
  opts: AuthnFilterOptions,
): RequestAuthenticator | null {
  if (policies.length === 0) return null;
  return compileRequestAuthn(
    policies.map((p) => ({ namespace: p.namespace, name: p.name, spec: p.spec as RequestAuthenticationSpec })),
    { fetchJwks: opts.fetchJwks, now: opts.now },
  );
}

/** Runs JWT validation and, on success, applies its header changes (output claims, token removal) to the request. */
export async function runAuthn(authn: RequestAuthenticator, headers: HeaderMap, pathAndQuery: string): Promise<AuthnResult> {
  const q = pathAndQuery.indexOf('?');
  const query = new URLSearchParams(q < 0 ? '' : pathAndQuery.slice(q + 1));
  const r = await authn.authenticate({ headers, query });
  if (r.ok) {
    for (const name of r.headersToRemove) delete headers[name];
    for (const [k, v] of Object.entries(r.headersToAdd)) headers[k] = v;
  }
  return r;
}
