import { z } from 'zod';
import { dnsLabel, dnsSubdomain, expected, httpFieldValue, ipAddress, labelMap, oneOf, durationMsOrNaN, port, refused, regexError } from '../meta';
import { WAYPOINT_GATEWAY_CLASS } from '../resource';
import type { KindDef } from './types';

const GATEWAY_GROUP = 'gateway.networking.k8s.io';
const HBONE_PORT = 15008;

const str = () => z.string(expected('a string'));
const list = <T extends z.ZodType>(item: T) => z.array(item, expected('a list'));
const int = () => z.int(expected('an integer'));
// Piping through a plain value first turns a missing field into "required" instead of zod's type error.
const objectName = z.string(expected('a name')).pipe(dnsSubdomain);
const namespaceName = z.string(expected('a namespace name')).pipe(dnsLabel);
const portNumber = z.number(expected('a port number')).pipe(port);
/** Gateway API SectionName: listener and rule names. */
const sectionName = z.string(expected('a name')).pipe(dnsSubdomain);

const HOSTNAME_RE = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const hostname = str()
  .max(253, 'must be at most 253 characters')
  .regex(HOSTNAME_RE, 'must be a lowercase DNS name, optionally starting with "*." (such as "*.example.com")');
const preciseHostname = str()
  .max(253, 'must be at most 253 characters')
  .regex(HOSTNAME_RE, 'must be a lowercase DNS name')
  .refine((h) => !h.startsWith('*'), 'must not be a wildcard');

/** Gateway API Duration (GEP-2257): at most four number+unit parts, units h, m, s, ms; no fractions. */
const GATEWAY_DURATION_RE = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;
const gatewayDuration = str().regex(GATEWAY_DURATION_RE, 'must be a Gateway API duration such as "500ms", "10s" or "1h30m" (units h, m, s, ms)');


const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const headerName = str()
  .min(1, 'must not be empty')
  .max(256, 'must be at most 256 characters')
  .regex(HEADER_NAME, 'must be an HTTP header name (letters, digits and !#$%&\'*+-.^_`|~)');

/** Gateway API's path rules for Exact and PathPrefix: these forms would be normalized away by proxies and never match. */
function pathValueError(v: string): string | undefined {
  if (!v.startsWith('/')) return 'must start with "/"';
  for (const bad of ['//', '/./', '/../', '%2f', '%2F', '#']) if (v.includes(bad)) return `must not contain "${bad}"`;
  if (v.endsWith('/..') || v.endsWith('/.')) return 'must not end with "/." or "/.."';
  return undefined;
}

const pathMatch = z
  .strictObject(
    {
      type: oneOf(['Exact', 'PathPrefix', 'RegularExpression']).default('PathPrefix'),
      value: str().max(1024, 'must be at most 1024 characters').default('/'),
    },
    expected('a mapping with type and value'),
  )
  .superRefine((p, ctx) => {
    // The spec requires a leading "/" of Exact and PathPrefix values only: ".*\\.jpg" is a valid regex path.
    const err = p.type === 'RegularExpression' ? regexError(p.value) : pathValueError(p.value);
    if (err) ctx.addIssue({ code: 'custom', path: ['value'], message: err });
  });

function valueMatch(nameSchema: typeof headerName) {
  return z
    .strictObject(
      {
        type: oneOf(['Exact', 'RegularExpression']).default('Exact'),
        name: nameSchema,
        value: httpFieldValue.refine((v) => v.length > 0, 'must not be empty'),
      },
      expected('a mapping with name and value'),
    )
    .superRefine((m, ctx) => {
      const err = m.type === 'RegularExpression' ? regexError(m.value) : undefined;
      if (err) ctx.addIssue({ code: 'custom', path: ['value'], message: err });
    });
}

const headerMatch = valueMatch(headerName);
const queryParamMatch = valueMatch(
  str()
    .min(1, 'must not be empty')
    .max(256, 'must be at most 256 characters')
    .regex(HEADER_NAME, 'must be a query parameter name (letters, digits and !#$%&\'*+-.^_`|~)'),
);

