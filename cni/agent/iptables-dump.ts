/**
 * Reading iptables-save output: one table's chains and rules, and a normal form for rule
 * specs so that a rule compares equal however a given iptables backend (nft or legacy)
 * orders or spells its matches.
 */
export interface SavedRule {
  chain: string;
  /** Everything after "-A CHAIN", as iptables-save printed it (valid input for iptables-restore). */
  spec: string;
}

export interface SavedTable {
  /** chain name -> policy ("ACCEPT"... for built-in chains, "-" for user chains) */
  chains: Map<string, string>;
  rules: SavedRule[];
}

export function parseTable(saveOutput: string, table: string): SavedTable {
  const out: SavedTable = { chains: new Map(), rules: [] };
  let inTable = false;
  for (const raw of saveOutput.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('*')) {
      inTable = line.slice(1) === table;
      continue;
    }
    if (!inTable) continue;
    if (line === 'COMMIT') {
      inTable = false;
    } else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(/\s+/);
      out.chains.set(name, policy ?? '-');
    } else if (line.startsWith('-A ')) {
      const rest = line.slice(3);
      const sp = rest.indexOf(' ');
      out.rules.push(sp < 0 ? { chain: rest, spec: '' } : { chain: rest.slice(0, sp), spec: rest.slice(sp + 1).trim() });
    }
  }
  return out;
}

/** Splits a rule spec into words, keeping double-quoted strings (iptables-save quotes comments) whole. */
export function tokenize(spec: string): string[] {
  const tokens: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(spec)) !== null) tokens.push(m[1] !== undefined ? `"${m[1]}"` : m[2]);
  return tokens;
}

/** The target of a rule (-j or -g), if any. */
export function ruleTarget(spec: string): string | undefined {
  const t = tokenize(spec);
  for (let i = 0; i < t.length - 1; i++) if (t[i] === '-j' || t[i] === '-g' || t[i] === '--jump' || t[i] === '--goto') return t[i + 1];
  return undefined;
}

/**
 * A canonical form: option groups ("! -d 127.0.0.1/32", "--dport 53", ...) sorted, with the
 * implicit "-m tcp"/"-m udp" dropped (some backends print it after -p, some do not).
 */
export function normalizeSpec(spec: string): string {
  const groups: string[][] = [];
  let negate = false;
  for (const tok of tokenize(spec)) {
    if (tok === '!') {
      negate = true;
      groups.push(['!']);
      continue;
    }
    if (tok.startsWith('-') && !/^-\d/.test(tok)) {
      if (negate) groups[groups.length - 1].push(tok);
      else groups.push([tok]);
    } else if (groups.length > 0) {
      groups[groups.length - 1].push(tok);
    } else {
      groups.push([tok]);
    }
    negate = false;
  }
  return groups
    .map((g) => g.join(' '))
    .filter((g) => g !== '-m tcp' && g !== '-m udp')
    .sort()
    .join(' ');
}
