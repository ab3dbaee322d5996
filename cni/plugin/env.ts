import { CniError, CniErrorCode } from './errors';
import { normalizeLabelsArg } from './labels';
import { CNI_ARG_LABELS } from '../../lib/api/cni-protocol';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION';

/** The CNI_* environment of one invocation, validated as the spec (and libcni's skel) do. */
export interface CniEnv {
  command: CniCommand;
  containerId: string;
  /** CNI_NETNS; empty on DEL when the runtime no longer has a netns. */
  netns: string;
  ifName: string;
  /** CNI_ARGS parsed; AMBIT_POD_LABELS normalized to the cni-protocol.ts form. */
  args: Record<string, string>;
  path: string;
}

const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'VERSION'];
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** Which variables each command needs (CNI_NETNS is optional on DEL: the netns may be gone). */
const REQUIRED: Record<Exclude<CniCommand, 'VERSION'>, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME', 'CNI_PATH'],
};

export function readCommand(env: NodeJS.ProcessEnv): CniCommand {
  const command = env.CNI_COMMAND ?? '';
  if (!command) throw new CniError(CniErrorCode.INVALID_ENV, 'required env variable CNI_COMMAND is missing');
  if (!COMMANDS.includes(command)) {
    throw new CniError(CniErrorCode.INVALID_ENV, `unknown CNI_COMMAND "${command}" (expected ${COMMANDS.join(', ')})`);
  }
  return command as CniCommand;
}

export function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = readCommand(env);
  if (command === 'VERSION') return { command, containerId: '', netns: '', ifName: '', args: {}, path: '' };

  const missing = REQUIRED[command].filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new CniError(CniErrorCode.INVALID_ENV, `required env variables [${missing.join(',')}] missing for ${command}`);
  }
  const containerId = env.CNI_CONTAINERID as string;
  if (!CONTAINER_ID.test(containerId)) {
    throw new CniError(CniErrorCode.INVALID_ENV, 'CNI_CONTAINERID has invalid characters', containerId);
  }
  const ifName = env.CNI_IFNAME as string;
  checkIfName(ifName);
  return {
    command,
    containerId,
    netns: env.CNI_NETNS ?? '',
    ifName,
    args: parseCniArgs(env.CNI_ARGS ?? ''),
    path: env.CNI_PATH as string,
  };
}

/** Linux interface name rules, as the spec states them for CNI_IFNAME. */
function checkIfName(name: string): void {
  let why = '';
  if (name.length >= 16) why = 'must be shorter than 16 characters';
  else if (name === '.' || name === '..') why = 'must not be "." or ".."';
  else if (/[/:\s]/.test(name)) why = 'must not contain "/", ":" or whitespace';
  if (why) throw new CniError(CniErrorCode.INVALID_ENV, `CNI_IFNAME "${name}" ${why}`);
}

/** "K=V;K2=V2" -> {K: V, K2: V2}. A value may itself contain "=" (split at the first one). */
export function parseCniArgs(raw: string): Record<string, string> {
  const args: Record<string, string> = {};
  for (const item of raw.split(';')) {
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new CniError(CniErrorCode.INVALID_ENV, `CNI_ARGS: invalid pair "${item}" (expected KEY=VALUE)`);
    args[item.slice(0, eq)] = item.slice(eq + 1);
  }
  if (args[CNI_ARG_LABELS] !== undefined) {
    try {
      args[CNI_ARG_LABELS] = normalizeLabelsArg(args[CNI_ARG_LABELS]);
    } catch (err) {
      throw new CniError(CniErrorCode.INVALID_ENV, `CNI_ARGS: ${CNI_ARG_LABELS}: ${(err as Error).message}`);
    }
  }
  return args;
}
