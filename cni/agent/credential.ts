import fs from 'node:fs';
import { AmbitClient } from '../../lib/api/client';
import { ClientConfig, CONTROLPLANE_SERVER_NAME, dialFor, loadClientConfig, renderClientConfig } from '../../lib/api/client-config';
import { createCsr, generateKeyPair, privateKeyToPem } from '../../lib/identity/pki';
import { writeFileAtomic } from '../../lib/util/fs-atomic';
import { X509Certificate } from 'node:crypto';

export interface JoinOptions {
  node: string;
  server: string;
  /** The mesh root the control plane's serving certificate chains to (PEM). */
  rootPem: string;
  token: string;
  trustDomain: string;
}

/** Exchanges a bootstrap token for the node certificate, once; writes it where the ztunnel reads it too. */
export async function joinNode(o: JoinOptions, file: string): Promise<ClientConfig> {
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, `spiffe://${o.trustDomain}/ambit/node/${o.node}`);
  const anon = new AmbitClient(dialFor(o.server, o.rootPem, CONTROLPLANE_SERVER_NAME));
  try {
    const cert = await anon.joinNode(o.token, csr);
    if (cert.node !== o.node) throw new Error(`the token is for node ${cert.node}, not ${o.node}`);
    const text = renderClientConfig({ server: o.server, serverName: CONTROLPLANE_SERVER_NAME, certificateAuthority: cert.rootCert, clientCertificate: cert.certChain, clientKey: await privateKeyToPem(keys.privateKey) });
    writeFileAtomic(file, text, 0o600);
    return loadClientConfig(file);
  } finally {
    anon.close();
  }
}

/** Renews the node certificate when two thirds of its life are gone. */
export async function renewIfDue(client: AmbitClient, cfg: ClientConfig, file: string, trustDomain: string, node: string): Promise<boolean> {
  const leaf = new X509Certificate(cfg.clientCertificate);
  const from = Date.parse(leaf.validFrom);
  const to = Date.parse(leaf.validTo);
  if (Date.now() < from + ((to - from) * 2) / 3) return false;
  const keys = await generateKeyPair();
  const cert = await client.renewNode(await createCsr(keys, `spiffe://${trustDomain}/ambit/node/${node}`));
  writeFileAtomic(file, renderClientConfig({ ...cfg, clientCertificate: cert.certChain, clientKey: await privateKeyToPem(keys.privateKey) }), 0o600);
  return true;
}

export function credentialExists(file: string): boolean {
  return fs.existsSync(file);
}
