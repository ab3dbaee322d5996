import * as grpc from '@grpc/grpc-js';
import { Dial } from './client-config';
import { fromServiceError, services } from './grpc';
import type { Resource } from './resource';

export interface ApplyResult { kind: string; namespace: string; name: string; action: string; resourceVersion: string }

type Cb<T> = (err: grpc.ServiceError | null, res: T) => void;
type UnaryFn<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: Cb<Res>) => void;

/** Promise-shaped client of the control plane's API; errors arrive as ApiError. */
export class AmbitClient {
  readonly resources: grpc.Client;
  readonly identity: grpc.Client;
  readonly discovery: grpc.Client;

  constructor(readonly dial: Dial) {
    const s = services();
    this.resources = new s.Resources(dial.address, dial.credentials, dial.options);
    // One channel for all three services.
    const channelOverride = this.resources.getChannel();
    this.identity = new s.Identity(dial.address, dial.credentials, { ...dial.options, channelOverride });
    this.discovery = new s.Discovery(dial.address, dial.credentials, { ...dial.options, channelOverride });
  }

  private call<Req, Res>(client: grpc.Client, method: string, req: Req, md = new grpc.Metadata(), timeoutMs = 30_000): Promise<Res> {
    const fn = (client as unknown as Record<string, UnaryFn<Req, Res>>)[method].bind(client);
    return new Promise((resolve, reject) => {
      fn(req, md, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res)));
    });
  }

  async apply(docs: unknown[], dryRun = false): Promise<ApplyResult[]> {
    const r = await this.call<object, { results: ApplyResult[] }>(this.resources, 'Apply', { documents: docs.map((d) => JSON.stringify(d)), dryRun }, undefined, 120_000);
    return r.results;
  }

  async get(kind: string, namespace: string, name: string): Promise<Resource> {
    const r = await this.call<object, { json: string }>(this.resources, 'Get', { kind, namespace, name });
    return JSON.parse(r.json) as Resource;
  }

  async list(kind: string, namespace = '', labelSelector = ''): Promise<Resource[]> {
    const r = await this.call<object, { items: string[] }>(this.resources, 'List', { kind, namespace, labelSelector });
    return r.items.map((s) => JSON.parse(s) as Resource);
  }

  async delete(refs: Array<{ kind: string; namespace?: string; name: string; resourceVersion?: string }>, ignoreNotFound = false): Promise<ApplyResult[]> {
    const r = await this.call<object, { results: ApplyResult[] }>(this.resources, 'Delete', { refs: refs.map((x) => ({ namespace: '', resourceVersion: '', ...x })), ignoreNotFound });
    return r.results;
  }

  watch(kind: string, namespace: string, labelSelector: string, onEvent: (type: string, r: Resource) => void, onEnd: (err?: Error) => void): () => void {
    const call = (this.resources as unknown as { Watch: (req: object) => grpc.ClientReadableStream<{ type: string; json: string }> }).Watch({ kind, namespace, labelSelector });
    call.on('data', (e: { type: string; json: string }) => onEvent(e.type, JSON.parse(e.json) as Resource));
    call.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? onEnd() : onEnd(fromServiceError(err))));
    call.on('end', () => onEnd());
    return () => call.cancel();
  }

  createBootstrapToken(node: string, ttlSeconds = 0): Promise<{ token: string; expiresAt: string }> {
    return this.call(this.identity, 'CreateBootstrapToken', { node, ttlSeconds });
  }

  joinNode(token: string, csr: string): Promise<NodeCertificate> {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return this.call(this.identity, 'JoinNode', { csr }, md);
  }

  renewNode(csr: string): Promise<NodeCertificate> {
    return this.call(this.identity, 'RenewNode', { csr });
  }

  createCertificate(csr: string, namespace: string, serviceAccount: string): Promise<{ certChain: string; rootCert: string; expiresAt: string }> {
    return this.call(this.identity, 'CreateCertificate', { csr, namespace, serviceAccount });
  }

  close(): void {
    this.resources.close();
  }
}

export interface NodeCertificate { node: string; certChain: string; rootCert: string; trustDomain: string; expiresAt: string }
