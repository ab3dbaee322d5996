import { z } from 'zod';
import { dnsLabel, ipAddress, labelMap, port } from '../meta';
import type { KindDef } from './types';

const namespaceSpec = z.strictObject({
  finalizers: z.array(z.string()).optional(),
});

const servicePort = z.strictObject({
  name: dnsLabel.optional(),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
  appProtocol: z.string().optional(),
  port,
  targetPort: z.union([port, dnsLabel], { error: 'must be a port number or a named container port' }).optional(),
});

const serviceSpec = z.strictObject({
  type: z.literal('ClusterIP', { error: 'only type ClusterIP is supported' }).default('ClusterIP'),
  selector: labelMap.optional(),
  ports: z.array(servicePort).min(1, 'a Service needs at least one port'),
  clusterIP: z.union([ipAddress, z.literal('None'), z.literal('')]).optional(),
  clusterIPs: z.array(z.union([ipAddress, z.literal('None')])).max(2).optional(),
  ipFamilies: z.array(z.enum(['IPv4', 'IPv6'])).max(2).optional(),
  ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).optional(),
  publishNotReadyAddresses: z.boolean().optional(),
});

export type ServiceSpec = z.infer<typeof serviceSpec>;

export const namespaceKind: KindDef = {
  kind: 'Namespace',
  apiVersions: ['v1'],
  namespaced: false,
  plural: 'namespaces',
  shortNames: ['ns'],
  spec: namespaceSpec,
  specOptional: true,
  check(r, add) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(r.metadata.name) || r.metadata.name.length > 63) {
      add('metadata.name', 'a Namespace name must be an RFC 1123 label (at most 63 characters, no dots)');
    }
  },
  wide: (r) => ({
    'DATAPLANE-MODE': r.metadata.labels?.['istio.io/dataplane-mode'] ?? '',
    WAYPOINT: r.metadata.labels?.['istio.io/use-waypoint'] ?? '',
  }),
};

export const serviceKind: KindDef = {
  kind: 'Service',
  apiVersions: ['v1'],
  namespaced: true,
  plural: 'services',
  shortNames: ['svc'],
  spec: serviceSpec,
  check(r, add) {
    const spec = r.spec as ServiceSpec;
    const names = new Set<string>();
    const ports = new Set<string>();
    spec.ports.forEach((p, i) => {
      if (spec.ports.length > 1 && !p.name) add(`spec.ports[${i}].name`, 'required when a Service has more than one port');
      if (p.name) {
        if (names.has(p.name)) add(`spec.ports[${i}].name`, `duplicate port name "${p.name}"`);
        names.add(p.name);
      }
      const k = `${p.protocol}/${p.port}`;
      if (ports.has(k)) add(`spec.ports[${i}].port`, `duplicate port ${k}`);
      ports.add(k);
    });
    if (r.metadata.name.length > 63 || r.metadata.name.includes('.')) {
      add('metadata.name', 'a Service name must be an RFC 1123 label (at most 63 characters, no dots)');
    }
    if (spec.clusterIPs && spec.clusterIP && spec.clusterIPs[0] !== spec.clusterIP) {
      add('spec.clusterIPs[0]', 'must equal spec.clusterIP');
    }
  },
  wide: (r) => {
    const spec = r.spec as ServiceSpec;
    return {
      'CLUSTER-IP': spec.clusterIP ?? '',
      PORTS: spec.ports.map((p) => `${p.port}/${p.protocol}`).join(','),
      SELECTOR: Object.entries(spec.selector ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
    };
  },
};
