import { CniError, CniErrorCode } from './errors';

/** Spec versions this plugin speaks. 0.1.0/0.2.0 results have another shape and are not supported. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'] as const;
export const CURRENT_VERSION = '1.0.0';

export function isSupported(v: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Result shapes: 0.3.x and 0.4.0 carry `ips[].version`; 1.0.0 dropped it. */
export function isLegacyResultVersion(v: string): boolean {
  return v === '0.3.0' || v === '0.3.1' || v === '0.4.0';
}

/** CHECK exists from spec 0.4.0 on. */
export function allowsCheck(v: string): boolean {
  return v === '0.4.0' || v === '1.0.0';
}

export function requireSupported(v: string): void {
  if (!isSupported(v)) {
    throw new CniError(
      CniErrorCode.INCOMPATIBLE_VERSION,
      `incompatible CNI versions: config is "${v}", ambit-cni supports ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
}

/** The VERSION command's answer. */
export function versionInfo(): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: CURRENT_VERSION, supportedVersions: [...SUPPORTED_VERSIONS] };
}
