import type { TrafficPolicy } from '../../lib/api/kinds/networking';
import { parseDurationMs } from '../../lib/api/meta';

/** A DestinationRule's trafficPolicy.outlierDetection, as validated. */
export type OutlierDetectionSettings = NonNullable<TrafficPolicy['outlierDetection']>;

export interface AttemptResult {
  readonly status?: number;
  /** The TCP/TLS connection to the endpoint could not be made; Envoy counts this as a 503 from the host. */
  readonly connectFailure?: boolean;
}

export interface OutlierDetector {
  onResult(id: string, result: AttemptResult): void;
  isEjected(id: string): boolean;
  ejected(): string[];
  /**
   * Run every intervalMs. Un-ejection does not wait for it (it is checked against the clock on each
   * query), but the ejection multiplier only decays here, as in Envoy.
   */
  tick(): void;
  setEndpoints(ids: Iterable<string>): void;
  readonly intervalMs: number;
}

export interface OutlierDetectorOptions {
  readonly now?: () => number;
}

/** Istio's defaults, applied to fields left unset (or 0, which Istio also reads as unset). */
export const OUTLIER_DEFAULTS = {
  consecutive5xxErrors: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
  /** Envoy's max_ejection_time default; Istio doesn't expose it. */
  maxEjectionTimeMs: 300_000,
} as const;

const GATEWAY_ERRORS = new Set([502, 503, 504]);

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  /** How many times ejected, decayed by healthy intervals; multiplies the ejection time. */
  ejections: number;
  ejectedUntil: number | null;
}

/**
 * Envoy-style passive health checking for one cluster.
 *
 * maxEjectionPercent: an ejection is allowed while ejected < max(1, floor(percent × hosts / 100)),
 * i.e. with few hosts one may always be ejected (current Envoy behaviour; otherwise 10% of a
 * 3-host service would be 0 and the setting could never fire). A percent of 0 is Istio's "unset",
 * hence 10%, so "at least one" always holds.
 *
 * minHealthPercent: when fewer than that share of hosts is un-ejected, ejections are ignored
 * (isEjected answers false) so traffic spreads over the whole pool instead of crushing the survivors.
 */
export function createOutlierDetector(
  settings: OutlierDetectionSettings | undefined,
  endpointIds: Iterable<string>,
  opts: OutlierDetectorOptions = {},
): OutlierDetector {
  const now = opts.now ?? Date.now;
  const enabled = settings !== undefined;
  // Istio: 0 disables the 5xx detector; an unset field means 5.
  const threshold5xx = settings?.consecutive5xxErrors ?? OUTLIER_DEFAULTS.consecutive5xxErrors;
  const thresholdGateway = settings?.consecutiveGatewayErrors ?? 0;
  const intervalMs = settings?.interval ? parseDurationMs(settings.interval) : OUTLIER_DEFAULTS.intervalMs;
  const baseMs = settings?.baseEjectionTime ? parseDurationMs(settings.baseEjectionTime) : OUTLIER_DEFAULTS.baseEjectionTimeMs;
  const maxEjectionMs = Math.max(baseMs, OUTLIER_DEFAULTS.maxEjectionTimeMs);
  const maxPercent = settings?.maxEjectionPercent || OUTLIER_DEFAULTS.maxEjectionPercent;
  const minHealthPercent = settings?.minHealthPercent ?? OUTLIER_DEFAULTS.minHealthPercent;

  const hosts = new Map<string, HostState>();
  const fresh = (): HostState => ({ consecutive5xx: 0, consecutiveGateway: 0, ejections: 0, ejectedUntil: null });
  for (const id of endpointIds) hosts.set(id, fresh());

  function expire(h: HostState, t: number): void {
    if (h.ejectedUntil !== null && t >= h.ejectedUntil) {
      h.ejectedUntil = null;
      // A returning host starts with a clean slate; errors from before its ejection are old news.
      h.consecutive5xx = 0;
      h.consecutiveGateway = 0;
    }
  }

  function ejectedIds(): string[] {
    const t = now();
    const out: string[] = [];
    for (const [id, h] of hosts) {
      expire(h, t);
      if (h.ejectedUntil !== null) out.push(id);
    }
    return out;
  }

  function panic(ejectedCount: number): boolean {
    if (minHealthPercent <= 0 || hosts.size === 0) return false;
    return (hosts.size - ejectedCount) * 100 < minHealthPercent * hosts.size;
  }

  function tryEject(h: HostState): void {
    const count = ejectedIds().length;
    // Integer form of count < max(1, floor(percent × n / 100)), free of floating-point edge cases.
    if (count > 0 && (count + 1) * 100 > maxPercent * hosts.size) return;
    h.ejections++;
    h.ejectedUntil = now() + Math.min(baseMs * h.ejections, maxEjectionMs);
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
  }

  return {
    intervalMs,
    onResult(id, result) {
      if (!enabled) return;
      const h = hosts.get(id);
      // A result from a request that was in flight when its endpoint left the cluster: recreating
      // the endpoint here would keep it (and skew maxEjectionPercent) until the next endpoint change.
      if (h === undefined) return;
      expire(h, now());
      // Results of requests that were in flight when the host got ejected say nothing new.
      if (h.ejectedUntil !== null) return;
      const status = result.connectFailure ? 503 : result.status;
      if (status === undefined || status < 500 || status > 599) {
        h.consecutive5xx = 0;
        h.consecutiveGateway = 0;
        return;
      }
      // As in Envoy, a non-gateway 5xx breaks a run of gateway errors, while every gateway error is also a 5xx.
      h.consecutiveGateway = GATEWAY_ERRORS.has(status) ? h.consecutiveGateway + 1 : 0;
      h.consecutive5xx++;
      if ((thresholdGateway > 0 && h.consecutiveGateway >= thresholdGateway) || (threshold5xx > 0 && h.consecutive5xx >= threshold5xx)) {
        tryEject(h);
      }
    },
    isEjected(id) {
      const h = hosts.get(id);
      if (h === undefined) return false;
      expire(h, now());
      if (h.ejectedUntil === null) return false;
      return !panic(ejectedIds().length);
    },
    ejected() {
      const ids = ejectedIds();
      return panic(ids.length) ? [] : ids;
    },
    tick() {
      const t = now();
      for (const h of hosts.values()) {
        expire(h, t);
        // Envoy lowers the multiplier for every interval a host spends healthy, so a host that
        // flapped once long ago isn't punished with a long ejection next time.
        if (h.ejectedUntil === null && h.ejections > 0) h.ejections--;
      }
    },
    setEndpoints(ids) {
      const keep = new Set(ids);
      for (const id of hosts.keys()) if (!keep.has(id)) hosts.delete(id);
      for (const id of keep) if (!hosts.has(id)) hosts.set(id, fresh());
    },
  };
}
