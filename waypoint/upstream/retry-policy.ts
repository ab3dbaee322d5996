import type { RandomSource } from './weighted-pick';

/** Parsed form of Istio's retryOn: named conditions plus the codes for retriable-status-codes. */
export interface RetryConditions {
  readonly on: ReadonlySet<string>;
  readonly statusCodes: ReadonlySet<number>;
}

/**
 * Istio's retry policy when a route sets none: the failures where the request most likely never
 * reached the application, so retrying is safe even for non-idempotent requests.
 */
export const ISTIO_DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes,503';

/**
 * Istio accepts bare status codes among the retryOn items and turns them into Envoy's
 * retriable-status-codes; so do we. "retriable-status-codes" without any code matches nothing,
 * as in Istio.
 */
export function parseRetryOn(retryOn: string = ISTIO_DEFAULT_RETRY_ON): RetryConditions {
  const on = new Set<string>();
  const statusCodes = new Set<number>();
  for (const raw of retryOn.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    if (/^[1-5][0-9][0-9]$/.test(item)) {
      statusCodes.add(Number(item));
      on.add('retriable-status-codes');
    } else {
      on.add(item);
    }
  }
  return { on, statusCodes };
}

/** What became of one upstream attempt. */
export interface AttemptOutcome {
  readonly status?: number;
  /** grpc-status from the response headers or trailers. */
  readonly grpcStatus?: number;
  readonly connectFailure?: boolean;
  /** The stream or connection was reset after it was established (includes disconnects mid-response). */
  readonly reset?: boolean;
  /** HTTP/2 REFUSED_STREAM: the server guarantees it did not process the request. */
  readonly refusedStream?: boolean;
  readonly perTryTimeout?: boolean;
}

export type RetryDecision = { readonly retry: true; readonly reason: string } | { readonly retry: false; readonly reason: string };

const GRPC_CODES: Readonly<Record<string, number>> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
};

/**
 * Which retryOn condition (if any) covers this outcome. Follows Envoy's router: "5xx" and
 * "gateway-error" also cover resets, connect failures and per-try timeouts, because a missing
 * response is treated as the proxy's own 503/504.
 */
export function matchRetryCondition(conds: RetryConditions, o: AttemptOutcome): string | null {
  const has = (c: string) => conds.on.has(c);
  const noResponse = o.connectFailure || o.reset || o.refusedStream || o.perTryTimeout;
  if (noResponse) {
    if (o.connectFailure && has('connect-failure')) return 'connect-failure';
    if (o.refusedStream && has('refused-stream')) return 'refused-stream';
    if ((o.reset || o.connectFailure || o.refusedStream) && has('reset')) return 'reset';
    if (has('5xx')) return '5xx';
    if (has('gateway-error')) return 'gateway-error';
    return null;
  }
  const s = o.status;
  if (s !== undefined) {
    if (s >= 500 && s <= 599 && has('5xx')) return '5xx';
    if ((s === 502 || s === 503 || s === 504) && has('gateway-error')) return 'gateway-error';
    if (s === 409 && has('retriable-4xx')) return 'retriable-4xx';
    if (has('retriable-status-codes') && conds.statusCodes.has(s)) return 'retriable-status-codes';
  }
  if (o.grpcStatus !== undefined) {
    for (const [name, code] of Object.entries(GRPC_CODES)) if (o.grpcStatus === code && has(name)) return name;
  }
  return null;
}

export interface RetryContext {
  /** False once any of the request body has been streamed upstream without being kept: it cannot be sent again. */
  readonly bodyReplayable: boolean;
  /** Retries already made for this request (0 after the first attempt fails). */
  readonly retriesSoFar: number;
  /** Istio's retries.attempts: the number of retries allowed, not counting the first attempt. */
  readonly maxRetries: number;
}

export function shouldRetry(conds: RetryConditions, outcome: AttemptOutcome, ctx: RetryContext): RetryDecision {
  const cond = matchRetryCondition(conds, outcome);
  if (cond === null) return { retry: false, reason: 'not retryable' };
  if (ctx.retriesSoFar >= ctx.maxRetries) return { retry: false, reason: 'retries exhausted' };
  if (!ctx.bodyReplayable) return { retry: false, reason: 'request body not replayable' };
  return { retry: true, reason: cond };
}

