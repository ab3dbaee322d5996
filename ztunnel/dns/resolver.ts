import type { Snapshot } from '../../lib/mesh/snapshot';

export interface Answer {
  name: string;
  addresses: string[];
}

/**
 * Mesh names for a pod of namespace `ns`: `svc`, `svc.ns`, `svc.ns.svc`, and the full
 * `svc.ns.svc.<domain>` (the pod's search domains, as Kubernetes' DNS would expand them).
 * Returns undefined for a name that is not the mesh's, so the caller may forward it.
 */
export function resolveMeshName(snap: Snapshot, qname: string, ns: string, clusterDomain = 'cluster.local'): Answer | undefined {
  const name = qname.toLowerCase().replace(/\.$/, '');
  const suffix = `.svc.${clusterDomain}`;
  const candidates: string[] = [];
  if (name.endsWith(suffix)) candidates.push(name);
  else {
    const parts = name.split('.');
    if (parts.length === 1) candidates.push(`${name}.${ns}${suffix}`);
    else if (parts.length === 2) candidates.push(`${name}${suffix}`);
    else if (parts.length === 3 && parts[2] === 'svc') candidates.push(`${name}.${clusterDomain}`);
  }
  for (const host of candidates) {
    const svc = snap.servicesByHost.get(host);
    if (!svc) continue;
    // Headless services answer with their endpoints, the others with their VIPs.
    const addresses = svc.msg.headless ? svc.endpoints.flatMap((e) => e.workload.ips) : svc.vips;
    return { name: qname, addresses };
  }
  return undefined;
}

export function isMeshDomain(qname: string, clusterDomain = 'cluster.local'): boolean {
  const n = qname.toLowerCase().replace(/\.$/, '');
  return n === clusterDomain || n.endsWith(`.${clusterDomain}`);
}
