import { z } from 'zod';
import { dnsLabel, dnsSubdomain, duration, expected, labelMap, oneOf, durationMsOrNaN, refused } from '../meta';
import type { Resource } from '../resource';
import type { KindDef } from './types';

const API_VERSIONS = ['security.istio.io/v1', 'security.istio.io/v1beta1'];

const str = () => z.string(expected('a string'));
const list = <T extends z.ZodType>(item: T) => z.array(item, expected('a list'));
// Piping through a plain string first turns a missing name into "required" instead of zod's type error.
const objectName = z.string(expected('a name')).pipe(dnsSubdomain);
const namespaceName = z.string(expected('a namespace name')).pipe(dnsLabel);

const ipOrCidrFormats = z.union([z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()]);
const ipOrCidr = str().refine((v) => ipOrCidrFormats.safeParse(v).success, 'must be an IP address or a CIDR such as 10.0.0.0/16');

function portStringError(v: string): string | undefined {
  if (!/^[0-9]+$/.test(v)) return `"${v}" must be a port number such as "8080"`;
  const n = Number(v);
  return n >= 1 && n <= 65535 ? undefined : `"${v}" must be a port between 1 and 65535`;
}

const portString = z.string({
  error: (iss) => (iss.input === undefined ? 'required' : 'must be a port number written as a string, such as "8080" (quoted)'),
}).superRefine((v, ctx) => {
  const err = portStringError(v);
  if (err) ctx.addIssue({ code: 'custom', message: err });
});

/**
 * Istio's string match: exact, prefix "abc*", suffix "*abc" or presence "*". A "*" anywhere
 * else would be matched literally by Istio, which is never what the author meant.
 */
function stringMatchError(v: string): string | undefined {
  if (v === '') return 'must not be empty';
  if (v === '*') return undefined;
  const inner = v.slice(1, -1);
  if (inner.includes('*') || (v.startsWith('*') && v.endsWith('*'))) {
    return `"${v}": "*" may appear only once, at the start (suffix match) or the end (prefix match)`;
  }
  return undefined;
}

const matchValue = str().superRefine((v, ctx) => {
  const err = stringMatchError(v);
  if (err) ctx.addIssue({ code: 'custom', message: err });
});

const pathValue = str().superRefine((v, ctx) => {
  if (v.includes('{')) {
    ctx.addIssue({ code: 'custom', message: `"${v}": path templates ({*}, {**}) are not supported; use a prefix ("/api/*") or suffix ("*.js") match` });
    return;
  }
  const err = stringMatchError(v);
  if (err) ctx.addIssue({ code: 'custom', message: err });
});

const workloadSelector = z.strictObject(
  {
    matchLabels: labelMap.optional(),
  },
  expected('a mapping with matchLabels'),
);

const TARGET_GROUPS: Record<string, string> = {
  Service: '',
  Gateway: 'gateway.networking.k8s.io',
};

const policyTargetRef = z
  .strictObject(
    {
      group: str().default(''),
      // Ambit has no ServiceEntry kind: a policy targeting one would silently apply to nothing.
      kind: oneOf(['Service', 'Gateway'], {
        ServiceEntry: 'ServiceEntry is not supported by this mesh (there is no ServiceEntry kind): target the Service or the waypoint Gateway',
        GatewayClass: 'GatewayClass targets are not supported: target each waypoint Gateway, or the Services',
      }),
      name: objectName,
      namespace: namespaceName.optional(),
    },
    expected('a mapping with group, kind and name'),
  )
  .superRefine((ref, ctx) => {
    const group = TARGET_GROUPS[ref.kind];
    if (ref.group !== group) {
      ctx.addIssue({
        code: 'custom',
        path: ['group'],
        message: group === '' ? `must be "" (or omitted) for kind ${ref.kind}` : `must be "${group}" for kind ${ref.kind}`,
      });
    }
  });

export type PolicyTargetRef = z.infer<typeof policyTargetRef>;

