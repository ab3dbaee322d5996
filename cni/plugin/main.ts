import { cmdAdd, cmdCheck, cmdDel, Ask } from './commands';
import { bestEffortVersion, parseConfig } from './config';
import { readCommand, readEnv } from './env';
import { CniError, CniErrorCode } from './errors';
import { createPluginLog, isLogLevel } from './log';
import { CURRENT_VERSION, isSupported, versionInfo } from './version';

/**
 * ambit-cni: the CNI plugin the container runtime executes, chained after the primary
 * network plugin. CNI_COMMAND picks ADD/DEL/CHECK/VERSION, the network configuration comes
 * on stdin, the result (or a CNI error object) goes to stdout, logs go to stderr.
 */
export interface Outcome {
  stdout: string;
  exitCode: number;
}

const MAX_STDIN_BYTES = 4 << 20;

export async function run(env: NodeJS.ProcessEnv, readStdin: () => Promise<string>, ask?: Ask): Promise<Outcome> {
  let cniVersion = CURRENT_VERSION;
  const log = createPluginLog(isLogLevel(env.AMBIT_LOG_LEVEL) ? env.AMBIT_LOG_LEVEL : 'info', {
    command: env.CNI_COMMAND,
    containerId: env.CNI_CONTAINERID,
  });
  try {
    if (readCommand(env) === 'VERSION') return { stdout: JSON.stringify(versionInfo()) + '\n', exitCode: 0 };
    const stdin = await readStdin();
    const v = bestEffortVersion(stdin, CURRENT_VERSION);
    if (isSupported(v)) cniVersion = v;
    const conf = parseConfig(stdin);
    if (!isLogLevel(env.AMBIT_LOG_LEVEL)) log.level = conf.logLevel;
    const cniEnv = readEnv(env);
    switch (cniEnv.command) {
      case 'ADD':
        return { stdout: JSON.stringify(await cmdAdd(cniEnv, conf, log, ask)) + '\n', exitCode: 0 };
      case 'DEL':
        await cmdDel(cniEnv, conf, log, ask);
        return { stdout: '', exitCode: 0 };
      case 'CHECK':
        await cmdCheck(cniEnv, conf, log, ask);
        return { stdout: '', exitCode: 0 };
      default:
        throw new CniError(CniErrorCode.INVALID_ENV, `unexpected CNI_COMMAND ${cniEnv.command}`);
    }
  } catch (err) {
    const e = err instanceof CniError ? err : new CniError(CniErrorCode.IO_FAILURE, `ambit-cni failed: ${(err as Error)?.message ?? String(err)}`);
    log.error(e.message, e.details ? { code: e.code, details: e.details } : { code: e.code });
    return { stdout: JSON.stringify(e.toJSON(cniVersion)) + '\n', exitCode: 1 };
  }
}

function readProcessStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_STDIN_BYTES) {
        process.stdin.destroy();
        reject(new CniError(CniErrorCode.DECODE_FAILURE, `network configuration on stdin is larger than ${MAX_STDIN_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', (err) => reject(new CniError(CniErrorCode.IO_FAILURE, `reading stdin failed: ${err.message}`)));
  });
}

export async function main(): Promise<void> {
  const out = await run(process.env, readProcessStdin);
  process.stdout.write(out.stdout);
  process.exitCode = out.exitCode;
  // Nothing should be left running; this only guards against a stray handle keeping us alive.
  setTimeout(() => process.exit(), 2000).unref();
}
