import fs from 'node:fs';
import type { CniPodRequest, CniPodResponse } from '../../lib/api/cni-protocol';
import { AgentError, askAgent } from './agent-client';
import type { PluginConfig } from './config';
import type { CniEnv } from './env';
import { CniError, CniErrorCode } from './errors';
import type { PluginLog } from './log';
import { CniResult, podIps, requirePrevResult, resultForVersion } from './result';
import { allowsCheck } from './version';

/**
 * ADD, DEL and CHECK. The plugin itself changes nothing on the node: the agent enters the
 * pod's netns and installs (or removes) the redirect rules, and rolls back on failure.
 * Each returns the result to print on stdout (ADD) or undefined (DEL, CHECK).
 */
export type Ask = (socketPath: string, req: CniPodRequest, timeoutMs: number) => Promise<CniPodResponse>;

export async function cmdAdd(env: CniEnv, conf: PluginConfig, log: PluginLog, ask: Ask = askAgent): Promise<CniResult> {
  const prev = requirePrevResult(conf.prevResult, 'ADD');
  const result = resultForVersion(prev, conf.cniVersion);
  const ips = podIps(prev);
  if (ips.length === 0) {
    throw new CniError(
      CniErrorCode.INVALID_CONFIG,
      'invalid network configuration: prevResult has no ips; the plugin before ambit-cni must assign the pod its addresses',
    );
  }
  requireNetns(env);
  const res = await exchange(env, conf, log, ask, ips);
  log.info(res.enrolled ? 'pod enrolled in the mesh' : 'pod not enrolled (the agent left it out of the mesh)', { ips });
  return result;
}

export async function cmdDel(env: CniEnv, conf: PluginConfig, log: PluginLog, ask: Ask = askAgent): Promise<undefined> {
  try {
    await exchange(env, conf, log, ask, []);
    log.info('pod removed');
  } catch (err) {
    // The pod's rules live in its netns, which is going away with the pod; the agent
    // reconciles its registrations when it comes back. Failing DEL would only wedge the
    // runtime's teardown, so an absent or silent agent is logged, not returned.
    if (err instanceof AgentError) {
      log.warn('DEL: could not tell the agent; succeeding anyway (the agent reconciles on restart)', { error: err.message });
      return undefined;
    }
    throw err;
  }
  return undefined;
}

export async function cmdCheck(env: CniEnv, conf: PluginConfig, log: PluginLog, ask: Ask = askAgent): Promise<undefined> {
  if (!allowsCheck(conf.cniVersion)) {
    throw new CniError(CniErrorCode.INCOMPATIBLE_VERSION, `config version ${conf.cniVersion} does not allow CHECK (needs 0.4.0 or later)`);
  }
  const prev = requirePrevResult(conf.prevResult, 'CHECK');
  const ips = podIps(prev);
  requireNetns(env);
  await exchange(env, conf, log, ask, ips);
  return undefined;
}

/** Sends the request; agent refusals become CniErrors with the agent's code, transport failures AgentErrors/CniErrors. */
async function exchange(env: CniEnv, conf: PluginConfig, log: PluginLog, ask: Ask, ips: string[]): Promise<{ enrolled: boolean }> {
  const command = env.command as CniPodRequest['command'];
  const req: CniPodRequest = { command, containerId: env.containerId, netns: env.netns, ifName: env.ifName, args: env.args, ips };
  log.debug('asking the agent', { socket: conf.agentSocket, request: req });
  let res: CniPodResponse;
  try {
    res = await ask(conf.agentSocket, req, conf.agentTimeoutMs);
  } catch (err) {
    if (!(err instanceof AgentError)) throw err;
    if (command === 'DEL') throw err;
    const code = err.kind === 'protocol' ? CniErrorCode.IO_FAILURE : CniErrorCode.TRY_AGAIN_LATER;
    throw new CniError(code, err.message);
  }
  if (!res.ok) {
    throw new CniError(res.code, `ambit cni-agent refused ${command}: ${res.msg}`, res.details);
  }
  return { enrolled: res.enrolled };
}

function requireNetns(env: CniEnv): void {
  if (!fs.existsSync(env.netns)) {
    throw new CniError(CniErrorCode.UNKNOWN_CONTAINER, `network namespace ${env.netns} (CNI_NETNS) does not exist`);
  }
}
