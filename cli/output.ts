import YAML from 'yaml';
import { kindDef } from '../lib/api/registry';
import type { Resource } from '../lib/api/resource';
import { age, table } from '../lib/util/table';

export { age, table };

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