export const BACKOFF_BASE_MS = 25;
/** Envoy caps at 10 × base. */
export const BACKOFF_MAX_MS = 250;

/**
 * Full-jitter exponential backoff before retry number `retry` (1-based): uniform in
 * [0, min(base × 2^(retry-1), max)). Full jitter, as in Envoy, spreads retries from many clients
 * that failed together so they don't return in lock-step.
 */
export function backoffMs(retry: number, random: RandomSource = Math.random, baseMs = BACKOFF_BASE_MS, maxMs = baseMs * 10): number {
  const ceiling = Math.min(baseMs * 2 ** Math.max(0, retry - 1), maxMs);
  return Math.max(0, Math.min(Math.floor(random() * ceiling), ceiling - 1));
}

export interface RetryBudgetOptions {
  /** Envoy retry_budget.budget_percent; default 20. */
  readonly budgetPercent?: number;
  /** Envoy retry_budget.min_retry_concurrency; default 3. Lets a quiet service still retry. */
  readonly minRetryConcurrency?: number;
  /** Hard cap on concurrent retries (Istio connectionPool.http.maxRetries); 0 or unset is unlimited, as in Istio. */
  readonly maxConcurrentRetries?: number;
}

export interface RetryBudget {
  onRequestStart(destination: string): void;
  onRequestEnd(destination: string): void;
  /**
   * Ask before each retry attempt; on true, call release() when that attempt finishes. `maxConcurrent`
   * (the destination's connectionPool.http.maxRetries, 0 = none) caps retries in flight below the budget.
   */
  tryAcquire(destination: string, maxConcurrent?: number): boolean;
  release(destination: string): void;
  stats(destination: string): { active: number; retries: number; limit: number };
}

/**
 * Envoy's retry budget: concurrent retries may be at most budgetPercent of the requests in flight
 * (but never fewer than minRetryConcurrency), so a failing backend sees bounded extra load instead of
 * a retry storm multiplying every request by attempts+1.
 *
 * Unlike Envoy, which measures against all active upstream requests (retries included, letting
 * retries reach 25% extra load at a 20% budget), the base here is requests in flight that do not
 * currently hold a retry: retries then add at most budgetPercent on top of first attempts.
 */
export function createRetryBudget(opts: RetryBudgetOptions = {}): RetryBudget {
  const percent = opts.budgetPercent ?? 20;
  const minConcurrency = opts.minRetryConcurrency ?? 3;
  const cap = opts.maxConcurrentRetries || Number.POSITIVE_INFINITY;
  const state = new Map<string, { active: number; retries: number }>();
  const get = (d: string) => {
    let s = state.get(d);
    if (s === undefined) {
      s = { active: 0, retries: 0 };
      state.set(d, s);
    }
    return s;
  };
  const limitOf = (s: { active: number; retries: number }) =>
    Math.min(cap, Math.max(minConcurrency, Math.floor((percent * Math.max(0, s.active - s.retries)) / 100)));
  // Dropping idle destinations keeps the map from growing with every host ever seen.
  const gc = (d: string, s: { active: number; retries: number }) => {
    if (s.active === 0 && s.retries === 0) state.delete(d);
  };
  return {
    onRequestStart(d) {
      get(d).active++;
    },
    onRequestEnd(d) {
      const s = get(d);
      s.active = Math.max(0, s.active - 1);
      gc(d, s);
    },
    tryAcquire(d, maxConcurrent) {
      const s = get(d);
      if (s.retries >= limitOf(s) || (maxConcurrent !== undefined && maxConcurrent > 0 && s.retries >= maxConcurrent)) {
        gc(d, s);
        return false;
      }
      s.retries++;
      return true;
    },
    release(d) {
      const s = get(d);
      s.retries = Math.max(0, s.retries - 1);
      gc(d, s);
    },
    stats(d) {
      const s = state.get(d) ?? { active: 0, retries: 0 };
      return { active: s.active, retries: s.retries, limit: limitOf(s) };
    },
  };
}
