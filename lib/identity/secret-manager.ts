import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { createCsr, generateKeyPair, privateKeyToPem } from './pki';
import { workloadId } from './spiffe';

/** Where certificates come from: the control plane's CA, asked with the node's credential. */
export interface CertificateSource {
  createCertificate(csrPem: string, namespace: string, serviceAccount: string): Promise<{ certChain: string; rootCert: string; expiresAt: string }>;
}

export interface Svid {
  id: string;
  certChainPem: string;
  keyPem: string;
  rootPem: string;
  notBefore: Date;
  notAfter: Date;
  /** One secure context per certificate, reused by every handshake (per-connect options cost ~1 ms each). */
  context: tls.SecureContext;
}

interface Slot {
  namespace: string;
  serviceAccount: string;
  current?: Svid;
  pending?: Promise<Svid>;
  timer?: NodeJS.Timeout;
  failures: number;
  refs: number;
}

export interface SecretManagerOptions {
  trustDomain: string;
  /** Retry delays after a failed fetch: initial, doubling up to max. */
  backoffMs?: { initial: number; max: number };
  onRotate?: (svid: Svid) => void;
  onError?: (id: string, err: Error) => void;
}

/**
 * Workload certificates for the identities on this host: fetched on first use, cached,
 * renewed at half life (retrying with backoff, the old certificate serving until it
 * expires), forgotten when the last workload with that identity leaves.
 */
export class SecretManager {
  private readonly slots = new Map<string, Slot>();
  private stopped = false;

  constructor(private readonly source: CertificateSource, private readonly opts: SecretManagerOptions) {}

  /** Takes a reference on the identity and returns its certificate (fetching it if needed). */
  acquire(namespace: string, serviceAccount: string): Promise<Svid> {
    const id = workloadId(this.opts.trustDomain, namespace, serviceAccount);
    let slot = this.slots.get(id);
    if (!slot) {
      slot = { namespace, serviceAccount, failures: 0, refs: 0 };
      this.slots.set(id, slot);
    }
    slot.refs++;
    return this.get(id);
  }

  /** Drops a reference; the certificate is forgotten when nobody holds it. */
  release(namespace: string, serviceAccount: string): void {
    const id = workloadId(this.opts.trustDomain, namespace, serviceAccount);
    const slot = this.slots.get(id);
    if (!slot) return;
    if (--slot.refs <= 0) {
      if (slot.timer) clearTimeout(slot.timer);
      this.slots.delete(id);
    }
  }

  /** The current certificate of an identity already acquired (fresh fetch if it has expired). */
  get(id: string): Promise<Svid> {
    const slot = this.slots.get(id);
    if (!slot) return Promise.reject(new Error(`no workload on this node has identity ${id}`));
    if (slot.current && slot.current.notAfter.getTime() > Date.now()) return Promise.resolve(slot.current);
    return this.fetch(id, slot);
  }

  /** Synchronous view for the data path: the certificate if one is loaded and valid. */
  peek(id: string): Svid | undefined {
    const c = this.slots.get(id)?.current;
    return c && c.notAfter.getTime() > Date.now() ? c : undefined;
  }

  private fetch(id: string, slot: Slot): Promise<Svid> {
    if (slot.pending) return slot.pending;
    const p = (async () => {
      const keys = await generateKeyPair();
      const csr = await createCsr(keys, id);
      const res = await this.source.createCertificate(csr, slot.namespace, slot.serviceAccount);
      const keyPem = await privateKeyToPem(keys.privateKey);
      const leaf = new X509Certificate(res.certChain);
      const svid: Svid = {
        id,
        certChainPem: res.certChain,
        keyPem,
        rootPem: res.rootCert,
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
        context: tls.createSecureContext({ cert: res.certChain, key: keyPem, ca: res.rootCert, minVersion: 'TLSv1.3' }),
      };
      return svid;
    })();
    slot.pending = p;
    p.then(
      (svid) => {
        slot.pending = undefined;
        slot.failures = 0;
        if (this.slots.get(id) !== slot || this.stopped) return;
        slot.current = svid;
        this.schedule(id, slot, (svid.notBefore.getTime() + svid.notAfter.getTime()) / 2 - Date.now());
        this.opts.onRotate?.(svid);
      },
      (err: Error) => {
        slot.pending = undefined;
        slot.failures++;
        this.opts.onError?.(id, err);
        if (this.slots.get(id) !== slot || this.stopped) return;
        const b = this.opts.backoffMs ?? { initial: 500, max: 60_000 };
        const delay = Math.min(b.max, b.initial * 2 ** (slot.failures - 1)) * (0.8 + Math.random() * 0.4);
        this.schedule(id, slot, delay);
      },
    );
    return p;
  }

  private schedule(id: string, slot: Slot, delayMs: number): void {
    if (slot.timer) clearTimeout(slot.timer);
    // setTimeout holds at most ~24.8 days; a longer TTL is re-armed on the way.
    const d = Math.max(0, Math.min(delayMs, 2 ** 31 - 1));
    slot.timer = setTimeout(() => void this.fetch(id, slot).catch(() => undefined), d);
    slot.timer.unref();
  }

  identities(): Array<{ id: string; notAfter?: string; refs: number; failures: number }> {
    return [...this.slots.entries()].map(([id, s]) => ({ id, notAfter: s.current?.notAfter.toISOString(), refs: s.refs, failures: s.failures }));
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.slots.values()) if (s.timer) clearTimeout(s.timer);
  }
}
