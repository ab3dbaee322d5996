import {
  PORT_DNS,
  PORT_HBONE,
  PORT_INBOUND_PLAINTEXT,
  PORT_OUTBOUND,
  ZTUNNEL_MARK,
  ZTUNNEL_MARK_MASK,
} from '../../lib/api/node-protocol';
import { normalizeSpec, parseTable, ruleTarget, SavedTable } from './iptables-dump';
import { assertNotHostNetns, NetnsCommandError, netnsExists, runInNetns } from './netns-exec';

/**
 * In-pod redirection (ARCHITECTURE.md section 3), installed INSIDE a pod's network namespace
 * and never in the host's tables. Everything lives in two chains of our own in the nat
 * table, each reached by one jump from a built-in chain:
 *
 *   nat PREROUTING -> AMBIT_PRERT   (traffic arriving at the pod)
 *     1. packets marked ZTUNNEL_MARK/MASK                 RETURN
 *     2. TCP to port 15008 (HBONE, ztunnel's own inbound) RETURN
 *     3. other TCP not to 127.0.0.1                       REDIRECT to 15006
 *   nat OUTPUT -> AMBIT_OUTPUT      (traffic the pod's processes originate)
 *     1. sockets marked ZTUNNEL_MARK/MASK (ztunnel's own) RETURN
 *     2. out via lo (the pod talking to itself, 127/8)    RETURN
 *     3. UDP to port 53                                   REDIRECT to 15053
 *     4. TCP to port 53                                   REDIRECT to 15053
 *     5. other TCP not to 127.0.0.1                       REDIRECT to 15001
 *
 * The mark test comes first in each chain, so it covers every capture rule after it.
 * RETURN rather than ACCEPT hands the packet back to the built-in chain, so rules someone
 * else put there after our jump still see it.
 *
 * Replies are never re-captured, and no mangle/connmark part is needed: the nat table is
 * consulted only for the first packet of a connection (conntrack NEW); every later packet,
 * in either direction, is translated from the conntrack entry without traversing nat
 * chains. So the app's replies on a connection ztunnel accepted (redirected to 15006, or
 * ztunnel's marked connection from its 15008 listener to the app) reuse that entry and
 * never match a REDIRECT. Istio adds a mangle/connmark part for kubelet probes SNATed from
 * the host (169.254.7.127) and for TPROXY; Ambit redirects with REDIRECT and has no
 * host-side probe path, so nat alone suffices.
 *
 * REDIRECT sends locally generated packets to 127.0.0.1 (::1 for IPv6) and arriving
 * packets to the primary address of the interface they came in on: ztunnel's listeners in
 * the pod netns must accept on those (e.g. bind 0.0.0.0 / ::), and the pod's lo must be up.
 *
 * IPv4 always; IPv6 (the same rules with ::1 and ip6tables) when `ipv6: true` is passed,
 * which the agent does when the pod has an IPv6 address.
 *
 * iptables-restore --noflush changes one table in one transaction, so a failure leaves the
 * table as it was; across families (or when the result does not check out), installRedirect
 * removes what it put in before throwing. Calls for one netns must not run concurrently
 * (the agent handles one pod at a time); a later install repairs any duplicate.
 */
export const TABLE = 'nat';
export const CHAIN_PREROUTING = 'AMBIT_PRERT';
export const CHAIN_OUTPUT = 'AMBIT_OUTPUT';
const OUR_CHAINS = [CHAIN_PREROUTING, CHAIN_OUTPUT];
/** built-in chain -> our chain */
const JUMPS: Array<[string, string]> = [
  ['PREROUTING', CHAIN_PREROUTING],
  ['OUTPUT', CHAIN_OUTPUT],
];

export type Family = 'ipv4' | 'ipv6';

export interface RedirectOptions {
  /** Also install/check the IPv6 rules (ip6tables). Default false: IPv4 only. */
  ipv6?: boolean;
}

export interface RedirectCheck {
  installed: boolean;
  problems: string[];
}

export class RedirectError extends Error {
  constructor(
    readonly netns: string,
    msg: string,
    readonly stderr = '',
  ) {
    super(msg);
    this.name = 'RedirectError';
  }
}

