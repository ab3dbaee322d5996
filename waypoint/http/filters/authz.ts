import type { AuthorizationPolicyRule, AuthorizationPolicySpec } from '../../../lib/api/kinds/security';
import { authorizeRequest, compilePolicy, type CompiledPolicy, type L7Decision, type RequestAttributes } from '../../../lib/policy/l7-authorize';

export const RBAC_DENIED_BODY = 'RBAC: access denied';

export class PolicyCompileError extends Error {
  readonly code = 'BadPolicy';
  constructor(readonly resource: string, message: string) {
    super(message);
  }
}

export interface CompiledAuthz {
  /** For HTTP requests. */
  http: CompiledPolicy[];
  /** For opaque TCP: the same policies cut down to what can be judged without HTTP (see toTcpSpec). */
  tcp: CompiledPolicy[];
}

type Source = NonNullable<AuthorizationPolicyRule['from']>[number]['source'];
type Operation = NonNullable<AuthorizationPolicyRule['to']>[number]['operation'];

const HTTP_SOURCE_FIELDS = ['requestPrincipals', 'notRequestPrincipals'] as const;
const HTTP_OPERATION_FIELDS = ['hosts', 'notHosts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const isHttpWhen = (key: string) => key.startsWith('request.');

function ruleNeedsHttp(r: AuthorizationPolicyRule): boolean {
  const src = (r.from ?? []).some((f) => HTTP_SOURCE_FIELDS.some((k) => f.source[k] !== undefined));
  const op = (r.to ?? []).some((t) => HTTP_OPERATION_FIELDS.some((k) => t.operation[k] !== undefined));
  return src || op || (r.when ?? []).some((c) => isHttpWhen(c.key));
}

function stripHttp(r: AuthorizationPolicyRule): AuthorizationPolicyRule {
  const from = r.from?.map((f) => {
    const s: Source = { ...f.source };
    for (const k of HTTP_SOURCE_FIELDS) delete s[k];
    return { source: s };
  });
  const to = r.to?.map((t) => {
    const o: Operation = { ...t.operation };
    for (const k of HTTP_OPERATION_FIELDS) delete o[k];
    return { operation: o };
  });
  const when = r.when?.filter((c) => !isHttpWhen(c.key));
  return { from, to, when: when && when.length > 0 ? when : undefined };
}

/**
 * Istio's rule for policies on TCP traffic, which must fail closed: an ALLOW (or AUDIT) rule that
 * needs HTTP attributes can never match, so it is dropped (an ALLOW policy left with no rule then
 * denies everything); a DENY rule keeps only its L4 conditions, so it denies more, never less.
 */
export function toTcpSpec(spec: AuthorizationPolicySpec): AuthorizationPolicySpec {
  const rules = spec.rules ?? [];
  if (spec.action === 'DENY') return { ...spec, rules: rules.map(stripHttp) };
  return { ...spec, rules: rules.filter((r) => !ruleNeedsHttp(r)) };
}

/** Throws PolicyCompileError naming the policy: a policy the waypoint cannot enforce must not be half-applied. */
export function compileAuthz(policies: ReadonlyArray<{ namespace: string; name: string; spec: unknown }>): CompiledAuthz {
  const http: CompiledPolicy[] = [];
  const tcp: CompiledPolicy[] = [];
  for (const p of policies) {
    const resource = `AuthorizationPolicy/${p.namespace}/${p.name}`;
    const spec = p.spec as AuthorizationPolicySpec & { action?: string; provider?: unknown };
    if ((spec.action as string | undefined) === 'CUSTOM' || spec.provider !== undefined) {
      throw new PolicyCompileError(resource, `${resource}: action CUSTOM (external authorization) is not supported by the waypoint`);
    }
    if (spec.action !== undefined && !['ALLOW', 'DENY', 'AUDIT'].includes(spec.action)) {
      throw new PolicyCompileError(resource, `${resource}: unknown action ${String(spec.action)}`);
    }
    try {
      http.push(compilePolicy({ namespace: p.namespace, name: p.name, spec }));
      tcp.push(compilePolicy({ namespace: p.namespace, name: p.name, spec: toTcpSpec(spec) }));
    } catch (e) {
      throw new PolicyCompileError(resource, `${resource}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return { http, tcp };
}

/** "spiffe://td/ns/x/sa/y" -> principal "td/ns/x/sa/y" and namespace "x", as Istio's source.principal / source.namespace. */
export function peerAttributes(peerIdentity: string | null): { principal: string | null; namespace: string | null } {
  if (peerIdentity === null || !peerIdentity.startsWith('spiffe://')) return { principal: null, namespace: null };
  const principal = peerIdentity.slice('spiffe://'.length);
  const m = /^[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(principal);
  return { principal, namespace: m ? m[1] : null };
}

const NO_POLICY: L7Decision = Object.freeze({ allowed: true, reason: 'no authorization policy applies', audited: [] as string[] });

export function authorize(policies: readonly CompiledPolicy[], attrs: RequestAttributes): L7Decision {
  // No policy: allowed. The filter chain has already refused a path that cannot be normalized,
  // so skipping the attribute parsing here changes nothing but the cost.
  if (policies.length === 0) return NO_POLICY;
  return authorizeRequest(policies, attrs);
}
