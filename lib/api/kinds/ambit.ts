import { z } from 'zod';
import { AMBIT_API_VERSION } from '../resource';
import { dnsSubdomain, ipAddress } from '../meta';
import type { KindDef } from './types';

const workloadSpec = z.strictObject({
  /** The host the workload runs on; a node may register workloads only on itself. */
  node: dnsSubdomain,
  serviceAccount: dnsSubdomain.default('default'),
  addresses: z.array(ipAddress).min(1, 'a Workload needs at least one address'),
  /** HBONE: enrolled in the mesh (traffic captured by ztunnel). TCP: registered but not captured. */
  protocol: z.enum(['HBONE', 'TCP']).default('HBONE'),
  uid: z.string().max(128).optional(),
  network: z.string().max(63).optional(),
});

export type WorkloadSpec = z.infer<typeof workloadSpec>;

const nodeSpec = z.strictObject({
  addresses: z.array(ipAddress).default([]),
  podCIDRs: z.array(z.union([z.cidrv4(), z.cidrv6()], { error: 'must be a CIDR such as 10.244.1.0/24' })).default([]),
});

export type NodeSpec = z.infer<typeof nodeSpec>;

export const workloadKind: KindDef = {
  kind: 'Workload',
  apiVersions: [AMBIT_API_VERSION],
  namespaced: true,
  plural: 'workloads',
  shortNames: ['wl'],
  spec: workloadSpec,
  check(r, add) {
    const spec = r.spec as WorkloadSpec;
    const seen = new Set<string>();
    spec.addresses.forEach((a, i) => {
      if (seen.has(a)) add(`spec.addresses[${i}]`, `duplicate address ${a}`);
      seen.add(a);
    });
  },
  wide: (r) => {
    const spec = r.spec as WorkloadSpec;
    return { NODE: spec.node, ADDRESSES: spec.addresses.join(','), 'SERVICE-ACCOUNT': spec.serviceAccount, PROTOCOL: spec.protocol };
  },
};

export const nodeKind: KindDef = {
  kind: 'Node',
  apiVersions: [AMBIT_API_VERSION],
  namespaced: false,
  plural: 'nodes',
  shortNames: ['no'],
  spec: nodeSpec,
  specOptional: true,
  wide: (r) => {
    const spec = (r.spec ?? {}) as Partial<NodeSpec>;
    return { ADDRESSES: (spec.addresses ?? []).join(','), 'POD-CIDRS': (spec.podCIDRs ?? []).join(',') };
  },
};
