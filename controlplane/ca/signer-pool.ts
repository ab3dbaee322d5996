import os from 'node:os';
import path from 'node:path';
import { Piscina } from 'piscina';
import { CertificateAuthority, CsrError, IssuedCertificate } from './ca';
import type { SignResult, SignTask } from './signer-worker';

/** Signs CSRs on worker threads (one per core by default) with the same CA material. */
export class SignerPool {
  private readonly pool: Piscina;

  constructor(ca: CertificateAuthority, threads = Math.max(1, os.availableParallelism())) {
    this.pool = new Piscina({
      filename: path.join(__dirname, 'signer-worker.js'),
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      workerData: ca.material,
      // Signing awaits WebCrypto jobs on libuv's pool; overlapping tasks keeps the thread busy meanwhile.
      concurrentTasksPerWorker: 16,
    });
  }

  async signCsr(csrPem: string, uri: string, ttlMs: number): Promise<IssuedCertificate> {
    const task: SignTask = { csrPem, uri, ttlMs };
    const r = (await this.pool.run(task)) as SignResult;
    if (!r.ok) throw r.csrError ? new CsrError(r.message) : new Error(r.message);
    return { certChainPem: r.certChainPem, notAfter: new Date(r.notAfter), serial: r.serial };
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
