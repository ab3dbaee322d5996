/**
 * Local (per waypoint replica) rate limiting: a token bucket per route rule, answered with 429 and
 * response flag RL, like Envoy's local_ratelimit filter.
 *
 * Neither the Gateway API nor Istio's VirtualService has a field for it, so it is read from the
 * route object's annotation `ambit.io/local-rate-limit`, e.g. "100/s", "100/s burst 20",
 * "600/m burst 50". The bucket holds `burst` tokens (default: the rate's count) and refills at the
 * rate; every rule of the annotated route gets a bucket of its own.
 */

import { RateLimitSpec } from '../../../lib/api/annotations';

export { RATE_LIMIT_ANNOTATION, parseRateLimit, RateLimitParseError } from '../../../lib/api/annotations';
export type { RateLimitSpec };

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
