import { spawn, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ControlPlane, DEFAULTS, ControlPlaneOptions } from '../../controlplane/controlplane';
import { AmbitClient } from '../../lib/api/client';
import { dialFor, dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { createCsr, generateKeyPair, privateKeyToPem } from '../../lib/identity/pki';
import { createLogger } from '../../lib/telemetry/log';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const AMBIT_BIN = path.join(REPO, 'bin', 'ambit');

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ambit-${prefix}-`));
}

export interface RunningControlPlane {
  cp: ControlPlane;
  dataDir: string;
  admin: AmbitClient;
  adminConfig: string;
  rootPem: string;
  address: string;
  stop(): Promise<void>;
}

/** A control plane in this process, on loopback port 0, with its own data dir. */
export async function startControlPlane(opts: Partial<ControlPlaneOptions> = {}): Promise<RunningControlPlane> {
  const dataDir = opts.dataDir ?? tmpDir('cp');
  const cp = new ControlPlane({
    ...DEFAULTS,
    dataDir,
    grpcAddress: '127.0.0.1:0',
    monitoringAddress: '127.0.0.1:0',
    debounceMs: 20,
    maxPushDelayMs: 200,
    signerThreads: 1,
    logger: createLogger('controlplane', 'silent'),
    ...opts,
  });
  await cp.start();
  const cfg = loadClientConfig(cp.adminConfigPath);
  const admin = new AmbitClient(dialFromConfig(cfg));
  return {
    rootPem: cfg.certificateAuthority,
    address: `127.0.0.1:${cp.grpcPort}`,
    cp,
    dataDir,
    admin,
    adminConfig: cp.adminConfigPath,
    async stop() {
      admin.close();
      await cp.stop();
      if (!opts.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ChildControlPlane {
  proc: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `ambit controlplane` as a real child process (for crash tests); resolves once it is ready. */
export async function spawnControlPlane(dataDir: string, extra: string[] = []): Promise<ChildControlPlane> {
  const proc = spawn(process.execPath, [AMBIT_BIN, 'controlplane', '--data-dir', dataDir, '--grpc-addr', '127.0.0.1:0', '--monitoring-addr', '127.0.0.1:0', '--log-level', 'warn', ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`control plane did not start in 30s:\n${err}`)), 30_000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /gRPC on port (\d+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    void exited.then((code) => {
      clearTimeout(t);
      reject(new Error(`control plane exited with ${code}:\n${err}`));
    });
  });
  return { proc, port, stderr: () => err, exited };
}

export interface NodeCredential {
  node: string;
  client: AmbitClient;
  certPem: string;
  keyPem: string;
  rootPem: string;
}

/** Joins a node the way an agent does: bootstrap token -> CSR -> node certificate -> mTLS client. */
export async function joinNode(admin: AmbitClient, address: string, rootPem: string, node: string): Promise<NodeCredential> {
  const { token } = await admin.createBootstrapToken(node);
  const keys = await generateKeyPair();
  const csr = await createCsr(keys, `spiffe://cluster.local/ambit/node/${node}`);
  const anon = new AmbitClient(dialFor(address, rootPem, 'ambit-controlplane'));
  try {
    const cert = await anon.joinNode(token, csr);
    const keyPem = await privateKeyToPem(keys.privateKey);
    const client = new AmbitClient(dialFor(address, cert.rootCert, 'ambit-controlplane', { certPem: cert.certChain, keyPem }));
    return { node, client, certPem: cert.certChain, keyPem, rootPem: cert.rootCert };
  } finally {
    anon.close();
  }
}

export function address(cp: ControlPlane): string {
  return `127.0.0.1:${cp.grpcPort}`;
}

export function ns(name: string, labels: Record<string, string> = {}) {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

export function workload(name: string, namespace: string, node: string, ip: string, labels: Record<string, string> = {}, sa = 'default') {
  return { apiVersion: 'ambit.io/v1alpha1', kind: 'Workload', metadata: { name, namespace, labels }, spec: { node, serviceAccount: sa, addresses: [ip] } };
}

export function service(name: string, namespace: string, selector: Record<string, string>, port = 80, targetPort = 8080) {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec: { selector, ports: [{ port, targetPort }] } };
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sum of a Prometheus counter/gauge across its series, read from the control plane's /metrics. */
export async function metric(port: number, name: string, labelFragment = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.includes(labelFragment)) continue;
    const series = line.split(/[{ ]/)[0];
    if (series === name) total += Number(line.split(' ').pop());
  }
  return total;
}
