import { checkAmbitAnnotations, checkWaypointLabels } from './annotations';
import { z } from 'zod';
import { FieldError, formatPath } from './errors';
import { objectMeta } from './meta';
import { DEFAULT_NAMESPACE, Resource } from './resource';
import type { KindDef } from './kinds/types';
import { namespaceKind, serviceKind } from './kinds/core';
import { nodeKind, workloadKind } from './kinds/ambit';
import { kinds as securityKinds } from './kinds/security';
import { kinds as gatewayKinds } from './kinds/gateway';
import { kinds as networkingKinds } from './kinds/networking';

export type { KindDef } from './kinds/types';

export const KINDS: readonly KindDef[] = [
  namespaceKind,
  serviceKind,
  ...securityKinds,
  ...gatewayKinds,
  ...networkingKinds,
  workloadKind,
  nodeKind,
];

const byKind = new Map<string, KindDef>();
const byAlias = new Map<string, KindDef>();
for (const k of KINDS) {
  byKind.set(k.kind, k);
  for (const alias of [k.kind, k.plural, k.kind.toLowerCase(), ...k.shortNames]) byAlias.set(alias.toLowerCase(), k);
}

export function kindDef(kind: string): KindDef | undefined {
  return byKind.get(kind);
}

/** Resolves what a user types after `get`/`delete`: `svc`, `services`, `HTTPRoute`, `httproutes`. */
export function resolveKind(name: string): KindDef | undefined {
  return byAlias.get(name.toLowerCase()) ?? byAlias.get(name.toLowerCase().replace(/\..*$/, ''));
}

export type ValidationResult = { ok: true; resource: Resource } | { ok: false; errors: FieldError[] };

const envelope = z.strictObject({
  apiVersion: z.string({ error: 'required' }),
  kind: z.string({ error: 'required' }),
  metadata: z.unknown().optional(),
  spec: z.unknown().optional(),
  // Status belongs to the server; it is accepted so `get -o yaml | apply` round-trips, then dropped.
  status: z.unknown().optional(),
});

function issuesToErrors(issues: readonly z.core.$ZodIssue[], prefix: PropertyKey[]): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...prefix, ...issue.path, key]), message: 'unsupported field' });
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      // Report the branch that got furthest: the one whose first issue has the longest path.
      let best = issue.errors[0];
      for (const e of issue.errors) if ((e[0]?.path.length ?? 0) > (best[0]?.path.length ?? 0)) best = e;
      if ((best[0]?.path.length ?? 0) > 0) {
        out.push(...issuesToErrors(best, [...prefix, ...issue.path]));
        continue;
      }
    }
    out.push({ path: formatPath([...prefix, ...issue.path]), message: issue.message });
  }
  return out;
}

/**
 * Validates a document as a user wrote it. Everything that is stored went through here:
 * unknown kinds, unsupported fields, and bad values are refused with the field's path.
 * Defaults are applied, the namespace is filled for namespaced kinds, status is dropped.
 */
export function validateResource(doc: unknown): ValidationResult {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return { ok: false, errors: [{ path: '', message: 'a resource must be a mapping with apiVersion, kind and metadata' }] };
  }
  const env = envelope.safeParse(doc);
  if (!env.success) return { ok: false, errors: issuesToErrors(env.error.issues, []) };
  const { apiVersion, kind } = env.data;
  const def = byKind.get(kind);
  if (!def) {
    const known = KINDS.map((k) => k.kind).join(', ');
    return { ok: false, errors: [{ path: 'kind', message: `unknown kind "${kind}" (supported: ${known})` }] };
  }
  if (!def.apiVersions.includes(apiVersion)) {
    return {
      ok: false,
      errors: [{ path: 'apiVersion', message: `${kind} is served as ${def.apiVersions.join(' or ')}, not "${apiVersion}"` }],
    };
  }
  const errors: FieldError[] = [];
  if (env.data.metadata === undefined) errors.push({ path: 'metadata', message: 'required' });
  const meta = objectMeta.safeParse(env.data.metadata ?? {});
  if (!meta.success) errors.push(...issuesToErrors(meta.error.issues, ['metadata']));

  let spec: unknown = undefined;
  if (env.data.spec === undefined && !def.specOptional) {
    errors.push({ path: 'spec', message: 'required' });
  } else if (env.data.spec !== undefined || def.specOptional) {
    const parsed = def.spec.safeParse(env.data.spec ?? {});
    if (!parsed.success) errors.push(...issuesToErrors(parsed.error.issues, ['spec']));
    else spec = parsed.data;
  }
  if (meta.success) errors.push(...checkAmbitAnnotations(kind, meta.data.annotations), ...checkWaypointLabels(kind, meta.data.labels));
  if (errors.length > 0 || !meta.success) return { ok: false, errors };

  const metadata = { ...meta.data };
  if (def.namespaced) {
    metadata.namespace = metadata.namespace ?? DEFAULT_NAMESPACE;
  } else if (metadata.namespace !== undefined) {
    return { ok: false, errors: [{ path: 'metadata.namespace', message: `${kind} is cluster-scoped and takes no namespace` }] };
  }
  const resource: Resource = { apiVersion: def.apiVersions[0], kind, metadata };
  if (spec !== undefined) resource.spec = spec as Record<string, unknown>;
  if (def.check) {
    def.check(resource, (path, message) => errors.push({ path, message }));
    if (errors.length > 0) return { ok: false, errors };
  }
  return { ok: true, resource };
}
