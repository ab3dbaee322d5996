import { z } from 'zod';
import { dnsLabel, dnsSubdomain, duration, expected, httpFieldValue, ipAddress, labelMap, oneOf, durationMsOrNaN, port, refused, regexError } from '../meta';
import type { KindDef } from './types';

const API_VERSIONS = ['networking.istio.io/v1', 'networking.istio.io/v1beta1', 'networking.istio.io/v1alpha3'];

const str = () => z.string(expected('a string'));
const list = <T extends z.ZodType>(item: T) => z.array(item, expected('a list'));
const int = () => z.int(expected('an integer'));
const nonNegativeInt = () => int().min(0, 'must be 0 or more');
const bool = () => z.boolean(expected('true or false'));
// Piping through a plain value first turns a missing field into "required" instead of zod's type error.
const portNumber = z.number(expected('a port number')).pipe(port);
const subsetName = z.string(expected('a name')).pipe(dnsLabel);

/** Envoy rejects sub-millisecond timers, so Istio does too. */
const positiveDuration = duration.refine((d) => !(durationMsOrNaN(d) < 1), 'must be at least 1ms');


// Istio accepts mixed case in host names (and lowercases them); Kubernetes Service names are always lowercase anyway.
const DOMAIN_RE = /^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$/;

/** A service host as Istio writes it: short name ("reviews"), FQDN, or wildcard ("*", "*.example.com"). */
const wildcardHost = str()
  .max(255, 'must be at most 255 characters')
  .refine((h) => h === '*' || DOMAIN_RE.test(h.startsWith('*.') ? h.slice(2) : h), 'must be a DNS name such as "reviews" or "reviews.demo.svc.cluster.local", or a wildcard such as "*.example.com"');

const destinationHost = str()
  .max(255, 'must be at most 255 characters')
  .refine((h) => DOMAIN_RE.test(h), 'must be a service host name such as "reviews" or "reviews.demo.svc.cluster.local" (no wildcards)');

const exportTo = list(
  str().refine((v) => v === '.' || v === '*' || v === '~' || dnsLabel.safeParse(v).success, 'must be ".", "*", "~" or a namespace name'),
).superRefine((vs, ctx) => {
  if (vs.includes('~') && vs.length > 1) ctx.addIssue({ code: 'custom', message: '"~" (export nowhere) cannot be combined with other values' });
});

// ---------------------------------------------------------------------------------------------
// DestinationRule

