import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { CONTROLPLANE_SERVER_NAME, renderClientConfig } from '../lib/api/client-config';
import { DEFAULT_NAMESPACE } from '../lib/api/resource';
import { generateKeyPair, privateKeyToPem, x509 } from '../lib/identity/pki';
import { adminId, isValidTrustDomain } from '../lib/identity/spiffe';
import { createLogger, Logger } from '../lib/telemetry/log';
import { writeFileAtomic } from '../lib/util/fs-atomic';
import { CertificateAuthority } from './ca/ca';
import { SignerPool } from './ca/signer-pool';
import { ControlPlaneMetrics } from './metrics';
import { ClusterIpAllocator } from './server/allocator';
import { DiscoveryServer } from './server/discovery';
import { buildGrpcServer } from './server/grpc-server';
import { ResourceApi } from './server/resource-api';
import { InMemoryCertificateProvider, optionalClientCertCredentials } from './server/server-credentials';
import { SqliteStore } from './store/store-sqlite';
import { lockDataDir } from './store/data-dir-lock';
import type { Store } from './store/store';

export interface ControlPlaneOptions {
  dataDir: string;
  trustDomain: string;
  grpcAddress: string;
  monitoringAddress: string;
  serviceCidr: string;
  certTtlMs: number;
  nodeCertTtlMs: number;
  rootNamespace: string;
  debounceMs: number;
  maxPushDelayMs: number;
  caCertFile?: string;
  caKeyFile?: string;
  caChainFile?: string;
  /** Extra names for the serving certificate. */
  serverSans: string[];
  signerThreads?: number;
  logger?: Logger;
}

export const DEFAULTS: ControlPlaneOptions = {
  dataDir: '/var/lib/ambit',
  trustDomain: 'cluster.local',
  grpcAddress: '0.0.0.0:15012',
  monitoringAddress: '0.0.0.0:15014',
  serviceCidr: '10.96.0.0/16',
  certTtlMs: 24 * 3600 * 1000,
  nodeCertTtlMs: 30 * 24 * 3600 * 1000,
  rootNamespace: 'istio-system',
  debounceMs: 100,
  maxPushDelayMs: 1000,
  serverSans: [],
};

const ADMIN_CERT_TTL_MS = 365 * 24 * 3600 * 1000;

export class ControlPlane {
  grpcPort = 0;
  monitoringPort = 0;
  adminConfigPath = '';
  private grpcServer?: grpc.Server;
  private httpServer?: http.Server;
  private signer?: SignerPool;
  private discovery?: DiscoveryServer;
  private store?: Store;
  private ready = false;
  private unlock?: () => void;
  readonly metrics = new ControlPlaneMetrics();
  readonly log: Logger;

  constructor(readonly opts: ControlPlaneOptions) {
    this.log = opts.logger ?? createLogger('controlplane');
  }

