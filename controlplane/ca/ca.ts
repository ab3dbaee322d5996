import fs from 'node:fs';
import path from 'node:path';
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { x509, EC_P256, generateKeyPair, importPrivateKeyPem, privateKeyToPem, randomSerial, splitPemChain } from '../../lib/identity/pki';
import { writeFileAtomic } from '../../lib/util/fs-atomic';

export interface CaOptions {
  dataDir: string;
  trustDomain: string;
  /** Operator-supplied signing certificate (root or intermediate), its key, and the chain above it up to the root. */
  certFile?: string;
  keyFile?: string;
  chainFile?: string;
}

export interface CaMaterial {
  certPem: string;
  keyPem: string;
  chainPem?: string;
}

export interface IssueOptions {
  uri: string;
  ttlMs: number;
  dnsNames?: string[];
  ipAddresses?: string[];
}

export interface IssuedCertificate {
  /** Leaf first, then intermediates: what a TLS peer presents. */
  certChainPem: string;
  notAfter: Date;
  serial: string;
}

export class CsrError extends Error {
  readonly code = 'InvalidCsr';
}

/** Refuses to mint certificates that would outlive their issuer. */
const CLOCK_SKEW_MS = 60_000;

export class CertificateAuthority {
  private constructor(
    private readonly signingCert: x509.X509Certificate,
    private readonly signingKey: CryptoKey,
    private readonly signingAlg: Algorithm,
    /** Intermediates between the signing cert and the root, signing cert first; empty when the signing cert is the root. */
    private readonly chainPems: string[],
    readonly rootPem: string,
    readonly generated: boolean,
    /** What a signing worker needs to rebuild this CA in its own thread. */
    readonly material: CaMaterial,
  ) {}

  static async load(opts: CaOptions): Promise<CertificateAuthority> {
    if (opts.certFile || opts.keyFile) {
      if (!opts.certFile || !opts.keyFile) throw new Error('an operator-supplied CA needs both --ca-cert and --ca-key');
      return CertificateAuthority.fromFiles(opts.certFile, opts.keyFile, opts.chainFile);
    }
    const dir = path.join(opts.dataDir, 'ca');
    const certFile = path.join(dir, 'root-cert.pem');
    const keyFile = path.join(dir, 'root-key.pem');
    if (fs.existsSync(certFile) || fs.existsSync(keyFile)) {
      if (!fs.existsSync(keyFile) || !fs.existsSync(certFile)) {
        throw new Error(`incomplete CA in ${dir}: both root-cert.pem and root-key.pem must exist; restore the missing file or move the directory away to generate a new root`);
      }
      return CertificateAuthority.fromFiles(certFile, keyFile);
    }
    const keys = await generateKeyPair();
    const now = Date.now();
    const root = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `O=${opts.trustDomain}, CN=Ambit root CA`,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter: new Date(now + 10 * 365 * 24 * 3600 * 1000),
      signingAlgorithm: EC_P256,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    // Key first: a crash between the two writes leaves a key without a cert, which load refuses loudly rather than minting a second root.
    writeFileAtomic(keyFile, await privateKeyToPem(keys.privateKey), 0o600);
    writeFileAtomic(certFile, root.toString('pem'), 0o644);
    const ca = await CertificateAuthority.fromFiles(certFile, keyFile);
    return new CertificateAuthority(ca.signingCert, ca.signingKey, ca.signingAlg, [], ca.rootPem, true, ca.material);
  }

  static async fromFiles(certFile: string, keyFile: string, chainFile?: string): Promise<CertificateAuthority> {
    return CertificateAuthority.fromPem(
      { certPem: readPem(certFile, 'CA certificate'), keyPem: readPem(keyFile, 'CA key'), chainPem: chainFile ? readPem(chainFile, 'CA chain') : undefined },
      { certFile, keyFile },
    );
  }

