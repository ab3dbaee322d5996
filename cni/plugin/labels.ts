/**
 * AMBIT_POD_LABELS (lib/api/cni-protocol.ts): comma-separated k=v pairs, each k and v
 * URI-encoded, e.g. "app=web,app.kubernetes.io%2Fname=web".
 *
 * The reference plugins (bridge, host-local, ...) parse the same CNI_ARGS with libcni's
 * LoadArgs, which rejects any pair with a second "=" ("ARGS: invalid pair"). A runtime
 * that chains Ambit after them therefore has to URI-encode the whole value once more
 * ("app%3Dweb%2Capp.kubernetes.io%252Fname%3Dweb"). Both forms are accepted here; the
 * agent always receives the documented form.
 */
export function normalizeLabelsArg(raw: string): string {
  let value = raw;
  if (value !== '' && !value.includes('=')) {
    try {
      value = decodeURIComponent(value);
    } catch {
      throw new Error(`not URI-encoded k=v pairs: "${raw}"`);
    }
  }
  parseLabels(value);
  return value;
}

/** The documented form -> a label map. Throws on a pair without "=", an empty key or bad encoding. */
export function parseLabels(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  if (value === '') return labels;
  for (const pair of value.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`label "${pair}" is not k=v`);
    let k: string;
    let v: string;
    try {
      k = decodeURIComponent(pair.slice(0, eq));
      v = decodeURIComponent(pair.slice(eq + 1));
    } catch {
      throw new Error(`label "${pair}" is not URI-encoded`);
    }
    if (k === '') throw new Error(`label "${pair}" has an empty key`);
    labels[k] = v;
  }
  return labels;
}

/** A label map -> the documented form (what a runtime puts in CNI_ARGS before the outer encoding). */
export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join(',');
}