const source = z.strictObject(
  {
    principals: list(matchValue).optional(),
    notPrincipals: list(matchValue).optional(),
    requestPrincipals: list(matchValue).optional(),
    notRequestPrincipals: list(matchValue).optional(),
    namespaces: list(matchValue).optional(),
    notNamespaces: list(matchValue).optional(),
    ipBlocks: list(ipOrCidr).optional(),
    notIpBlocks: list(ipOrCidr).optional(),
    remoteIpBlocks: list(ipOrCidr).optional(),
    notRemoteIpBlocks: list(ipOrCidr).optional(),
  },
  expected('a mapping'),
);

const operation = z.strictObject(
  {
    hosts: list(matchValue).optional(),
    notHosts: list(matchValue).optional(),
    ports: list(portString).optional(),
    notPorts: list(portString).optional(),
    methods: list(matchValue).optional(),
    notMethods: list(matchValue).optional(),
    paths: list(pathValue).optional(),
    notPaths: list(pathValue).optional(),
  },
  expected('a mapping'),
);

const nonEmpty = (what: string) => (v: object, ctx: z.core.$RefinementCtx) => {
  if (Object.values(v).every((x) => x === undefined)) ctx.addIssue({ code: 'custom', message: `${what} must not be empty` });
};

const WHEN_KEYS_EXACT = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
]);
const WHEN_KEY_HEADER = /^request\.headers\[[^[\]]+\]$/;
// Nested claims (request.auth.claims[a][b]) reach into JSON objects inside the token.
const WHEN_KEY_CLAIM = /^request\.auth\.claims(\[[^[\]]+\])+$/;

function whenKeyValid(key: string): boolean {
  return WHEN_KEYS_EXACT.has(key) || WHEN_KEY_HEADER.test(key) || WHEN_KEY_CLAIM.test(key);
}

const condition = z
  .strictObject(
    {
      key: str().refine(whenKeyValid, {
        message:
          'must be one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni',
      }),
      values: list(str()).optional(),
      notValues: list(str()).optional(),
    },
    expected('a mapping with key and values'),
  )
  .superRefine((c, ctx) => {
    if (c.values === undefined && c.notValues === undefined) {
      ctx.addIssue({ code: 'custom', path: ['values'], message: 'one of values or notValues is required' });
    }
    // The value syntax depends on the attribute: IPs must parse, ports must be numbers.
    for (const field of ['values', 'notValues'] as const) {
      (c[field] ?? []).forEach((v, i) => {
        let err: string | undefined;
        if (c.key === 'source.ip' || c.key === 'remote.ip' || c.key === 'destination.ip') {
          err = ipOrCidrFormats.safeParse(v).success ? undefined : `"${v}" must be an IP address or a CIDR for ${c.key}`;
        } else if (c.key === 'destination.port') {
          err = portStringError(v);
        } else {
          err = stringMatchError(v);
        }
        if (err) ctx.addIssue({ code: 'custom', path: [field, i], message: err });
      });
    }
  });

const rule = z.strictObject(
  {
    from: list(z.strictObject({ source: source.superRefine(nonEmpty('source')) }, expected('a mapping with source')))
      .min(1, 'must not be empty; omit from to match any source')
      .optional(),
    to: list(z.strictObject({ operation: operation.superRefine(nonEmpty('operation')) }, expected('a mapping with operation')))
      .min(1, 'must not be empty; omit to to match any operation')
      .optional(),
    when: list(condition).min(1, 'must not be empty; omit when to match unconditionally').optional(),
  },
  expected('a mapping'),
);

const authorizationPolicySpec = z.strictObject(
  {
    selector: workloadSelector.optional(),
    targetRef: policyTargetRef.optional(),
    targetRefs: list(policyTargetRef).max(16, 'at most 16 targetRefs').optional(),
    action: oneOf(['ALLOW', 'DENY', 'AUDIT'], {
      CUSTOM: 'CUSTOM (external authorization, ext-authz) is not supported; use ALLOW, DENY or AUDIT',
    }).default('ALLOW'),
    provider: refused('external authorization providers (action CUSTOM) are not supported'),
    rules: list(rule).optional(),
  },
  expected('a mapping'),
);

