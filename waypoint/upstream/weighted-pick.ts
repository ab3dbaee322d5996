/** A source of uniformly distributed numbers in [0, 1), as Math.random: injectable so tests can be deterministic. */
export type RandomSource = () => number;

/**
 * Picks one item with probability proportional to its weight. Weight 0 means "send nothing here"
 * (Gateway API and Istio both use it to drain a backend), so such items are never picked; when
 * nothing is left the result is null and the caller answers with an error status (500 for the
 * Gateway API, 503 for Istio), since there is no backend to forward to.
 */
export function pickWeighted<T extends { readonly weight: number }>(items: readonly T[], random: RandomSource = Math.random): T | null {
  let total = 0;
  for (const it of items) if (it.weight > 0 && Number.isFinite(it.weight)) total += it.weight;
  if (total <= 0) return null;
  let point = random() * total;
  let last: T | null = null;
  for (const it of items) {
    if (!(it.weight > 0 && Number.isFinite(it.weight))) continue;
    if (point < it.weight) return it;
    point -= it.weight;
    last = it;
  }
  // Floating-point subtraction can leave a sliver past the final item; it belongs to that item.
  return last;
}

/**
 * mulberry32: a small, fast, seedable generator. Not for anything security-related; it exists so a
 * test can replay the exact same sequence of picks.
 */
export function seededRandom(seed: number): RandomSource {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
