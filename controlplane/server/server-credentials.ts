import * as grpc from '@grpc/grpc-js';

type Provider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdListener = grpc.experimental.IdentityCertificateUpdateListener;

/** Certificates held in memory; `update` swaps them for new connections (serving-cert rotation). */
export class InMemoryCertificateProvider implements Provider {
  private readonly caListeners = new Set<CaListener>();
  private readonly idListeners = new Set<IdListener>();

  constructor(private ca: Buffer, private identity: { certificate: Buffer; privateKey: Buffer }) {}

  update(ca: Buffer, identity: { certificate: Buffer; privateKey: Buffer }): void {
    this.ca = ca;
    this.identity = identity;
    for (const l of this.caListeners) l({ caCertificate: ca });
    for (const l of this.idListeners) l(identity);
  }

  addCaCertificateListener(l: CaListener): void {
    this.caListeners.add(l);
    // Deliver after the caller has registered its own watcher: grpc-js subscribes to the
    // provider before it listens for updates, and a synchronous first update is lost.
    queueMicrotask(() => this.caListeners.has(l) && l({ caCertificate: this.ca }));
  }
  removeCaCertificateListener(l: CaListener): void {
    this.caListeners.delete(l);
  }
  addIdentityCertificateListener(l: IdListener): void {
    this.idListeners.add(l);
    queueMicrotask(() => this.idListeners.has(l) && l(this.identity));
  }
  removeIdentityCertificateListener(l: IdListener): void {
    this.idListeners.delete(l);
  }
}

/**
 * TLS that asks every client for a certificate but does not require one: nodes joining
 * with a bootstrap token have none yet. Presented certificates are verified against the
 * mesh root by TLS; every RPC except JoinNode then refuses a caller without one.
 */
export function optionalClientCertCredentials(provider: InMemoryCertificateProvider): grpc.ServerCredentials {
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}