export type AuthorizationPolicySpec = z.infer<typeof authorizationPolicySpec>;
export type AuthorizationPolicyRule = z.infer<typeof rule>;

const mtls = z.strictObject(
  {
    mode: oneOf(['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT']).default('UNSET'),
  },
  expected('a mapping with mode'),
);

const peerAuthenticationSpec = z.strictObject(
  {
    selector: workloadSelector.optional(),
    mtls: mtls.optional(),
    portLevelMtls: z
      .record(z.string(), mtls, expected('a mapping from port number to {mode}'))
      .superRefine((m, ctx) => {
        for (const k of Object.keys(m)) {
          const err = portStringError(k);
          if (err) ctx.addIssue({ code: 'custom', path: [k], message: `key ${err}` });
        }
      })
      .optional(),
  },
  expected('a mapping'),
);

export type PeerAuthenticationSpec = z.infer<typeof peerAuthenticationSpec>;

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const headerName = str().regex(HEADER_NAME, 'must be an HTTP header name (letters, digits and !#$%&\'*+-.^_`|~)');

function httpUrlError(v: string): string | undefined {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return 'must be an http:// or https:// URL';
  }
  return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : 'must be an http:// or https:// URL';
}

function jwksError(v: string): string | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(v);
  } catch (e) {
    return `must be a JSON Web Key Set: ${(e as Error).message}`;
  }
  if (doc === null || typeof doc !== 'object' || !Array.isArray((doc as { keys?: unknown }).keys)) {
    return 'must be a JSON Web Key Set: a JSON object with a "keys" array';
  }
  return undefined;
}

const jwtRule = z
  .strictObject(
    {
      issuer: str().min(1, 'required'),
      audiences: list(str().min(1, 'must not be empty')).optional(),
      jwksUri: str()
        .superRefine((v, ctx) => {
          const err = httpUrlError(v);
          if (err) ctx.addIssue({ code: 'custom', message: err });
        })
        .optional(),
      jwks: str()
        .superRefine((v, ctx) => {
          const err = jwksError(v);
          if (err) ctx.addIssue({ code: 'custom', message: err });
        })
        .optional(),
      fromHeaders: list(
        z.strictObject({ name: headerName, prefix: str().optional() }, expected('a mapping with name and prefix')),
      ).optional(),
      fromParams: list(str().min(1, 'must not be empty')).optional(),
      fromCookies: list(str().min(1, 'must not be empty')).optional(),
      outputPayloadToHeader: headerName.optional(),
      forwardOriginalToken: z.boolean(expected('true or false')).optional(),
      outputClaimToHeaders: list(
        z.strictObject(
          { header: headerName, claim: str().min(1, 'required') },
          expected('a mapping with header and claim'),
        ),
      ).optional(),
      timeout: duration
        .refine((d) => !(durationMsOrNaN(d) <= 0), 'must be greater than 0')
        .optional(),
    },
    expected('a mapping with issuer'),
  )
  .superRefine((r, ctx) => {
    if (r.jwks !== undefined && r.jwksUri !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['jwks'], message: 'jwks and jwksUri are mutually exclusive' });
    }
  });

const requestAuthenticationSpec = z.strictObject(
  {
    selector: workloadSelector.optional(),
    targetRef: policyTargetRef.optional(),
    targetRefs: list(policyTargetRef).max(16, 'at most 16 targetRefs').optional(),
    jwtRules: list(jwtRule).max(4096, 'at most 4096 jwtRules').optional(),
  },
  expected('a mapping'),
);

export type RequestAuthenticationSpec = z.infer<typeof requestAuthenticationSpec>;
export type JwtRule = z.infer<typeof jwtRule>;

interface Targeted {
  selector?: { matchLabels?: Record<string, string> };
  targetRef?: PolicyTargetRef;
  targetRefs?: PolicyTargetRef[];
}

