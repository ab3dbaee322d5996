import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { AmbitClient } from '../../lib/api/client';
import { ClientConfig, loadClientConfig, renderClientConfig } from '../../lib/api/client-config';
import { createCsr, generateKeyPair, privateKeyToPem } from '../../lib/identity/pki';
import { writeFileAtomic } from '../../lib/util/fs-atomic';

/**
 * The credential of a pod that speaks HBONE itself (a waypoint): its SVID, key and the
 * control plane's address, in the client-config format `ambit` reads everywhere. The
 * agent requests it with the node credential (the CA only signs identities of workloads
 * on this node) and renews it at half life, as a kubelet projects a service account
 * token: the pod never holds the node's credential.
 */
export const WORKLOAD_CREDENTIAL_FILE = 'workload.yaml';

export function credentialPath(stateDir: string, podUid: string): string {
  return path.join(stateDir, 'pods', podUid, WORKLOAD_CREDENTIAL_FILE);
}

export async function issueWorkloadCredential(
  client: AmbitClient,
  node: Pick<ClientConfig, 'server' | 'serverName'>,
  file: string,
  who: { namespace: string; serviceAccount: string; trustDomain: string },
): Promise<void> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, `spiffe://${who.trustDomain}/ns/${who.namespace}/sa/${who.serviceAccount}`);
  const cert = await client.createCertificate(csr, who.namespace, who.serviceAccount);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  writeFileAtomic(
    file,
    renderClientConfig({ server: node.server, serverName: node.serverName, certificateAuthority: cert.rootCert, clientCertificate: cert.certChain, clientKey: await privateKeyToPem(keys.privateKey) }),
    0o600,
  );
}

/** True when the credential is missing, unreadable, or past half its life. */
export function credentialDue(file: string, now = Date.now()): boolean {
  try {
    const leaf = new X509Certificate(loadClientConfig(file).clientCertificate);
    const from = Date.parse(leaf.validFrom);
    const to = Date.parse(leaf.validTo);
    return now >= from + (to - from) / 2;
  } catch {
    return true;
  }
}

export function removeWorkloadCredential(file: string): void {
  fs.rmSync(path.dirname(file), { recursive: true, force: true });
}
