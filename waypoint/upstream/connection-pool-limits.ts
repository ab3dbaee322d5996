import type { TrafficPolicy } from '../../lib/api/kinds/networking';

/** A DestinationRule's trafficPolicy.connectionPool, as validated. */
export type ConnectionPoolSettings = NonNullable<TrafficPolicy['connectionPool']>;

export type PoolAdmission = { readonly ok: true; release(): void } | { readonly ok: false; readonly flag: 'UO' };

export interface ConnectionPoolLimits {
  /** On { ok: false } the caller answers 503 with response flag UO (upstream overflow), as Envoy does. */
  tryStart(): PoolAdmission;
  stats(): { active: number; pending: number; overflows: number };
}

export interface ConnectionPoolOptions {
  /**
   * HTTP/1.1 upstreams hold one request per connection, so requests beyond maxConnections wait
   * (pending) for one to free up; HTTP/2 multiplexes, so only the request limit applies.
   */
  readonly protocol: 'http1' | 'http2';
}

/**
 * Envoy's circuit-breaker counters for one cluster: max_connections (tcp.maxConnections),
 * max_pending_requests (http.http1MaxPendingRequests) and max_requests (http.http2MaxRequests, which
 * Envoy enforces for every protocol despite the name). Istio reads 0 as unset and unset as 2^32-1,
 * i.e. no limit, which is Infinity here.
 *
 * Only counting happens here: the actual waiting for a free connection is the HTTP agent's job
 * (maxSockets = maxConnections); this decides who may join that queue.
 */
export function createConnectionPoolLimits(settings: ConnectionPoolSettings | undefined, opts: ConnectionPoolOptions): ConnectionPoolLimits {
  const limit = (v: number | undefined) => (v ? v : Number.POSITIVE_INFINITY);
  const maxConnections = limit(settings?.tcp?.maxConnections);
  const maxPending = limit(settings?.http?.http1MaxPendingRequests);
  const maxRequests = limit(settings?.http?.http2MaxRequests);
  let active = 0;
  let overflows = 0;
  const pending = () => (opts.protocol === 'http1' ? Math.max(0, active - maxConnections) : 0);

  return {
    tryStart() {
      const full = active >= maxRequests || (opts.protocol === 'http1' && active >= maxConnections && pending() >= maxPending);
      if (full) {
        overflows++;
        return { ok: false, flag: 'UO' };
      }
      active++;
      let released = false;
      return {
        ok: true,
        // Idempotent, because error paths in a proxy tend to fire more than once (error then close).
        release() {
          if (released) return;
          released = true;
          active--;
        },
      };
    },
    stats() {
      return { active, pending: pending(), overflows };
    },
  };
}