  /** Builds the CA from PEM material; `names` only label error messages. */
  static async fromPem(m: CaMaterial, names = { certFile: 'CA certificate', keyFile: 'CA key' }): Promise<CertificateAuthority> {
    const { certFile, keyFile } = names;
    const { certPem, keyPem } = m;
    const certs = splitPemChain(certPem);
    if (certs.length === 0) throw new Error(`${certFile}: no PEM certificate found`);
    const signing = new x509.X509Certificate(certs[0]);
    const chain = [...certs.slice(1), ...(m.chainPem ? splitPemChain(m.chainPem) : [])];
    const bc = signing.getExtension(x509.BasicConstraintsExtension);
    if (!bc?.ca) throw new Error(`${certFile}: the certificate is not a CA (basicConstraints CA:TRUE missing)`);
    if (signing.notAfter.getTime() < Date.now()) throw new Error(`${certFile}: the CA certificate expired at ${signing.notAfter.toISOString()}`);
    let key: CryptoKey;
    let alg: Algorithm;
    try {
      ({ key, signing: alg } = await importPrivateKeyPem(keyPem));
    } catch (err) {
      throw new Error(`${keyFile}: cannot load the CA key: ${(err as Error).message}`);
    }
    // Prove the key belongs to the certificate before trusting either.
    const probe = Buffer.from('ambit-ca-key-check');
    const sig = await webcrypto.subtle.sign(alg as webcrypto.AlgorithmIdentifier, key as webcrypto.CryptoKey, probe);
    const pub = await signing.publicKey.export(alg, ['verify']);
    if (!(await webcrypto.subtle.verify(alg as webcrypto.AlgorithmIdentifier, pub as webcrypto.CryptoKey, sig, probe))) {
      throw new Error(`${keyFile} is not the key of ${certFile}`);
    }
    // Walk up to a self-signed root, checking each link.
    let cur = new NodeX509(certs[0]);
    for (const pem of chain) {
      const issuer = new NodeX509(pem);
      if (!cur.checkIssued(issuer) || !cur.verify(issuer.publicKey)) {
        throw new Error(`CA chain is broken: "${cur.subject}" is not signed by "${issuer.subject}"`);
      }
      cur = issuer;
    }
    if (!cur.checkIssued(cur) || !cur.verify(cur.publicKey)) {
      throw new Error(`CA chain does not end at a self-signed root ("${cur.subject}"); pass the issuers up to the root with --ca-chain`);
    }
    const rootPem = chain.length > 0 ? chain[chain.length - 1] : certs[0];
    const intermediates = [certs[0], ...chain.slice(0, -1)].filter((p) => p !== rootPem);
    return new CertificateAuthority(signing, key, alg, intermediates, normalizePem(rootPem), false, m);
  }

  private akid?: Promise<x509.AuthorityKeyIdentifierExtension>;

  /** The same for every certificate this CA signs: computed once. */
  private authorityKeyId(): Promise<x509.AuthorityKeyIdentifierExtension> {
    this.akid ??= x509.AuthorityKeyIdentifierExtension.create(this.signingCert, false);
    return this.akid;
  }

  get rootNotAfter(): Date {
    return this.signingCert.notAfter;
  }

  /** Signs a certificate for `opts.uri` (exactly one URI SAN) over the given public key. */
  async issue(publicKey: x509.PublicKey, opts: IssueOptions): Promise<IssuedCertificate> {
    const now = Date.now();
    const notAfter = new Date(Math.min(now + opts.ttlMs, this.signingCert.notAfter.getTime()));
    const names: x509.JsonGeneralName[] = [{ type: 'url', value: opts.uri }];
    for (const d of opts.dnsNames ?? []) names.push({ type: 'dns', value: d });
    for (const ip of opts.ipAddresses ?? []) names.push({ type: 'ip', value: ip });
    const server = (opts.dnsNames?.length ?? 0) + (opts.ipAddresses?.length ?? 0) > 0;
    const serial = randomSerial();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial,
      // SPIFFE X.509-SVID: the identity lives in the URI SAN; with an empty subject the SAN must be critical.
      subject: server ? `CN=${opts.dnsNames?.[0] ?? opts.ipAddresses?.[0]}` : '',
      issuer: this.signingCert.subject,
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter,
      signingAlgorithm: this.signingAlg,
      publicKey,
      signingKey: this.signingKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(names, !server),
        await this.authorityKeyId(),
      ],
    });
    return { certChainPem: [cert.toString('pem'), ...this.chainPems].join('\n') + '\n', notAfter, serial };
  }

  /**
   * Verifies a CSR (its signature proves possession of the key) and signs it for exactly
   * `uri`. A CSR asking for any other name, or for more than one, is refused.
   */
  async signCsr(csrPem: string, uri: string, ttlMs: number): Promise<IssuedCertificate> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (err) {
      throw new CsrError(`the CSR is not a PEM PKCS#10 request: ${(err as Error).message}`);
    }
    if (!(await csr.verify())) throw new CsrError('the CSR signature does not verify');
    const san = csr.extensions.find((e): e is x509.SubjectAlternativeNameExtension => e instanceof x509.SubjectAlternativeNameExtension);
    if (san) {
      const requested = san.names.items;
      if (requested.length !== 1 || requested[0].type !== 'url' || requested[0].value !== uri) {
        throw new CsrError(`the CSR asks for ${requested.map((n) => `${n.type}:${n.value}`).join(', ')} but this caller may only get ${uri}`);
      }
    }
    return this.issue(csr.publicKey, { uri, ttlMs });
  }
}

function readPem(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the ${what} at ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function normalizePem(pem: string): string {
  return pem.trim() + '\n';
}