/** Names are compared case-insensitively for headers (HTTP semantics), exactly for query parameters. */
function uniqueNames(field: string, caseInsensitive: boolean) {
  return (items: { name: string }[], ctx: z.core.$RefinementCtx) => {
    const seen = new Set<string>();
    items.forEach((h, i) => {
      const k = caseInsensitive ? h.name.toLowerCase() : h.name;
      if (seen.has(k)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate ${field} "${h.name}"` });
      seen.add(k);
    });
  };
}

const httpRouteMatch = z.strictObject(
  {
    path: pathMatch.prefault({}),
    headers: list(headerMatch).max(16, 'at most 16 header matches').superRefine(uniqueNames('header', true)).optional(),
    queryParams: list(queryParamMatch).max(16, 'at most 16 query parameter matches').superRefine(uniqueNames('query parameter', false)).optional(),
    method: oneOf(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
  },
  expected('a mapping'),
);

export type HTTPRouteMatch = z.infer<typeof httpRouteMatch>;

const httpHeader = z.strictObject(
  {
    name: headerName,
    value: httpFieldValue.refine((v) => v.length > 0, 'must not be empty'),
  },
  expected('a mapping with name and value'),
);

const headerModifier = z.strictObject(
  {
    set: list(httpHeader).max(16, 'at most 16 headers').superRefine(uniqueNames('header', true)).optional(),
    add: list(httpHeader).max(16, 'at most 16 headers').superRefine(uniqueNames('header', true)).optional(),
    remove: list(headerName)
      .max(16, 'at most 16 headers')
      .superRefine((names, ctx) => uniqueNames('header', true)(names.map((name) => ({ name })), ctx))
      .optional(),
  },
  expected('a mapping with set, add or remove'),
);

export type HeaderModifier = z.infer<typeof headerModifier>;

const pathModifier = z
  .strictObject(
    {
      type: oneOf(['ReplaceFullPath', 'ReplacePrefixMatch']),
      replaceFullPath: str().max(1024, 'must be at most 1024 characters').optional(),
      replacePrefixMatch: str().max(1024, 'must be at most 1024 characters').optional(),
    },
    expected('a mapping with type'),
  )
  .superRefine((p, ctx) => {
    const want = p.type === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
    const other = p.type === 'ReplaceFullPath' ? 'replacePrefixMatch' : 'replaceFullPath';
    if (p[want] === undefined) ctx.addIssue({ code: 'custom', path: [want], message: `required when type is ${p.type}` });
    if (p[other] !== undefined) ctx.addIssue({ code: 'custom', path: [other], message: `must not be set when type is ${p.type}` });
    const v = p[want];
    // The spec's table allows an empty replacePrefixMatch ("/foo" + "" on "/foo/bar" gives "/bar").
    if (v !== undefined && !v.startsWith('/') && !(want === 'replacePrefixMatch' && v === '')) ctx.addIssue({ code: 'custom', path: [want], message: 'must start with "/"' });
  });

const requestRedirect = z.strictObject(
  {
    scheme: oneOf(['http', 'https']).optional(),
    hostname: preciseHostname.optional(),
    path: pathModifier.optional(),
    port: portNumber.optional(),
    statusCode: int()
      .refine((c) => [301, 302, 303, 307, 308].includes(c), 'must be one of 301, 302, 303, 307, 308')
      .default(302),
  },
  expected('a mapping'),
);

const urlRewrite = z.strictObject(
  {
    hostname: preciseHostname.optional(),
    path: pathModifier.optional(),
  },
  expected('a mapping with hostname or path'),
);

const BACKEND_KIND_MSG = 'must be Service (with group ""): other backend kinds are not supported';

/** A Service backend without a port has no meaning: a Service may listen on several. */
function checkServiceRef(ref: { group: string; kind: string; port?: number }, ctx: z.core.$RefinementCtx): void {
  if (ref.group !== '') ctx.addIssue({ code: 'custom', path: ['group'], message: BACKEND_KIND_MSG });
  if (ref.port === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'required for a Service backend' });
}

const backendObjectRefShape = {
  group: str().default(''),
  kind: oneOf(['Service'], { ServiceEntry: BACKEND_KIND_MSG }).default('Service'),
  name: objectName,
  namespace: namespaceName.optional(),
  port: portNumber.optional(),
};

const backendObjectRef = z.strictObject(backendObjectRefShape, expected('a mapping with name and port')).superRefine(checkServiceRef);

const requestMirror = z
  .strictObject(
    {
      backendRef: backendObjectRef,
      percent: int().min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').optional(),
      fraction: z
        .strictObject(
          {
            numerator: int().min(0, 'must be 0 or more'),
            denominator: int().min(1, 'must be 1 or more').default(100),
          },
          expected('a mapping with numerator and denominator'),
        )
        .superRefine((f, ctx) => {
          if (f.numerator > f.denominator) ctx.addIssue({ code: 'custom', path: ['numerator'], message: 'must not be greater than denominator' });
        })
        .optional(),
    },
    expected('a mapping with backendRef'),
  )
  .superRefine((m, ctx) => {
    if (m.percent !== undefined && m.fraction !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['fraction'], message: 'percent and fraction are mutually exclusive' });
    }
  });

const FILTER_CONFIG = {
  RequestHeaderModifier: 'requestHeaderModifier',
  ResponseHeaderModifier: 'responseHeaderModifier',
  RequestRedirect: 'requestRedirect',
  URLRewrite: 'urlRewrite',
  RequestMirror: 'requestMirror',
} as const;
type FilterType = keyof typeof FILTER_CONFIG;
type FilterConfigKey = (typeof FILTER_CONFIG)[FilterType];

const EXTENSION_REF_MSG = 'ExtensionRef filters are not supported';

/** The type names which one config object is present; any other config object is a mistake the author should hear about. */
function filterConsistency(f: { type: FilterType } & Partial<Record<FilterConfigKey, unknown>>, ctx: z.core.$RefinementCtx): void {
  const want = FILTER_CONFIG[f.type];
  if (f[want] === undefined) ctx.addIssue({ code: 'custom', path: [want], message: `required when type is ${f.type}` });
  for (const key of Object.values(FILTER_CONFIG)) {
    if (key !== want && f[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `must not be set when type is ${f.type}` });
  }
}

const httpRouteFilter = z
  .strictObject(
    {
      type: oneOf(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite', 'RequestMirror'], {
        ExtensionRef: EXTENSION_REF_MSG,
      }),
      requestHeaderModifier: headerModifier.optional(),
      responseHeaderModifier: headerModifier.optional(),
      requestRedirect: requestRedirect.optional(),
      urlRewrite: urlRewrite.optional(),
      requestMirror: requestMirror.optional(),
      extensionRef: refused(EXTENSION_REF_MSG),
    },
    expected('a mapping with type'),
  )
  .superRefine(filterConsistency);

export type HTTPRouteFilter = z.infer<typeof httpRouteFilter>;

const grpcRouteFilter = z
  .strictObject(
    {
      type: oneOf(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'], { ExtensionRef: EXTENSION_REF_MSG }),
      requestHeaderModifier: headerModifier.optional(),
      responseHeaderModifier: headerModifier.optional(),
      requestMirror: requestMirror.optional(),
      extensionRef: refused(EXTENSION_REF_MSG),
    },
    expected('a mapping with type'),
  )
  .superRefine(filterConsistency);

export type GRPCRouteFilter = z.infer<typeof grpcRouteFilter>;

// Per-backend filters run after the backend is chosen, when only headers can still change.
const backendFilter = z
  .strictObject(
    {
      type: oneOf(['RequestHeaderModifier', 'ResponseHeaderModifier']),
      requestHeaderModifier: headerModifier.optional(),
      responseHeaderModifier: headerModifier.optional(),
    },
    expected('a mapping with type'),
  )
  .superRefine(filterConsistency);

/** Some filters mean nothing twice: a second redirect or rewrite would contradict the first. */
function noRepeats(types: readonly FilterType[]) {
  return (filters: { type: FilterType }[], ctx: z.core.$RefinementCtx) => {
    const seen = new Set<FilterType>();
    filters.forEach((f, i) => {
      if (types.includes(f.type) && seen.has(f.type)) ctx.addIssue({ code: 'custom', path: [i, 'type'], message: `${f.type} may appear only once` });
      seen.add(f.type);
    });
  };
}

const backendRef = z
  .strictObject(
    {
      ...backendObjectRefShape,
      weight: int().min(0, 'must be between 0 and 1000000').max(1_000_000, 'must be between 0 and 1000000').default(1),
      filters: list(backendFilter).max(16, 'at most 16 filters').superRefine(noRepeats(['RequestHeaderModifier', 'ResponseHeaderModifier'])).optional(),
    },
    expected('a mapping with name and port'),
  )
  .superRefine(checkServiceRef);

export type BackendRef = z.infer<typeof backendRef>;

const parentRef = z
  .strictObject(
    {
      group: str().default(GATEWAY_GROUP),
      kind: oneOf(['Gateway', 'Service']).default('Gateway'),
      namespace: namespaceName.optional(),
      name: objectName,
      sectionName: sectionName.optional(),
      port: portNumber.optional(),
    },
    expected('a mapping with name'),
  )
  .superRefine((p, ctx) => {
    const group = p.kind === 'Gateway' ? GATEWAY_GROUP : '';
    if (p.group !== group) {
      // The group defaults to the Gateway API's own, so a Service parent must say group: "" explicitly.
      const hint = group === '' ? ' (the core group; omitting it means gateway.networking.k8s.io)' : '';
      ctx.addIssue({ code: 'custom', path: ['group'], message: `must be "${group}" for kind ${p.kind}${hint}` });
    }
  });

export type ParentRef = z.infer<typeof parentRef>;

const timeouts = z
  .strictObject(
    {
      request: gatewayDuration.optional(),
      backendRequest: gatewayDuration.optional(),
    },
    expected('a mapping with request or backendRequest'),
  )
  .superRefine((t, ctx) => {
    // "0s" disables the request timeout, so any backendRequest fits inside it.
    if (t.request !== undefined && t.backendRequest !== undefined) {
      const req = durationMsOrNaN(t.request);
      if (req !== 0 && durationMsOrNaN(t.backendRequest) > req) {
        ctx.addIssue({ code: 'custom', path: ['backendRequest'], message: `must not be longer than request (${t.request})` });
      }
    }
  });

const retry = z.strictObject(
  {
    codes: list(int().min(400, 'must be an HTTP status code between 400 and 599').max(599, 'must be an HTTP status code between 400 and 599')).optional(),
    attempts: int().min(0, 'must be 0 or more').optional(),
    backoff: gatewayDuration.optional(),
  },
  expected('a mapping'),
);

const httpRouteRule = z
  .strictObject(
    {
      name: sectionName.optional(),
      matches: list(httpRouteMatch).max(64, 'at most 64 matches').prefault([{}]),
      filters: list(httpRouteFilter)
        .max(16, 'at most 16 filters')
        .superRefine(noRepeats(['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite']))
        .optional(),
      backendRefs: list(backendRef).max(16, 'at most 16 backendRefs').optional(),
      timeouts: timeouts.optional(),
      retry: retry.optional(),
    },
    expected('a mapping'),
  )
  .superRefine((rule, ctx) => {
    const filters = rule.filters ?? [];
    const redirect = filters.findIndex((f) => f.type === 'RequestRedirect');
    const rewrite = filters.findIndex((f) => f.type === 'URLRewrite');
    if (redirect >= 0 && (rule.backendRefs?.length ?? 0) > 0) {
      ctx.addIssue({ code: 'custom', path: ['backendRefs'], message: 'must not be set together with a RequestRedirect filter: a redirected request goes to no backend' });
    }
    if (redirect >= 0 && rewrite >= 0) {
      ctx.addIssue({ code: 'custom', path: ['filters', rewrite, 'type'], message: 'RequestRedirect and URLRewrite may not be used in the same rule' });
    }
    // A prefix replacement needs to know which prefix matched, so the rule must match exactly one prefix.
    filters.forEach((f, i) => {
      const mod = f.requestRedirect?.path ?? f.urlRewrite?.path;
      if (mod?.type !== 'ReplacePrefixMatch') return;
      if (rule.matches.length !== 1 || rule.matches[0].path.type !== 'PathPrefix') {
        const key = f.requestRedirect ? 'requestRedirect' : 'urlRewrite';
        ctx.addIssue({
          code: 'custom',
          path: ['filters', i, key, 'path', 'type'],
          message: 'ReplacePrefixMatch requires the rule to have exactly one match, with a PathPrefix path',
        });
      }
    });
  });

export type HTTPRouteRule = z.infer<typeof httpRouteRule>;

const routeCommon = {
  parentRefs: list(parentRef).max(32, 'at most 32 parentRefs').optional(),
  hostnames: list(hostname).max(16, 'at most 16 hostnames').optional(),
};

const httpRouteSpec = z.strictObject(
  {
    ...routeCommon,
    rules: list(httpRouteRule).max(16, 'at most 16 rules').prefault([{}]),
  },
  expected('a mapping'),
);

export type HTTPRouteSpec = z.infer<typeof httpRouteSpec>;

const GRPC_SERVICE_RE = /^\.?[a-zA-Z_][a-zA-Z_0-9]*(\.[a-zA-Z_][a-zA-Z_0-9]*)*$/;
const GRPC_METHOD_RE = /^[A-Za-z_][A-Za-z_0-9]*$/;

const grpcMethodMatch = z
  .strictObject(
    {
      type: oneOf(['Exact', 'RegularExpression']).default('Exact'),
      service: str().max(1024, 'must be at most 1024 characters').optional(),
      method: str().max(1024, 'must be at most 1024 characters').optional(),
    },
    expected('a mapping with service or method'),
  )
  .superRefine((m, ctx) => {
    if (m.service === undefined && m.method === undefined) ctx.addIssue({ code: 'custom', message: 'one or both of service and method are required' });
    for (const field of ['service', 'method'] as const) {
      const v = m[field];
      if (v === undefined) continue;
      let err: string | undefined;
      if (m.type === 'RegularExpression') err = regexError(v);
      else if (field === 'service' && !GRPC_SERVICE_RE.test(v)) err = 'must be a fully-qualified gRPC service name such as "helloworld.Greeter"';
      else if (field === 'method' && !GRPC_METHOD_RE.test(v)) err = 'must be a gRPC method name such as "SayHello"';
      if (err) ctx.addIssue({ code: 'custom', path: [field], message: err });
    }
  });

const grpcRouteMatch = z.strictObject(
  {
    method: grpcMethodMatch.optional(),
    headers: list(headerMatch).max(16, 'at most 16 header matches').superRefine(uniqueNames('header', true)).optional(),
  },
  expected('a mapping'),
);

const grpcRouteRule = z.strictObject(
  {
    name: sectionName.optional(),
    matches: list(grpcRouteMatch).max(64, 'at most 64 matches').optional(),
    filters: list(grpcRouteFilter)
      .max(16, 'at most 16 filters')
      .superRefine(noRepeats(['RequestHeaderModifier', 'ResponseHeaderModifier']))
      .optional(),
    backendRefs: list(backendRef).max(16, 'at most 16 backendRefs').optional(),
  },
  expected('a mapping'),
);

export type GRPCRouteRule = z.infer<typeof grpcRouteRule>;

const grpcRouteSpec = z.strictObject(
  {
    ...routeCommon,
    rules: list(grpcRouteRule).max(16, 'at most 16 rules').optional(),
  },
  expected('a mapping'),
);

export type GRPCRouteSpec = z.infer<typeof grpcRouteSpec>;

const labelSelector = z.strictObject(
  {
    matchLabels: labelMap.optional(),
    matchExpressions: list(
      z
        .strictObject(
          {
            key: str().min(1, 'required'),
            operator: oneOf(['In', 'NotIn', 'Exists', 'DoesNotExist']),
            values: list(str()).optional(),
          },
          expected('a mapping with key and operator'),
        )
        .superRefine((e, ctx) => {
          const needsValues = e.operator === 'In' || e.operator === 'NotIn';
          if (needsValues && (e.values ?? []).length === 0) ctx.addIssue({ code: 'custom', path: ['values'], message: `required for operator ${e.operator}` });
          if (!needsValues && e.values !== undefined && e.values.length > 0) {
            ctx.addIssue({ code: 'custom', path: ['values'], message: `must be empty for operator ${e.operator}` });
          }
        }),
    ).optional(),
  },
  expected('a label selector'),
);

const allowedRoutes = z.strictObject(
  {
    namespaces: z
      .strictObject(
        {
          from: oneOf(['All', 'Same', 'Selector']).default('Same'),
          selector: labelSelector.optional(),
        },
        expected('a mapping with from'),
      )
      .superRefine((n, ctx) => {
        if (n.from === 'Selector' && n.selector === undefined) ctx.addIssue({ code: 'custom', path: ['selector'], message: 'required when from is Selector' });
        if (n.from !== 'Selector' && n.selector !== undefined) ctx.addIssue({ code: 'custom', path: ['selector'], message: `must not be set when from is ${n.from}` });
      })
      .prefault({}),
    kinds: list(
      z
        .strictObject(
          {
            group: str().default(GATEWAY_GROUP),
            kind: oneOf(['HTTPRoute', 'GRPCRoute']),
          },
          expected('a mapping with kind'),
        )
        .superRefine((k, ctx) => {
          if (k.group !== GATEWAY_GROUP) ctx.addIssue({ code: 'custom', path: ['group'], message: `must be "${GATEWAY_GROUP}"` });
        }),
    )
      .max(8, 'at most 8 kinds')
      .optional(),
  },
  expected('a mapping'),
);

const secretRef = z
  .strictObject(
    {
      group: str().default(''),
      kind: oneOf(['Secret']).default('Secret'),
      name: objectName,
      namespace: namespaceName.optional(),
    },
    expected('a mapping with name'),
  )
  .superRefine((s, ctx) => {
    if (s.group !== '') ctx.addIssue({ code: 'custom', path: ['group'], message: 'must be "" for kind Secret' });
  });

const listenerTls = z.strictObject(
  {
    mode: oneOf(['Terminate', 'Passthrough']).default('Terminate'),
    certificateRefs: list(secretRef).max(64, 'at most 64 certificateRefs').optional(),
  },
  expected('a mapping'),
);

const listener = z.strictObject(
  {
    name: sectionName,
    hostname: hostname.optional(),
    port: portNumber,
    protocol: oneOf(['HTTP', 'HTTPS', 'TLS', 'TCP', 'UDP', 'HBONE', 'GRPC']),
    tls: listenerTls.optional(),
    allowedRoutes: allowedRoutes.prefault({}),
  },
  expected('a mapping with name, port and protocol'),
);

export type Listener = z.infer<typeof listener>;

const gatewayAddress = z
  .strictObject(
    {
      type: oneOf(['IPAddress', 'Hostname', 'NamedAddress']).default('IPAddress'),
      value: str().min(1, 'required').max(253, 'must be at most 253 characters'),
    },
    expected('a mapping with type and value'),
  )
  .superRefine((a, ctx) => {
    if (a.type === 'IPAddress' && !ipAddress.safeParse(a.value).success) ctx.addIssue({ code: 'custom', path: ['value'], message: 'must be an IPv4 or IPv6 address' });
    if (a.type === 'Hostname' && !preciseHostname.safeParse(a.value).success) ctx.addIssue({ code: 'custom', path: ['value'], message: 'must be a lowercase DNS name' });
  });

const gatewaySpec = z.strictObject(
  {
    gatewayClassName: z.string(expected('a name')).pipe(dnsSubdomain),
    listeners: list(listener).min(1, 'a Gateway needs at least one listener').max(64, 'at most 64 listeners'),
    addresses: list(gatewayAddress).max(16, 'at most 16 addresses').optional(),
  },
  expected('a mapping'),
);

export type GatewaySpec = z.infer<typeof gatewaySpec>;

export const gatewayKind: KindDef = {
  kind: 'Gateway',
  apiVersions: [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`],
  namespaced: true,
  plural: 'gateways',
  shortNames: ['gtw'],
  spec: gatewaySpec,
  check(r, add) {
    const spec = r.spec as GatewaySpec;
    const names = new Set<string>();
    const endpoints = new Set<string>();
    spec.listeners.forEach((l, i) => {
      const at = `spec.listeners[${i}]`;
      if (names.has(l.name)) add(`${at}.name`, `duplicate listener name "${l.name}"`);
      names.add(l.name);
      const endpoint = `${l.port}/${l.protocol}/${l.hostname ?? ''}`;
      if (endpoints.has(endpoint)) add(`${at}.port`, `another listener already serves port ${l.port} ${l.protocol}${l.hostname ? ` for ${l.hostname}` : ''}`);
      endpoints.add(endpoint);
      const needsTls = l.protocol === 'HTTPS' || l.protocol === 'TLS';
      if (needsTls && !l.tls) add(`${at}.tls`, `required for protocol ${l.protocol}`);
      if (!needsTls && l.tls) add(`${at}.tls`, `must not be set for protocol ${l.protocol}`);
      if (l.protocol === 'HTTPS' && l.tls?.mode === 'Passthrough') add(`${at}.tls.mode`, 'must be Terminate for protocol HTTPS; use protocol TLS for Passthrough');
      if (l.tls?.mode === 'Terminate' && (l.tls.certificateRefs ?? []).length === 0) add(`${at}.tls.certificateRefs`, 'required when mode is Terminate');
      if ((l.protocol === 'TCP' || l.protocol === 'UDP') && l.hostname !== undefined) add(`${at}.hostname`, `must not be set for protocol ${l.protocol}`);
    });
    if (spec.gatewayClassName === WAYPOINT_GATEWAY_CLASS && !spec.listeners.some((l) => l.protocol === 'HBONE' && l.port === HBONE_PORT)) {
      add('spec.listeners', `a waypoint (gatewayClassName ${WAYPOINT_GATEWAY_CLASS}) needs a listener with protocol HBONE on port ${HBONE_PORT}, such as {name: mesh, port: ${HBONE_PORT}, protocol: HBONE}`);
    }
  },
  wide: (r) => {
    const spec = r.spec as GatewaySpec;
    return {
      CLASS: spec.gatewayClassName,
      LISTENERS: spec.listeners.map((l) => `${l.name}:${l.port}/${l.protocol}`).join(','),
      ADDRESSES: (spec.addresses ?? []).map((a) => a.value).join(','),
    };
  },
};

function parentsColumn(refs: ParentRef[] | undefined): string {
  return (refs ?? []).map((p) => `${p.kind}/${p.namespace ? `${p.namespace}/` : ''}${p.name}${p.sectionName ? `:${p.sectionName}` : ''}`).join(',');
}

function backendsColumn(rules: { backendRefs?: BackendRef[] }[]): string {
  const out: string[] = [];
  for (const rule of rules) for (const b of rule.backendRefs ?? []) out.push(`${b.name}:${b.port ?? ''}${rule.backendRefs && rule.backendRefs.length > 1 ? `(${b.weight})` : ''}`);
  return out.join(',');
}

export const httpRouteKind: KindDef = {
  kind: 'HTTPRoute',
  apiVersions: [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1beta1`],
  namespaced: true,
  plural: 'httproutes',
  shortNames: [],
  spec: httpRouteSpec,
  wide: (r) => {
    const spec = r.spec as HTTPRouteSpec;
    return { PARENTS: parentsColumn(spec.parentRefs), HOSTNAMES: (spec.hostnames ?? []).join(','), BACKENDS: backendsColumn(spec.rules) };
  },
};

export const grpcRouteKind: KindDef = {
  kind: 'GRPCRoute',
  // GRPCRoute went from v1alpha2 straight to v1; no v1beta1 was ever served upstream.
  apiVersions: [`${GATEWAY_GROUP}/v1`, `${GATEWAY_GROUP}/v1alpha2`],
  namespaced: true,
  plural: 'grpcroutes',
  shortNames: [],
  spec: grpcRouteSpec,
  wide: (r) => {
    const spec = r.spec as GRPCRouteSpec;
    return { PARENTS: parentsColumn(spec.parentRefs), HOSTNAMES: (spec.hostnames ?? []).join(','), BACKENDS: backendsColumn(spec.rules ?? []) };
  },
};

export const kinds: KindDef[] = [gatewayKind, httpRouteKind, grpcRouteKind];
