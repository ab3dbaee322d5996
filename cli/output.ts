import YAML from 'yaml';
import { kindDef } from '../lib/api/registry';
import type { Resource } from '../lib/api/resource';

export function age(ts: string | undefined): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}

export function renderList(items: Resource[], format: string, allNamespaces: boolean, single = false): string {
  if (format === 'json') return JSON.stringify(single ? items[0] : { apiVersion: 'v1', kind: 'List', items }, null, 2) + '\n';
  if (format === 'yaml') {
    const v = single ? items[0] : { apiVersion: 'v1', kind: 'List', items };
    return YAML.stringify(v, { lineWidth: 0 });
  }
  if (format === 'name') return items.map((r) => `${r.kind.toLowerCase()}/${r.metadata.name}`).join('\n') + (items.length ? '\n' : '');
  if (items.length === 0) return '';
  const def = kindDef(items[0].kind);
  const showNs = allNamespaces && def?.namespaced;
  const wideCols = def?.wide ? Object.keys(def.wide(items[0])) : [];
  const header = [...(showNs ? ['NAMESPACE'] : []), 'NAME', ...wideCols, 'AGE', ...(format === 'wide' ? ['LABELS'] : [])];
  const rows = items.map((r) => {
    const w = def?.wide ? def.wide(r) : {};
    const labels = Object.entries(r.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',') || '<none>';
    return [...(showNs ? [r.metadata.namespace ?? ''] : []), r.metadata.name, ...wideCols.map((c) => w[c] ?? ''), age(r.metadata.creationTimestamp), ...(format === 'wide' ? [labels] : [])];
  });
  return table([header, ...rows]);
}