  async start(): Promise<void> {
    const o = this.opts;
    if (!isValidTrustDomain(o.trustDomain)) throw new Error(`invalid trust domain "${o.trustDomain}": lowercase letters, digits, ".", "-" and "_" only`);
    const allocator = new ClusterIpAllocator(o.serviceCidr);
    fs.mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
    this.unlock = lockDataDir(o.dataDir);
    const store = new SqliteStore(o.dataDir);
    this.store = store;
    this.metrics.storeRevision.set(store.revision);
    store.onCommit((c) => this.metrics.storeRevision.set(c.revision));
    if (!store.get({ kind: 'Namespace', namespace: '', name: DEFAULT_NAMESPACE })) {
      await store.commit([{ op: 'put', resource: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: DEFAULT_NAMESPACE } } }]);
    }
    const ca = await CertificateAuthority.load({ dataDir: o.dataDir, trustDomain: o.trustDomain, certFile: o.caCertFile, keyFile: o.caKeyFile, chainFile: o.caChainFile });
    if (ca.generated) this.log.info({ dir: path.join(o.dataDir, 'ca') }, 'generated a new root CA (ECDSA P-256)');
    this.signer = new SignerPool(ca, o.signerThreads);

    // Serving certificate, minted at each start from the CA: its key never touches the disk.
    const servingKeys = await generateKeyPair();
    const [host] = splitHostPort(o.grpcAddress);
    const ips = ['127.0.0.1', '::1', ...(net.isIP(host) && host !== '0.0.0.0' && host !== '::' ? [host] : []), ...o.serverSans.filter((s) => net.isIP(s))];
    const dns = [CONTROLPLANE_SERVER_NAME, 'localhost', os.hostname(), ...o.serverSans.filter((s) => !net.isIP(s))];
    const serving = await ca.issue(await publicKeyOf(servingKeys), {
      uri: `spiffe://${o.trustDomain}/ambit/controlplane`,
      ttlMs: 365 * 24 * 3600 * 1000,
      dnsNames: [...new Set(dns)],
      ipAddresses: [...new Set(ips)],
    });

    const api = new ResourceApi(store, allocator);
    this.discovery = new DiscoveryServer(store, { debounceMs: o.debounceMs, maxDelayMs: o.maxPushDelayMs, translate: { trustDomain: o.trustDomain, rootNamespace: o.rootNamespace, clusterDomain: 'cluster.local' } }, this.metrics, this.log);
    this.grpcServer = buildGrpcServer({
      store, api, discovery: this.discovery, signer: this.signer, rootPem: ca.rootPem, trustDomain: o.trustDomain,
      workloadCertTtlMs: o.certTtlMs, nodeCertTtlMs: o.nodeCertTtlMs, metrics: this.metrics, log: this.log,
    });
    const creds = optionalClientCertCredentials(new InMemoryCertificateProvider(Buffer.from(ca.rootPem), { certificate: Buffer.from(serving.certChainPem), privateKey: Buffer.from(await privateKeyToPem(servingKeys.privateKey)) }));
    this.grpcPort = await new Promise<number>((resolve, reject) =>
      this.grpcServer!.bindAsync(o.grpcAddress, creds, (err, port) => (err ? reject(new Error(`cannot listen on ${o.grpcAddress} for gRPC: ${err.message}`)) : resolve(port))),
    );

    // Admin credential: written once, kept across restarts, readable by root only.
    this.adminConfigPath = path.join(o.dataDir, 'admin.yaml');
    const serverAddr = `${host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host}:${this.grpcPort}`;
    if (!fs.existsSync(this.adminConfigPath) || ca.generated || !fs.readFileSync(this.adminConfigPath, 'utf8').includes(ca.rootPem.trim().split('\n')[1])) {
      const keys = await generateKeyPair();
      const cert = await ca.issue(await publicKeyOf(keys), { uri: adminId(o.trustDomain), ttlMs: ADMIN_CERT_TTL_MS });
      writeFileAtomic(this.adminConfigPath, renderClientConfig({
        server: serverAddr, serverName: CONTROLPLANE_SERVER_NAME, certificateAuthority: ca.rootPem,
        clientCertificate: cert.certChainPem, clientKey: await privateKeyToPem(keys.privateKey),
      }), 0o600);
      this.log.info({ path: this.adminConfigPath }, 'wrote the admin credential; export AMBIT_CONFIG to use it');
    } else {
      // The port may differ between runs (tests bind port 0): keep the credential, refresh the address.
      const text = fs.readFileSync(this.adminConfigPath, 'utf8').replace(/^server: .*$/m, `server: ${serverAddr}`);
      writeFileAtomic(this.adminConfigPath, text, 0o600);
    }

    this.httpServer = http.createServer((req, res) => void this.serveHttp(req, res));
    const [mhost, mport] = splitHostPort(o.monitoringAddress);
    await new Promise<void>((resolve, reject) => {
      this.httpServer!.once('error', (err) => reject(new Error(`cannot listen on ${o.monitoringAddress} for metrics: ${err.message}`)));
      this.httpServer!.listen(Number(mport), mhost, () => resolve());
    });
    this.monitoringPort = (this.httpServer.address() as net.AddressInfo).port;
    this.ready = true;
    this.log.info({ grpc: `${host}:${this.grpcPort}`, monitoring: `${mhost}:${this.monitoringPort}`, trustDomain: o.trustDomain, dataDir: o.dataDir, revision: store.revision }, 'control plane ready');
  }

  private async serveHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/metrics') {
      res.setHeader('content-type', this.metrics.registry.contentType);
      res.end(await this.metrics.registry.metrics());
    } else if (url === '/healthz/ready') {
      res.statusCode = this.ready ? 200 : 503;
      res.end(this.ready ? 'ok\n' : 'starting\n');
    } else if (url === '/healthz/live') {
      res.end('ok\n');
    } else if (url === '/debug/subscribers') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(this.discovery?.subscriptions() ?? [], null, 2));
    } else {
      res.statusCode = 404;
      res.end('not found: try /metrics, /healthz/ready or /debug/subscribers\n');
    }
  }

  async stop(): Promise<void> {
    this.ready = false;
    this.discovery?.close();
    await new Promise<void>((resolve) => {
      if (!this.grpcServer) return resolve();
      const t = setTimeout(() => {
        this.grpcServer?.forceShutdown();
        resolve();
      }, 2000);
      this.grpcServer.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    await new Promise<void>((resolve) => (this.httpServer ? this.httpServer.close(() => resolve()) : resolve()));
    this.httpServer?.closeAllConnections();
    await this.signer?.close();
    this.store?.close();
    this.unlock?.();
  }
}

function publicKeyOf(keys: CryptoKeyPair): Promise<x509.PublicKey> {
  return x509.PublicKey.create(keys.publicKey);
}

export function splitHostPort(addr: string): [string, string] {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`"${addr}" is not host:port`);
  return [m[1], m[2]];
}

