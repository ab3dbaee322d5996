import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

export interface SourceDoc {
  file: string;
  /** 0-based index of the document within its file. */
  index: number;
  doc: unknown;
}

export class ManifestError extends Error {}

function readStdin(): string {
  return fs.readFileSync(0, 'utf8');
}

/** Files named by -f: a file, a directory (its .yaml/.yml/.json files, sorted), or "-" for stdin. */
export function expandPaths(paths: string[], recursive = false): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push('-');
      continue;
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new ManifestError(`${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      const entries = fs.readdirSync(p).sort();
      for (const e of entries) {
        const full = path.join(p, e);
        const s = fs.statSync(full);
        if (s.isDirectory()) {
          if (recursive) out.push(...expandPaths([full], true));
        } else if (/\.(ya?ml|json)$/.test(e)) out.push(full);
      }
    } else out.push(p);
  }
  return out;
}

/** Parses every document of every file; YAML errors name the file, the document and the line. */
export function readManifests(paths: string[], recursive = false): SourceDoc[] {
  const docs: SourceDoc[] = [];
  for (const file of expandPaths(paths, recursive)) {
    const text = file === '-' ? readStdin() : fs.readFileSync(file, 'utf8');
    const name = file === '-' ? '<stdin>' : file;
    const parsed = YAML.parseAllDocuments(text, { prettyErrors: true });
    const list = Array.isArray(parsed) ? parsed : [parsed];
    list.forEach((d, index) => {
      if (d.errors.length > 0) {
        const e = d.errors[0];
        const line = e.linePos?.[0] ? ` (line ${e.linePos[0].line})` : '';
        throw new ManifestError(`${name}: document ${index}${line}: invalid YAML: ${e.message.split('\n')[0]}`);
      }
      const value: unknown = d.toJS({ maxAliasCount: 100 });
      if (value === null || value === undefined) return;
      const v = value as { kind?: unknown; items?: unknown };
      if (v.kind === 'List' && Array.isArray(v.items)) {
        for (const item of v.items) docs.push({ file: name, index, doc: item });
      } else docs.push({ file: name, index, doc: value });
    });
  }
  return docs;
}
