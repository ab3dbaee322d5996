import fs from 'node:fs';
import { AmbitClient } from '../../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { writeFileAtomic } from '../../lib/util/fs-atomic';
import { ClusterPaths } from './paths';

/**
 * The admin credential of a local cluster. The control plane writes one for 127.0.0.1 of
 * its own netns; the cluster keeps a copy whose server is the unix socket forwarded into
 * that netns (uds-proxy.ts), so `AMBIT_CONFIG=<dir>/admin.yaml ambit get ...` works from
 * the machine's shell while nothing listens in the machine's own netns.
 */
export function writeLocalAdminConfig(paths: ClusterPaths): void {
  const text = fs.readFileSync(paths.controlPlaneAdminFile, 'utf8');
  if (!/^server: .*$/m.test(text)) throw new Error(`${paths.controlPlaneAdminFile} has no server line`);
  writeFileAtomic(paths.adminConfigFile, text.replace(/^server: .*$/m, `server: unix:${paths.controlPlaneSocket}`), 0o600);
  writeFileAtomic(paths.rootCertFile, loadClientConfig(paths.adminConfigFile).certificateAuthority, 0o644);
}

export async function withAdmin<T>(paths: ClusterPaths, fn: (c: AmbitClient) => Promise<T>): Promise<T> {
  const c = new AmbitClient(dialFromConfig(loadClientConfig(paths.adminConfigFile)));
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/** Creates the namespace when it does not exist; labels given are set only on creation. */
export async function ensureNamespace(paths: ClusterPaths, namespace: string, labels?: Record<string, string>): Promise<boolean> {
  return withAdmin(paths, async (c) => {
    const all = await c.list('Namespace');
    if (all.some((n) => n.metadata.name === namespace)) return false;
    await c.apply([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, ...(labels ? { labels } : {}) } }]);
    return true;
  });
}