const consistentHash = z
  .strictObject(
    {
      httpHeaderName: str().min(1, 'must not be empty').optional(),
      httpCookie: z
        .strictObject(
          {
            name: str().min(1, 'required'),
            path: str().optional(),
            ttl: duration.optional(),
          },
          expected('a mapping with name'),
        )
        .optional(),
      useSourceIp: bool().optional(),
      httpQueryParameterName: str().min(1, 'must not be empty').optional(),
      minimumRingSize: nonNegativeInt().optional(),
    },
    expected('a mapping'),
  )
  .superRefine((h, ctx) => {
    const keys = (['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'] as const).filter((k) => h[k] !== undefined);
    if (keys.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is required${keys.length > 1 ? ` (got ${keys.join(', ')})` : ''}`,
      });
    }
  });

const SIMPLE_LB = ['UNSPECIFIED', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'] as const;

const loadBalancer = z
  .strictObject(
    {
      // LEAST_CONN is Istio's deprecated name for LEAST_REQUEST; older manifests still use it.
      simple: z
        .enum([...SIMPLE_LB, 'LEAST_CONN'], { error: `must be one of ${SIMPLE_LB.join(', ')}` })
        .transform((v) => (v === 'LEAST_CONN' ? 'LEAST_REQUEST' : v))
        .optional(),
      consistentHash: consistentHash.optional(),
    },
    expected('a mapping with simple or consistentHash'),
  )
  .superRefine((lb, ctx) => {
    if (lb.simple !== undefined && lb.consistentHash !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['consistentHash'], message: 'simple and consistentHash are mutually exclusive' });
    }
  });

const connectionPool = z.strictObject(
  {
    tcp: z
      .strictObject(
        {
          maxConnections: nonNegativeInt().optional(),
          connectTimeout: positiveDuration.optional(),
          idleTimeout: positiveDuration.optional(),
          maxConnectionDuration: positiveDuration.optional(),
          tcpKeepalive: z
            .strictObject(
              {
                probes: nonNegativeInt().optional(),
                time: positiveDuration.optional(),
                interval: positiveDuration.optional(),
              },
              expected('a mapping'),
            )
            .optional(),
        },
        expected('a mapping'),
      )
      .optional(),
    http: z
      .strictObject(
        {
          http1MaxPendingRequests: nonNegativeInt().optional(),
          http2MaxRequests: nonNegativeInt().optional(),
          maxRequestsPerConnection: nonNegativeInt().optional(),
          maxRetries: nonNegativeInt().optional(),
          idleTimeout: positiveDuration.optional(),
          h2UpgradePolicy: oneOf(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']).optional(),
          maxConcurrentStreams: nonNegativeInt().optional(),
          useClientProtocol: z.boolean({ error: 'must be true or false' }).optional(),
        },
        expected('a mapping'),
      )
      .optional(),
  },
  expected('a mapping with tcp or http'),
);

const percentInt = () => int().min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100');

const outlierDetection = z.strictObject(
  {
    consecutive5xxErrors: nonNegativeInt().optional(),
    consecutiveGatewayErrors: nonNegativeInt().optional(),
    interval: positiveDuration.optional(),
    baseEjectionTime: positiveDuration.optional(),
    maxEjectionPercent: percentInt().optional(),
    minHealthPercent: percentInt().optional(),
  },
  expected('a mapping'),
);

const TLS_REFUSED = 'is not supported: the mesh provides mutual TLS between workloads itself, and TLS origination to other destinations is not implemented';

const trafficPolicyFields = {
  loadBalancer: loadBalancer.optional(),
  connectionPool: connectionPool.optional(),
  outlierDetection: outlierDetection.optional(),
  tls: refused(`tls ${TLS_REFUSED}`),
};

const portTrafficPolicy = z.strictObject(
  {
    port: z.strictObject({ number: portNumber }, expected('a mapping with number')),
    ...trafficPolicyFields,
  },
  expected('a mapping with port'),
);

const trafficPolicy = z.strictObject(
  {
    ...trafficPolicyFields,
    portLevelSettings: list(portTrafficPolicy)
      .superRefine((settings, ctx) => {
        const seen = new Set<number>();
        settings.forEach((s, i) => {
          if (seen.has(s.port.number)) ctx.addIssue({ code: 'custom', path: [i, 'port', 'number'], message: `duplicate port ${s.port.number}` });
          seen.add(s.port.number);
        });
      })
      .optional(),
  },
  expected('a mapping'),
);

export type TrafficPolicy = z.infer<typeof trafficPolicy>;

const subset = z.strictObject(
  {
    name: subsetName,
    labels: labelMap.optional(),
    trafficPolicy: trafficPolicy.optional(),
  },
  expected('a mapping with name and labels'),
);

const destinationRuleSpec = z.strictObject(
  {
    host: wildcardHost,
    trafficPolicy: trafficPolicy.optional(),
    subsets: list(subset).optional(),
    exportTo: exportTo.optional(),
  },
  expected('a mapping with host'),
);

export type DestinationRuleSpec = z.infer<typeof destinationRuleSpec>;

// ---------------------------------------------------------------------------------------------
// VirtualService

function stringMatch(allowed: readonly ('exact' | 'prefix' | 'regex')[], allowEmpty: boolean) {
  return z
    .strictObject(
      {
        exact: str().optional(),
        prefix: str().optional(),
        regex: str().optional(),
      },
      expected('a mapping with exact, prefix or regex'),
    )
    .superRefine((m, ctx) => {
      const set = (['exact', 'prefix', 'regex'] as const).filter((k) => m[k] !== undefined);
      for (const k of set) {
        if (!allowed.includes(k)) ctx.addIssue({ code: 'custom', path: [k], message: `is not supported here; use ${allowed.join(' or ')}` });
      }
      if (set.length > 1) ctx.addIssue({ code: 'custom', message: `exactly one of ${allowed.join(', ')} is allowed (got ${set.join(', ')})` });
      if (set.length === 0 && !allowEmpty) ctx.addIssue({ code: 'custom', message: `one of ${allowed.join(', ')} is required` });
      if (m.regex !== undefined) {
        const err = regexError(m.regex);
        if (err) ctx.addIssue({ code: 'custom', path: ['regex'], message: err });
      }
    });
}

const strictStringMatch = stringMatch(['exact', 'prefix', 'regex'], false);
// For headers an empty match `{}` tests that the header is present, as in Istio.
const headerStringMatch = stringMatch(['exact', 'prefix', 'regex'], true);
// Istio does not implement prefix matching of query parameters.
const queryStringMatch = stringMatch(['exact', 'regex'], true);

export type StringMatch = z.infer<typeof strictStringMatch>;

const ISTIO_HEADER_RE = /^[-_A-Za-z0-9]+$/;
const HEADER_NAME_MSG = 'must be an HTTP header name (letters, digits, "-" and "_")';

function namedMap<T extends z.ZodType>(value: T, what: string, nameRe: RegExp, nameMsg: string) {
  return z.record(z.string(), value, expected(`a mapping from ${what} to its value`)).superRefine((m, ctx) => {
    for (const k of Object.keys(m)) if (!nameRe.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: `"${k}" ${nameMsg}` });
  });
}

const headerOperations = z.strictObject(
  {
    set: namedMap(httpFieldValue, 'header name', ISTIO_HEADER_RE, HEADER_NAME_MSG).optional(),
    add: namedMap(httpFieldValue, 'header name', ISTIO_HEADER_RE, HEADER_NAME_MSG).optional(),
    remove: list(str().regex(ISTIO_HEADER_RE, HEADER_NAME_MSG)).optional(),
  },
  expected('a mapping with set, add or remove'),
);

const headers = z.strictObject(
  {
    request: headerOperations.optional(),
    response: headerOperations.optional(),
  },
  expected('a mapping with request or response'),
);

export type HeaderOperations = z.infer<typeof headerOperations>;

const httpMatch = z.strictObject(
  {
    name: str().optional(),
    uri: strictStringMatch.optional(),
    scheme: strictStringMatch.optional(),
    method: strictStringMatch.optional(),
    authority: strictStringMatch.optional(),
    headers: namedMap(headerStringMatch, 'header name', ISTIO_HEADER_RE, HEADER_NAME_MSG).optional(),
    queryParams: namedMap(queryStringMatch, 'parameter name', /^[^&=#\s]+$/, 'must be a query parameter name').optional(),
    withoutHeaders: namedMap(headerStringMatch, 'header name', ISTIO_HEADER_RE, HEADER_NAME_MSG).optional(),
    ignoreUriCase: bool().optional(),
    port: portNumber.optional(),
    sourceLabels: labelMap.optional(),
    sourceNamespace: z.string(expected('a namespace name')).pipe(dnsLabel).optional(),
  },
  expected('a mapping'),
);

const destination = z.strictObject(
  {
    host: destinationHost,
    subset: subsetName.optional(),
    port: z.strictObject({ number: portNumber }, expected('a mapping with number')).optional(),
  },
  expected('a mapping with host'),
);

export type Destination = z.infer<typeof destination>;

const routeDestination = z.strictObject(
  {
    destination,
    weight: int().min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100').optional(),
    headers: headers.optional(),
  },
  expected('a mapping with destination'),
);

const percent = z.strictObject(
  {
    value: z.number(expected('a number')).min(0, 'must be between 0 and 100').max(100, 'must be between 0 and 100'),
  },
  expected('a mapping with value'),
);

const redirect = z
  .strictObject(
    {
      uri: str().optional(),
      authority: str().optional(),
      port: portNumber.optional(),
      derivePort: oneOf(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']).optional(),
      scheme: oneOf(['http', 'https']).optional(),
      redirectCode: int()
        .refine((c) => [301, 302, 303, 307, 308].includes(c), 'must be one of 301, 302, 303, 307, 308')
        .optional(),
    },
    expected('a mapping'),
  )
  .superRefine((r, ctx) => {
    if (r.port !== undefined && r.derivePort !== undefined) ctx.addIssue({ code: 'custom', path: ['derivePort'], message: 'port and derivePort are mutually exclusive' });
  });

const rewrite = z.strictObject(
  {
    uri: str().optional(),
    authority: str().optional(),
  },
  expected('a mapping with uri or authority'),
);

const RETRY_ON = new Set([
  '5xx',
  'gateway-error',
  'reset',
  'connect-failure',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

const retries = z.strictObject(
  {
    attempts: nonNegativeInt().optional(),
    perTryTimeout: positiveDuration.optional(),
    retryOn: str()
      .superRefine((v, ctx) => {
        for (const item of v.split(',').map((s) => s.trim())) {
          if (!RETRY_ON.has(item) && !/^[1-5][0-9][0-9]$/.test(item)) {
            ctx.addIssue({
              code: 'custom',
              message: `"${item}" is not a retry condition: each comma-separated item must be an HTTP status code or one of ${[...RETRY_ON].join(', ')}`,
            });
          }
        }
      })
      .optional(),
    retryRemoteLocalities: bool().optional(),
    // Istio: false lets a retry go back to an endpoint that already failed this request (default true).
    retryIgnorePreviousHosts: bool().optional(),
    /** Istio: the base interval of the exponential backoff between retries (Envoy's default 25ms). */
    backoff: positiveDuration.optional(),
  },
  expected('a mapping'),
);

const GRPC_STATUS = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

const fault = z
  .strictObject(
    {
      delay: z
        .strictObject(
          {
            fixedDelay: positiveDuration,
            percentage: percent.optional(),
          },
          expected('a mapping with fixedDelay'),
        )
        .optional(),
      abort: z
        .strictObject(
          {
            httpStatus: int().min(200, 'must be an HTTP status code between 200 and 599').max(599, 'must be an HTTP status code between 200 and 599').optional(),
            grpcStatus: oneOf(GRPC_STATUS).optional(),
            percentage: percent.optional(),
          },
          expected('a mapping with httpStatus or grpcStatus'),
        )
        .superRefine((a, ctx) => {
          if ((a.httpStatus === undefined) === (a.grpcStatus === undefined)) {
            ctx.addIssue({ code: 'custom', message: 'exactly one of httpStatus and grpcStatus is required' });
          }
        })
        .optional(),
    },
    expected('a mapping with delay or abort'),
  )
  .superRefine((f, ctx) => {
    if (f.delay === undefined && f.abort === undefined) ctx.addIssue({ code: 'custom', message: 'one of delay or abort is required' });
  });

const corsPolicy = z.strictObject(
  {
    allowOrigins: list(strictStringMatch).optional(),
    allowOrigin: list(str()).optional(),
    allowMethods: list(str()).optional(),
    allowHeaders: list(str()).optional(),
    exposeHeaders: list(str()).optional(),
    maxAge: duration.optional(),
    allowCredentials: bool().optional(),
    unmatchedPreflights: oneOf(['UNSPECIFIED', 'FORWARD', 'IGNORE']).optional(),
  },
  expected('a mapping'),
);

const httpRoute = z
  .strictObject(
    {
      name: str().optional(),
      match: list(httpMatch).optional(),
      route: list(routeDestination).optional(),
      redirect: redirect.optional(),
      rewrite: rewrite.optional(),
      timeout: duration.optional(),
      retries: retries.optional(),
      fault: fault.optional(),
      mirror: destination.optional(),
      mirrorPercentage: percent.optional(),
      mirrors: list(z.strictObject({ destination, percentage: percent.optional() }, expected('a mapping with destination'))).optional(),
      corsPolicy: corsPolicy.optional(),
      headers: headers.optional(),
    },
    expected('a mapping'),
  )
  .superRefine((h, ctx) => {
    const add = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    if (h.route === undefined && h.redirect === undefined) add([], 'one of route or redirect is required');
    if (h.route !== undefined && h.redirect !== undefined) add(['redirect'], 'route and redirect are mutually exclusive');
    if (h.rewrite !== undefined && h.redirect !== undefined) add(['rewrite'], 'rewrite and redirect are mutually exclusive');
    if (h.mirror !== undefined && h.mirrors !== undefined) add(['mirrors'], 'mirror and mirrors are mutually exclusive');
    if (h.mirrorPercentage !== undefined && h.mirror === undefined) add(['mirrorPercentage'], 'requires mirror');
  });

export type HTTPRoute = z.infer<typeof httpRoute>;

const ONLY_HTTP = 'only http routes are supported';

const virtualServiceSpec = z.strictObject(
  {
    hosts: list(z.union([wildcardHost, ipAddress], { error: 'must be a DNS name, a wildcard such as "*.example.com", or an IP address' })).min(
      1,
      'at least one host is required',
    ),
    gateways: list(
      str().refine((g) => g === 'mesh' || /^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(g), 'must be "mesh", a Gateway name or "namespace/name"'),
    ).optional(),
    http: list(httpRoute).optional(),
    tcp: refused(`tcp routes are not supported: ${ONLY_HTTP}`),
    tls: refused(`tls routes are not supported: ${ONLY_HTTP}`),
    exportTo: exportTo.optional(),
  },
  expected('a mapping with hosts'),
);

export type VirtualServiceSpec = z.infer<typeof virtualServiceSpec>;

// ---------------------------------------------------------------------------------------------
// WorkloadEntry

const workloadEntrySpec = z.strictObject(
  {
    address: str().refine((a) => ipAddress.safeParse(a).success || dnsSubdomain.safeParse(a).success, 'must be an IP address or a lowercase DNS name'),
    ports: namedMap(portNumber, 'port name', /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a port name (lowercase letters, digits and "-")').optional(),
    labels: labelMap.optional(),
    network: str().max(63, 'must be at most 63 characters').optional(),
    locality: str()
      .regex(/^[^/\s]+(\/[^/\s]+){0,2}$/, 'must be "region", "region/zone" or "region/zone/subzone"')
      .optional(),
    weight: int().min(0, 'must be between 0 and 4294967295').max(4294967295, 'must be between 0 and 4294967295').optional(),
    serviceAccount: z.string(expected('a name')).pipe(dnsSubdomain).optional(),
  },
  expected('a mapping with address'),
);

export type WorkloadEntrySpec = z.infer<typeof workloadEntrySpec>;

// ---------------------------------------------------------------------------------------------

export const destinationRuleKind: KindDef = {
  kind: 'DestinationRule',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'destinationrules',
  shortNames: ['dr'],
  spec: destinationRuleSpec,
  check(r, add) {
    const spec = r.spec as DestinationRuleSpec;
    const names = new Set<string>();
    (spec.subsets ?? []).forEach((s, i) => {
      if (names.has(s.name)) add(`spec.subsets[${i}].name`, `duplicate subset name "${s.name}"`);
      names.add(s.name);
    });
  },
  wide: (r) => {
    const spec = r.spec as DestinationRuleSpec;
    const lb = spec.trafficPolicy?.loadBalancer;
    return {
      HOST: spec.host,
      SUBSETS: (spec.subsets ?? []).map((s) => s.name).join(','),
      'LOAD-BALANCER': lb?.simple ?? (lb?.consistentHash ? 'CONSISTENT_HASH' : ''),
    };
  },
};

export const virtualServiceKind: KindDef = {
  kind: 'VirtualService',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'virtualservices',
  shortNames: ['vs'],
  spec: virtualServiceSpec,
  check(r, add) {
    const spec = r.spec as VirtualServiceSpec;
    (spec.http ?? []).forEach((h, i) => {
      const route = h.route ?? [];
      // A lone destination gets all traffic whatever its weight; a split must account for all of it.
      if (route.length > 1 && route.some((d) => d.weight !== undefined)) {
        const total = route.reduce((sum, d) => sum + (d.weight ?? 0), 0);
        if (total !== 100) add(`spec.http[${i}].route`, `weights must add up to 100 (they add up to ${total})`);
      }
    });
  },
  wide: (r) => {
    const spec = r.spec as VirtualServiceSpec;
    return {
      HOSTS: spec.hosts.join(','),
      GATEWAYS: (spec.gateways ?? []).join(','),
      ROUTES: String((spec.http ?? []).length),
    };
  },
};

export const workloadEntryKind: KindDef = {
  kind: 'WorkloadEntry',
  apiVersions: API_VERSIONS,
  namespaced: true,
  plural: 'workloadentries',
  shortNames: ['we'],
  spec: workloadEntrySpec,
  wide: (r) => {
    const spec = r.spec as WorkloadEntrySpec;
    return {
      ADDRESS: spec.address,
      'SERVICE-ACCOUNT': spec.serviceAccount ?? '',
      PORTS: Object.entries(spec.ports ?? {}).map(([n, p]) => `${n}:${p}`).join(','),
      LABELS: Object.entries(spec.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
    };
  },
};

export const kinds: KindDef[] = [destinationRuleKind, virtualServiceKind, workloadEntryKind];
