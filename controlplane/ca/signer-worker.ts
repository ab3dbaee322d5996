// Runs in a worker thread of the signer pool: certificate encoding is synchronous
// JavaScript (a few ms per certificate), so workers spread it over every core.
import { workerData } from 'node:worker_threads';
import { CertificateAuthority, CaMaterial, CsrError } from './ca';

export interface SignTask {
  csrPem: string;
  uri: string;
  ttlMs: number;
}

export type SignResult = { ok: true; certChainPem: string; notAfter: number; serial: string } | { ok: false; csrError: boolean; message: string };

let ca: Promise<CertificateAuthority> | undefined;

export default async function sign(task: SignTask): Promise<SignResult> {
  // The CA material arrives once, with the worker, not with every task.
  ca ??= CertificateAuthority.fromPem(workerData as CaMaterial);
  try {
    const issued = await (await ca).signCsr(task.csrPem, task.uri, task.ttlMs);
    return { ok: true, certChainPem: issued.certChainPem, notAfter: issued.notAfter.getTime(), serial: issued.serial };
  } catch (err) {
    return { ok: false, csrError: err instanceof CsrError, message: (err as Error).message };
  }
}
