import type { FaultPolicy } from '../route-table';
import type { RandomSource } from '../../upstream/weighted-pick';

export interface FaultDecision {
  delayMs?: number;
  abort?: { status: number; grpcStatus?: number };
}

/** Independent draws for delay and abort, as Envoy's fault filter makes them; percents may be fractional. */
export function decideFault(f: FaultPolicy | undefined, random: RandomSource): FaultDecision | null {
  if (!f) return null;
  const out: FaultDecision = {};
  if (f.delay && random() * 100 < f.delay.percent) out.delayMs = f.delay.ms;
  if (f.abort && random() * 100 < f.abort.percent) out.abort = { status: f.abort.status, grpcStatus: f.abort.grpcStatus };
  return out.delayMs === undefined && out.abort === undefined ? null : out;
}
