/**
 * Local (per waypoint replica) rate limiting: a token bucket per route rule, answered with 429 and
 * response flag RL, like Envoy's local_ratelimit filter.
 *
 * Neither the Gateway API nor Istio's VirtualService has a field for it, so it is read from the
 * route object's annotation `ambit.io/local-rate-limit`, e.g. "100/s", "100/s burst 20",
 * "600/m burst 50". The bucket holds `burst` tokens (default: the rate's count) and refills at the
 * rate; every rule of the annotated route gets a bucket of its own.
 */

export const RATE_LIMIT_ANNOTATION = 'ambit.io/local-rate-limit';

export interface RateLimitSpec {
  /** Tokens added per second. */
  perSecond: number;
  burst: number;
  /** The annotation text, to keep a bucket's state across config updates when it did not change. */
  source: string;
}

const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 };
const FORMAT = /^\s*(\d+)\s*\/\s*(s|m|h)\s*(?:burst\s+(\d+)\s*)?$/;

export class RateLimitParseError extends Error {
  readonly code = 'BadRateLimit';
}

export function parseRateLimit(text: string): RateLimitSpec {
  const m = FORMAT.exec(text);
  if (!m) throw new RateLimitParseError(`${RATE_LIMIT_ANNOTATION}: "${text}" is not "<count>/<s|m|h> [burst <n>]"`);
  const count = Number(m[1]);
  const burst = m[3] !== undefined ? Number(m[3]) : count;
  if (count <= 0 || burst <= 0) throw new RateLimitParseError(`${RATE_LIMIT_ANNOTATION}: count and burst must be positive in "${text}"`);
  return { perSecond: count / UNIT_SECONDS[m[2]], burst, source: text };
}

export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly spec: RateLimitSpec,
    private readonly now: () => number,
  ) {
    this.tokens = spec.burst;
    this.last = now();
  }

  tryTake(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.spec.burst, this.tokens + ((t - this.last) / 1000) * this.spec.perSecond);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** The annotations of a route object, when the control plane passes them (WaypointServiceConfig entries may carry `annotations`). */
export function annotationOf(obj: { namespace: string; name: string; spec: unknown }, key: string): string | undefined {
  const a = (obj as { annotations?: unknown }).annotations;
  if (a === null || typeof a !== 'object') return undefined;
  const v = (a as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : undefined;
}