const TOOLS: Record<Family, { save: string; restore: string; localhost: string }> = {
  ipv4: { save: 'iptables-save', restore: 'iptables-restore', localhost: '127.0.0.1/32' },
  ipv6: { save: 'ip6tables-save', restore: 'ip6tables-restore', localhost: '::1/128' },
};

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Our rules, per chain, in the form iptables-save prints them (minus "-A CHAIN"). */
export function redirectRules(family: Family): Record<string, string[]> {
  const lo = TOOLS[family].localhost;
  const notZtunnel = `-m mark --mark ${hex(ZTUNNEL_MARK)}/${hex(ZTUNNEL_MARK_MASK)} -j RETURN`;
  return {
    [CHAIN_PREROUTING]: [
      notZtunnel,
      `-p tcp -m tcp --dport ${PORT_HBONE} -j RETURN`,
      `! -d ${lo} -p tcp -j REDIRECT --to-ports ${PORT_INBOUND_PLAINTEXT}`,
    ],
    [CHAIN_OUTPUT]: [
      notZtunnel,
      '-o lo -j RETURN',
      `-p udp -m udp --dport 53 -j REDIRECT --to-ports ${PORT_DNS}`,
      `-p tcp -m tcp --dport 53 -j REDIRECT --to-ports ${PORT_DNS}`,
      `! -d ${lo} -p tcp -j REDIRECT --to-ports ${PORT_OUTBOUND}`,
    ],
  };
}

function families(opts: RedirectOptions): Family[] {
  return opts.ipv6 ? ['ipv4', 'ipv6'] : ['ipv4'];
}

function wrap(netns: string, err: unknown): RedirectError {
  if (err instanceof RedirectError) return err;
  if (err instanceof NetnsCommandError) return new RedirectError(netns, err.message, err.stderr);
  return new RedirectError(netns, `netns ${netns}: ${(err as Error)?.message ?? String(err)}`);
}

function requireNetns(netns: string): void {
  try {
    if (!netnsExists(netns)) throw new RedirectError(netns, `netns ${netns} does not exist`);
    assertNotHostNetns(netns);
  } catch (err) {
    throw wrap(netns, err);
  }
}

function saveTable(netns: string, family: Family): SavedTable {
  return parseTable(runInNetns(netns, [TOOLS[family].save, '-t', TABLE]), TABLE);
}

function restore(netns: string, family: Family, lines: string[]): void {
  runInNetns(netns, [TOOLS[family].restore, '--noflush', '-w', '5'], `*${TABLE}\n${lines.join('\n')}\nCOMMIT\n`);
}

const isOurs = (chain: string): boolean => OUR_CHAINS.includes(chain);

/** Rules outside our chains that jump (or go) to one of them. */
function jumpsIntoOurs(t: SavedTable): Array<{ chain: string; spec: string }> {
  return t.rules.filter((r) => !isOurs(r.chain) && isOurs(ruleTarget(r.spec) ?? ''));
}

function problemsIn(t: SavedTable, family: Family): string[] {
  const problems: string[] = [];
  const want = redirectRules(family);
  for (const [from, to] of JUMPS) {
    const canonical = normalizeSpec(`-j ${to}`);
    const n = t.rules.filter((r) => r.chain === from && normalizeSpec(r.spec) === canonical).length;
    if (n === 0) problems.push(`${family}: no jump from ${TABLE} ${from} to ${to}`);
    if (n > 1) problems.push(`${family}: ${n} jumps from ${TABLE} ${from} to ${to} (expected exactly one)`);
  }
  for (const r of jumpsIntoOurs(t)) {
    const expected = JUMPS.some(([from, to]) => r.chain === from && normalizeSpec(r.spec) === normalizeSpec(`-j ${to}`));
    if (!expected) problems.push(`${family}: unexpected jump into our chains: -A ${r.chain} ${r.spec}`);
  }
  for (const chain of OUR_CHAINS) {
    if (!t.chains.has(chain)) {
      problems.push(`${family}: chain ${TABLE} ${chain} is missing`);
      continue;
    }
    const have = t.rules.filter((r) => r.chain === chain).map((r) => r.spec);
    const expected = want[chain];
    for (let i = 0; i < Math.max(have.length, expected.length); i++) {
      if (i >= have.length) problems.push(`${family}: ${chain} rule ${i + 1} missing: ${expected[i]}`);
      else if (i >= expected.length) problems.push(`${family}: ${chain} has an unexpected rule ${i + 1}: ${have[i]}`);
      else if (normalizeSpec(have[i]) !== normalizeSpec(expected[i])) {
        problems.push(`${family}: ${chain} rule ${i + 1} is "${have[i]}", expected "${expected[i]}"`);
      }
    }
  }
  return problems;
}

