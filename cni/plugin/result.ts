import net from 'node:net';
import { CniError, CniErrorCode } from './errors';
import { isLegacyResultVersion, isSupported } from './version';

/**
 * prevResult: the primary plugin's result, which a chained plugin passes on. Ambit only
 * reads the pod's IPs from it and prints it back, converted only where the spec's result
 * shapes differ between the config's cniVersion and the version prevResult is written in
 * (0.3.x/0.4.0 carry ips[].version, 1.0.0 does not).
 */
export type CniResult = Record<string, unknown>;

export function requirePrevResult(prevResult: unknown, command: string): CniResult {
  if (prevResult === undefined || prevResult === null) {
    throw new CniError(
      CniErrorCode.INVALID_CONFIG,
      `invalid network configuration: ${command} needs prevResult; ambit-cni must be chained after the primary network plugin (e.g. bridge) in a conflist`,
    );
  }
  if (typeof prevResult !== 'object' || Array.isArray(prevResult)) {
    throw new CniError(CniErrorCode.INVALID_CONFIG, 'invalid network configuration: prevResult must be a JSON object (a CNI result)');
  }
  return prevResult as CniResult;
}

/** The addresses in prevResult.ips[].address ("10.244.1.2/24" -> "10.244.1.2"), in order, without duplicates. */
export function podIps(prev: CniResult): string[] {
  if (prev.ips === undefined) return [];
  if (!Array.isArray(prev.ips)) throw badPrev('prevResult.ips must be a list');
  const out: string[] = [];
  prev.ips.forEach((entry: unknown, i: number) => {
    const address = typeof entry === 'object' && entry !== null ? (entry as Record<string, unknown>).address : undefined;
    if (typeof address !== 'string') throw badPrev(`prevResult.ips[${i}].address is missing`);
    const ip = cidrAddress(address);
    if (!ip) throw badPrev(`prevResult.ips[${i}].address "${address}" is not an IP address in CIDR notation`);
    if (!out.includes(ip)) out.push(ip);
  });
  return out;
}

function cidrAddress(cidr: string): string | undefined {
  const slash = cidr.indexOf('/');
  if (slash < 0) return undefined;
  const ip = cidr.slice(0, slash);
  const prefixText = cidr.slice(slash + 1);
  const family = net.isIP(ip);
  if (family === 0 || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (prefix > (family === 4 ? 32 : 128)) return undefined;
  return ip;
}

/** prevResult as the result of this plugin for the config's cniVersion. Unchanged when the versions agree. */
export function resultForVersion(prev: CniResult, cniVersion: string): CniResult {
  const from = prev.cniVersion === undefined ? cniVersion : prev.cniVersion;
  if (typeof from !== 'string' || !isSupported(from)) {
    throw new CniError(
      CniErrorCode.INCOMPATIBLE_VERSION,
      `prevResult has cniVersion ${JSON.stringify(from)}, which ambit-cni cannot convert to ${cniVersion}`,
    );
  }
  if (from === cniVersion && prev.cniVersion !== undefined) return prev;
  const out: CniResult = { ...prev, cniVersion };
  if (Array.isArray(prev.ips) && isLegacyResultVersion(from) !== isLegacyResultVersion(cniVersion)) {
    out.ips = prev.ips.map((entry: unknown) => {
      if (typeof entry !== 'object' || entry === null) return entry;
      const e = { ...(entry as Record<string, unknown>) };
      if (isLegacyResultVersion(cniVersion)) {
        const ip = typeof e.address === 'string' ? cidrAddress(e.address) : undefined;
        if (ip) e.version = net.isIPv6(ip) ? '6' : '4';
      } else {
        delete e.version;
      }
      return e;
    });
  }
  return out;
}

function badPrev(msg: string): CniError {
  return new CniError(CniErrorCode.INVALID_CONFIG, `invalid network configuration: ${msg}`);
}
