/**
 * Ambit's own annotations (`ambit.io/...`): extensions for what the Istio and Gateway API
 * kinds have no field for. Checked at the API edge like fields are, so a typo or a bad
 * value is refused with the annotation named instead of being ignored by the data plane.
 */
export const RATE_LIMIT_ANNOTATION = 'ambit.io/local-rate-limit';
export const OTLP_ENDPOINT_ANNOTATION = 'ambit.io/otlp-endpoint';
export const NODE_ANNOTATION = 'ambit.io/node';

export interface RateLimitSpec {
  /** Tokens added per second. */
  perSecond: number;
  burst: number;
  /** The annotation text, to keep a bucket's state across config updates when it did not change. */
  source: string;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };
const RATE_FORMAT = /^\s*(\d+)\s*\/\s*(s|m|h)\s*(?:burst\s+(\d+)\s*)?$/;

export class RateLimitParseError extends Error {
  readonly code = 'BadRateLimit';
}

/** "100/s", "600/m burst 50": a token bucket holding `burst` tokens (default: the count), refilled at the rate. */
export function parseRateLimit(text: string): RateLimitSpec {
  const m = RATE_FORMAT.exec(text);
  if (!m) throw new RateLimitParseError(`${RATE_LIMIT_ANNOTATION}: "${text}" is not "<count>/<s|m|h> [burst <n>]"`);
  const count = Number(m[1]);
  const burst = m[3] !== undefined ? Number(m[3]) : count;
  if (count <= 0 || burst <= 0) throw new RateLimitParseError(`${RATE_LIMIT_ANNOTATION}: count and burst must be positive in "${text}"`);
  return { perSecond: count / UNIT_SECONDS[m[2]], burst, source: text };
}

/** Which kinds each annotation belongs on, and how its value is checked (a message when it is bad). */
const KNOWN: Record<string, { kinds: string[]; check: (v: string) => string | undefined }> = {
  [RATE_LIMIT_ANNOTATION]: {
    kinds: ['HTTPRoute', 'GRPCRoute', 'VirtualService'],
    check: (v) => {
      try {
        parseRateLimit(v);
        return undefined;
      } catch (err) {
        return (err as Error).message.replace(`${RATE_LIMIT_ANNOTATION}: `, '');
      }
    },
  },
  [OTLP_ENDPOINT_ANNOTATION]: {
    kinds: ['Gateway'],
    check: (v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : `"${v}" must be an http or https URL`;
      } catch {
        return `"${v}" is not a URL such as http://collector:4318/v1/traces`;
      }
    },
  },
  [NODE_ANNOTATION]: { kinds: ['Gateway'], check: (v) => (/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(v) ? undefined : `"${v}" is not a node name`) },
};

/** Errors for the ambit.io/ annotations of one resource: unknown keys, wrong kind, bad values. */
export function checkAmbitAnnotations(kind: string, annotations: Record<string, string> | undefined): Array<{ path: string; message: string }> {
  const out: Array<{ path: string; message: string }> = [];
  for (const [k, v] of Object.entries(annotations ?? {})) {
    if (!k.startsWith('ambit.io/')) continue;
    const path = `metadata.annotations.${k}`;
    const known = KNOWN[k];
    if (!known) {
      out.push({ path, message: `unknown Ambit annotation (known: ${Object.keys(KNOWN).join(', ')})` });
      continue;
    }
    if (!known.kinds.includes(kind)) {
      out.push({ path, message: `only applies to ${known.kinds.join(', ')}` });
      continue;
    }
    const msg = known.check(v);
    if (msg) out.push({ path, message: msg });
  }
  return out;
}

/**
 * `istio.io/waypoint-for` on a waypoint Gateway: this waypoint serves traffic addressed to
 * services. Workload-addressed traffic (`workload`, `all`) would reach a waypoint that has no
 * config for it, so it is refused here rather than failing at the data plane.
 */
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';

export function checkWaypointLabels(kind: string, labels: Record<string, string> | undefined): Array<{ path: string; message: string }> {
  const v = labels?.[WAYPOINT_FOR_LABEL];
  if (kind !== 'Gateway' || v === undefined || v === 'service' || v === 'none') return [];
  return [{ path: `metadata.labels.${WAYPOINT_FOR_LABEL}`, message: `"${v}" is not supported: Ambit waypoints serve service traffic ("service", the default, or "none")` }];
}
