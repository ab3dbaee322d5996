// Runs in a worker thread of the signer pool: certificate encoding is synchronous
// JavaScript, so one thread tops out near 280 signatures/s; workers use every core.
import { CertificateAuthority, CaMaterial, CsrError } from './ca';

export interface SignTask {
  csrPem: string;
  uri: string;
  ttlMs: number;
}

export type SignResult = { ok: true; certChainPem: string; notAfter: number; serial: string } | { ok: false; csrError: boolean; message: string };

let ca: Promise<CertificateAuthority> | undefined;

export default async function sign(task: SignTask & { material: CaMaterial }): Promise<SignResult> {
  ca ??= CertificateAuthority.fromPem(task.material);
  try {
    const issued = await (await ca).signCsr(task.csrPem, task.uri, task.ttlMs);
    return { ok: true, certChainPem: issued.certChainPem, notAfter: issued.notAfter.getTime(), serial: issued.serial };
  } catch (err) {
    return { ok: false, csrError: err instanceof CsrError, message: (err as Error).message };
  }
}
