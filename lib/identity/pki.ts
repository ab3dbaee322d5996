import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, createPrivateKey, randomBytes } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export interface KeyPairPem {
  keyPem: string;
  keys: CryptoKeyPair;
}

export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

/** Algorithm parameters WebCrypto needs for a key, from its PEM (PKCS#8 or SEC1 EC, or RSA). */
export function algorithmForKey(pem: string): { import: EcKeyImportParams | RsaHashedImportParams; sign: EcdsaParams & { namedCurve?: string } | RsaHashedImportParams } {
  const k = createPrivateKey(pem);
  if (k.asymmetricKeyType === 'ec') {
    const curve = k.asymmetricKeyDetails?.namedCurve;
    const named = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : null;
    if (!named) throw new Error(`unsupported EC curve ${curve}: use P-256 or P-384`);
    const hash = named === 'P-256' ? 'SHA-256' : 'SHA-384';
    return { import: { name: 'ECDSA', namedCurve: named }, sign: { name: 'ECDSA', namedCurve: named, hash } };
  }
  if (k.asymmetricKeyType === 'rsa') {
    const p = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    return { import: p, sign: p };
  }
  throw new Error(`unsupported key type ${k.asymmetricKeyType}: use ECDSA (P-256, P-384) or RSA`);
}

export async function importPrivateKeyPem(pem: string): Promise<{ key: CryptoKey; signing: Algorithm }> {
  const alg = algorithmForKey(pem);
  const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, alg.import, false, ['sign']);
  return { key: key as CryptoKey, signing: alg.sign as Algorithm };
}

export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive INTEGER
  if (b[0] === 0) b[0] = 1;
  return b.toString('hex');
}

/** A CSR for a SPIFFE identity (exactly one URI SAN), signed with the given key pair. */
export async function createCsr(keys: CryptoKeyPair, uri: string): Promise<string> {
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: '',
    keys,
    signingAlgorithm: EC_P256,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }])],
  });
  return csr.toString('pem');
}

export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** The URI SANs of a certificate, in order. */
export function uriSans(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (!ext) return [];
  return ext.names.items.filter((n) => n.type === 'url').map((n) => n.value);
}
