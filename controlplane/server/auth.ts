import { x509 } from '../../lib/identity/pki';
import { spiffeIdOfCert } from '../../lib/identity/peer';
import { classify, Principal } from '../../lib/identity/spiffe';

type AuthCall = { getAuthContext(): { sslPeerCertificate?: { raw?: Buffer; fingerprint256?: string; valid_to?: string } } | null };

/**
 * Identifies the caller from its client certificate. TLS has already verified the chain
 * against the mesh root (grpc-js exposes the certificate only then); here the identity
 * must be exactly one URI SAN of our trust domain, of a known role, and still valid.
 */
export class Authenticator {
  private readonly cache = new Map<string, { principal: Principal | null; notAfter: number }>();

  constructor(private readonly trustDomain: string) {}

  principal(call: object): Principal | null {
    const ctx = (call as unknown as AuthCall).getAuthContext();
    const cert = ctx?.sslPeerCertificate;
    if (!cert?.raw) return null;
    const fp = cert.fingerprint256 ?? cert.raw.toString('base64');
    let hit = this.cache.get(fp);
    if (!hit) {
      hit = this.parse(cert.raw);
      if (this.cache.size > 10_000) this.cache.clear();
      this.cache.set(fp, hit);
    }
    if (hit.notAfter < Date.now()) return null;
    return hit.principal;
  }

  private parse(raw: Buffer): { principal: Principal | null; notAfter: number } {
    const id = spiffeIdOfCert(raw);
    if (!id) return { principal: null, notAfter: 0 };
    return { principal: classify(id, this.trustDomain), notAfter: new x509.X509Certificate(new Uint8Array(raw)).notAfter.getTime() };
  }
}