function checkTargets(r: Resource, spec: Targeted, add: (path: string, message: string) => void): void {
  if (spec.targetRef && spec.targetRefs) add('spec.targetRef', 'targetRef and targetRefs are mutually exclusive; use targetRefs');
  if (spec.selector && (spec.targetRef || spec.targetRefs)) {
    add(
      spec.targetRefs ? 'spec.targetRefs' : 'spec.targetRef',
      'selector and targetRefs are mutually exclusive: selector binds the policy to workloads (enforced by ztunnel), targetRefs to a waypoint',
    );
  }
  const refs: [string, PolicyTargetRef][] = [
    ...(spec.targetRef ? [['spec.targetRef', spec.targetRef] as [string, PolicyTargetRef]] : []),
    ...(spec.targetRefs ?? []).map((t, i) => [`spec.targetRefs[${i}]`, t] as [string, PolicyTargetRef]),
  ];
  for (const [path, ref] of refs) {
    if (ref.namespace !== undefined && ref.namespace !== r.metadata.namespace) {
      add(`${path}.namespace`, `must be the policy's own namespace "${r.metadata.namespace}": cross-namespace targets are not supported`);
    }
  }
}

function targetSummary(spec: Targeted): string {
  if (spec.selector) {
    return Object.entries(spec.selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<all>';
  }
  const refs = spec.targetRefs ?? (spec.targetRef ? [spec.targetRef] : []);
  return refs.length > 0 ? refs.map((t) => `${t.kind}/${t.name}`).join(',') : '<namespace>';
}

export const authorizationPolicyKind: KindDef = {
  kind: 'AuthorizationPolicy',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'authorizationpolicies',
  shortNames: ['ap'],
  spec: authorizationPolicySpec,
  check(r, add) {
    const spec = r.spec as AuthorizationPolicySpec;
    checkTargets(r, spec, add);
    // Without targetRefs ztunnel enforces the policy and cannot see HTTP attributes. As in
    // Istio ambient the policy is accepted and fails closed at translation (an ALLOW rule
    // needing them never matches; a DENY rule applies on its L4 conditions alone), so
    // existing manifests apply unchanged and never open more than they say.
  },
  wide: (r) => {
    const spec = r.spec as AuthorizationPolicySpec;
    return {
      ACTION: spec.action,
      TARGET: targetSummary(spec),
      RULES: spec.rules === undefined ? '<none>' : String(spec.rules.length),
    };
  },
};

export const peerAuthenticationKind: KindDef = {
  kind: 'PeerAuthentication',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'peerauthentications',
  shortNames: ['pa'],
  spec: peerAuthenticationSpec,
  check(r, add) {
    const spec = r.spec as PeerAuthenticationSpec;
    // A port number only means something for a specific set of workloads.
    if (spec.portLevelMtls && !spec.selector) add('spec.portLevelMtls', 'requires a selector: port-level mTLS applies to selected workloads only');
  },
  wide: (r) => {
    const spec = r.spec as PeerAuthenticationSpec;
    return {
      MODE: spec.mtls?.mode ?? 'UNSET',
      SELECTOR: spec.selector ? targetSummary(spec) : '<namespace>',
      'PORT-MODES': Object.entries(spec.portLevelMtls ?? {}).map(([p, m]) => `${p}=${m.mode}`).join(','),
    };
  },
};

export const requestAuthenticationKind: KindDef = {
  kind: 'RequestAuthentication',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'requestauthentications',
  shortNames: ['ra'],
  spec: requestAuthenticationSpec,
  check(r, add) {
    checkTargets(r, r.spec as RequestAuthenticationSpec, add);
  },
  wide: (r) => {
    const spec = r.spec as RequestAuthenticationSpec;
    return {
      TARGET: targetSummary(spec),
      ISSUERS: (spec.jwtRules ?? []).map((j) => j.issuer).join(','),
    };
  },
};

export const kinds: KindDef[] = [authorizationPolicyKind, peerAuthenticationKind, requestAuthenticationKind];