/** `touched` gets the family just before its table is changed, so a failure rolls back only what may have changed. */
function installFamily(netns: string, family: Family, touched: Family[]): void {
  const before = saveTable(netns, family);
  const want = redirectRules(family);
  const lines: string[] = OUR_CHAINS.map((c) => `:${c} - [0:0]`); // creates, or flushes when present
  const jumps = jumpsIntoOurs(before);
  for (const [from, to] of JUMPS) {
    const canonical = normalizeSpec(`-j ${to}`);
    const mine = jumps.filter((r) => r.chain === from && normalizeSpec(r.spec) === canonical);
    const others = jumps.filter((r) => ruleTarget(r.spec) === to && !(r.chain === from && normalizeSpec(r.spec) === canonical));
    // Keep a single correct jump where it is; otherwise drop every jump into this chain and add one.
    if (mine.length === 1 && others.length === 0) continue;
    for (const r of [...mine, ...others]) lines.push(`-D ${r.chain} ${r.spec}`);
    lines.push(`-A ${from} -j ${to}`);
  }
  for (const chain of OUR_CHAINS) for (const spec of want[chain]) lines.push(`-A ${chain} ${spec}`);
  touched.push(family);
  restore(netns, family, lines);
  const problems = problemsIn(saveTable(netns, family), family);
  if (problems.length > 0) {
    throw new RedirectError(netns, `netns ${netns}: rules did not check out after install: ${problems.join('; ')}`);
  }
}

/** Returns true when something was removed. */
function removeFamily(netns: string, family: Family): boolean {
  const t = saveTable(netns, family);
  const present = OUR_CHAINS.filter((c) => t.chains.has(c));
  const jumps = jumpsIntoOurs(t);
  if (present.length === 0 && jumps.length === 0) return false;
  const lines = [
    ...jumps.map((r) => `-D ${r.chain} ${r.spec}`),
    ...present.map((c) => `-F ${c}`),
    ...present.map((c) => `-X ${c}`),
  ];
  restore(netns, family, lines);
  const after = saveTable(netns, family);
  const left = [...OUR_CHAINS.filter((c) => after.chains.has(c)), ...jumpsIntoOurs(after).map((r) => `-A ${r.chain} ${r.spec}`)];
  if (left.length > 0) throw new RedirectError(netns, `netns ${netns}: ${family} rules still present after removal: ${left.join(', ')}`);
  return true;
}

/**
 * Installs (or repairs) the redirect rules in the pod netns. Idempotent: a second call
 * leaves exactly one copy. On failure nothing of ours is left behind and the error names
 * the netns and the failing command's stderr.
 */
export function installRedirect(netnsPath: string, opts: RedirectOptions = {}): void {
  requireNetns(netnsPath);
  const touched: Family[] = [];
  try {
    for (const family of families(opts)) installFamily(netnsPath, family, touched);
  } catch (err) {
    const e = wrap(netnsPath, err);
    const rollback: string[] = [];
    for (const family of touched.reverse()) {
      try {
        removeFamily(netnsPath, family);
      } catch (rbErr) {
        rollback.push((rbErr as Error).message);
      }
    }
    if (rollback.length > 0) e.message += `; rolling back also failed: ${rollback.join('; ')}`;
    throw e;
  }
}

/**
 * Removes our jumps and chains, leaving the rest of the table as it was. Idempotent; a
 * netns that no longer exists has nothing left to remove. IPv6 is cleaned whenever
 * ip6tables works there, whatever `ipv6` says; its failure is an error only when ipv6 is set.
 */
export function removeRedirect(netnsPath: string, opts: RedirectOptions = {}): void {
  let exists: boolean;
  try {
    exists = netnsExists(netnsPath);
  } catch (err) {
    throw wrap(netnsPath, err);
  }
  if (!exists) return;
  requireNetns(netnsPath);
  try {
    removeFamily(netnsPath, 'ipv4');
  } catch (err) {
    throw wrap(netnsPath, err);
  }
  try {
    removeFamily(netnsPath, 'ipv6');
  } catch (err) {
    if (opts.ipv6) throw wrap(netnsPath, err);
  }
}

/** Compares the pod netns' rules with what installRedirect puts there. */
export function checkRedirect(netnsPath: string, opts: RedirectOptions = {}): RedirectCheck {
  requireNetns(netnsPath);
  const problems: string[] = [];
  try {
    for (const family of families(opts)) problems.push(...problemsIn(saveTable(netnsPath, family), family));
  } catch (err) {
    throw wrap(netnsPath, err);
  }
  return { installed: problems.length === 0, problems };
}

/** iptables-save of the whole netns (all tables), plus ip6tables-save when ipv6 is set. */
export function dumpRules(netnsPath: string, opts: RedirectOptions = {}): string {
  requireNetns(netnsPath);
  try {
    return families(opts)
      .map((f) => runInNetns(netnsPath, [TOOLS[f].save]))
      .join('');
  } catch (err) {
    throw wrap(netnsPath, err);
  }
}
