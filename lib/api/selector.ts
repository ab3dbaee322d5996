/** Equality-based label selectors as kubectl writes them: `app=web,tier!=db,canary,!legacy`. */
export type LabelRequirement = { key: string; op: '=' | '!=' | 'exists' | '!exists'; value?: string };

export function parseLabelSelector(s: string): LabelRequirement[] {
  const out: LabelRequirement[] = [];
  for (const raw of s.split(',')) {
    const part = raw.trim();
    if (part === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^([^=!]+)!=(.*)$/.exec(part))) out.push({ key: m[1].trim(), op: '!=', value: m[2].trim() });
    else if ((m = /^([^=!]+)==?(.*)$/.exec(part))) out.push({ key: m[1].trim(), op: '=', value: m[2].trim() });
    else if ((m = /^!([^=!]+)$/.exec(part))) out.push({ key: m[1].trim(), op: '!exists' });
    else if (/^[^=!\s]+$/.test(part)) out.push({ key: part, op: 'exists' });
    else throw new Error(`invalid label selector "${s}" at "${part}"`);
  }
  return out;
}

export function selectorMatches(reqs: LabelRequirement[], labels: Record<string, string> | undefined): boolean {
  for (const r of reqs) {
    const v = labels?.[r.key];
    if (r.op === '=' && v !== r.value) return false;
    if (r.op === '!=' && v === r.value) return false;
    if (r.op === 'exists' && v === undefined) return false;
    if (r.op === '!exists' && v !== undefined) return false;
  }
  return true;
}
