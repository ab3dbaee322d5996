import { x509 } from './pki';
import { parseSpiffeId } from './spiffe';

/**
 * The SPIFFE identity of a verified peer certificate: exactly one URI SAN, a valid SPIFFE
 * ID. Node's TLS checks the chain but not URI SANs, so every mTLS peer goes through here.
 * Returns null for anything else (no URI, several URIs, a malformed ID).
 */
export function spiffeIdOfCert(raw: Buffer | Uint8Array): string | null {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(new Uint8Array(raw));
  } catch {
    return null;
  }
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = (san?.names.items ?? []).filter((n) => n.type === 'url');
  if (uris.length !== 1) return null;
  const uri = uris[0].value;
  // The string must round-trip exactly: no NUL, no percent-encoding, no prefix tricks.
  return parseSpiffeId(uri) && !uri.includes('\u0000') ? uri : null;
}

/** Caches identities by certificate fingerprint: a long-lived peer is parsed once. */
export class PeerIdentityCache {
  private readonly cache = new Map<string, string | null>();
  constructor(private readonly max = 10_000) {}

  identity(cert: { raw?: Buffer; fingerprint256?: string }): string | null {
    if (!cert.raw) return null;
    const key = cert.fingerprint256 ?? cert.raw.toString('base64');
    let v = this.cache.get(key);
    if (v === undefined) {
      v = spiffeIdOfCert(cert.raw);
      if (this.cache.size >= this.max) this.cache.clear();
      this.cache.set(key, v);
    }
    return v;
  }
}
