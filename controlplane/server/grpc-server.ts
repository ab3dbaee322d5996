import * as grpc from '@grpc/grpc-js';
import { ApiError } from '../../lib/api/errors';
import { services, toServiceError } from '../../lib/api/grpc';
import { dnsSubdomain } from '../../lib/api/meta';
import { AMBIT_API_VERSION, Resource, WAYPOINT_GATEWAY_CLASS } from '../../lib/api/resource';
import { nodeId, Principal, workloadId } from '../../lib/identity/spiffe';
import type { Logger } from '../../lib/telemetry/log';
import { CsrError } from '../ca/ca';
import type { SignerPool } from '../ca/signer-pool';
import type { ControlPlaneMetrics } from '../metrics';
import type { Store } from '../store/store';
import { StoreConflictError } from '../store/store';
import type { Subscriber } from '../translate/translate';
import { Authenticator } from './auth';
import { WorkloadIndex } from './workload-index';
import type { DiscoveryServer } from './discovery';
import type { ResourceApi } from './resource-api';
import { isRouteKind, withRouteStatus } from './route-status';
import { newToken, parseToken, secretMatches, TOKEN_KIND, TokenSpec } from './tokens';

export interface GrpcDeps {
  store: Store;
  api: ResourceApi;
  discovery: DiscoveryServer;
  signer: SignerPool;
  rootPem: string;
  trustDomain: string;
  workloadCertTtlMs: number;
  nodeCertTtlMs: number;
  metrics: ControlPlaneMetrics;
  log: Logger;
}

type Unary<Req, Res> = grpc.handleUnaryCall<Req, Res>;

const MAX_TOKEN_TTL_MS = 7 * 24 * 3600 * 1000;

export function buildGrpcServer(d: GrpcDeps): grpc.Server {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024, 'grpc.max_send_message_length': 256 * 1024 * 1024 });
  const auth = new Authenticator(d.trustDomain);
  const workloads = new WorkloadIndex(d.store);
  const svc = services();

  const authed = (method: string, call: object): Principal => {
    const p = auth.principal(call);
    if (!p) {
      d.metrics.authFailures.inc({ method });
      throw new ApiError('Unauthenticated', 'no valid client certificate of this mesh: use the admin credential from the control plane data dir (AMBIT_CONFIG), or a node certificate');
    }
    return p;
  };
  const unary = <Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res): Unary<Req, Res> =>
    (call, cb) => {
      Promise.resolve()
        .then(() => fn(call.request, call))
        .then(
          (res) => {
            d.metrics.apiRequests.inc({ method, code: 'OK' });
            cb(null, res);
          },
          (err: unknown) => {
            const se = toServiceError(err);
            d.metrics.apiRequests.inc({ method, code: err instanceof ApiError ? err.code : 'Internal' });
            if (!(err instanceof ApiError)) d.log.error({ err, method }, 'request failed');
            cb(se as grpc.ServiceError);
          },
        );
    };

  // ---- Resources
  server.addService(svc.Resources.service, {
    Apply: unary<{ documents: string[]; dryRun: boolean }, object>('Apply', async (req, call) => {
      const who = authed('Apply', call);
      const docs = req.documents.map((s, index) => {
        try {
          return JSON.parse(s) as unknown;
        } catch {
          throw new ApiError('Invalid', `document ${index}: not valid JSON`);
        }
      });
      return { results: await d.api.apply(who, docs, req.dryRun) };
    }),
    Get: unary<{ kind: string; namespace: string; name: string }, object>('Get', (req, call) => {
      const who = authed('Get', call);
      return { json: JSON.stringify(withStatus(d, d.api.get(who, req.kind, req.namespace, req.name))) };
    }),
    List: unary<{ kind: string; namespace: string; labelSelector: string }, object>('List', (req, call) => {
      const who = authed('List', call);
      const { items, revision } = d.api.list(who, req.kind, req.namespace, req.labelSelector);
      return { items: items.map((r) => JSON.stringify(withStatus(d, r))), resourceVersion: String(revision) };
    }),
    Delete: unary<{ refs: Array<{ kind: string; namespace: string; name: string; resourceVersion: string }>; ignoreNotFound: boolean }, object>('Delete', async (req, call) => {
      const who = authed('Delete', call);
      return { results: await d.api.delete(who, req.refs, req.ignoreNotFound) };
    }),
    Watch: (call: grpc.ServerWritableStream<{ kind: string; namespace: string; labelSelector: string }, object>) => {
      let stop: (() => void) | undefined;
      try {
        const who = authed('Watch', call);
        stop = d.api.watch(who, call.request.kind, call.request.namespace, call.request.labelSelector, (type, r, rev) => {
          call.write({ type, json: JSON.stringify(r), resourceVersion: String(rev) });
        });
      } catch (err) {
        call.destroy(Object.assign(new Error((toServiceError(err).details as string) ?? 'error'), toServiceError(err)));
        return;
      }
      const end = () => stop?.();
      call.on('cancelled', end);
      call.on('close', end);
      call.on('error', end);
    },
  });

  // ---- Identity
  const sign = async (csr: string, uri: string, ttlMs: number, kind: string) => {
    try {
      const issued = await d.signer.signCsr(csr, uri, ttlMs);
      d.metrics.csrSigned.inc({ kind });
      return issued;
    } catch (err) {
      if (err instanceof CsrError) {
        d.metrics.csrRefused.inc({ reason: 'bad-csr' });
        throw new ApiError('Invalid', err.message);
      }
      throw err;
    }
  };
  const refuse = (reason: string, message: string): never => {
    d.metrics.csrRefused.inc({ reason });
    throw new ApiError('Forbidden', message);
  };
  server.addService(svc.Identity.service, {
    CreateBootstrapToken: unary<{ node: string; ttlSeconds: string }, object>('CreateBootstrapToken', async (req, call) => {
      const who = authed('CreateBootstrapToken', call);
      if (who.role !== 'admin') throw new ApiError('Forbidden', 'only an admin may create bootstrap tokens');
      const name = dnsSubdomain.safeParse(req.node);
      if (!name.success) throw new ApiError('Invalid', `node: ${name.error.issues[0]?.message ?? 'invalid name'}`, [{ path: 'node', message: name.error.issues[0]?.message ?? 'invalid' }]);
      const ttlMs = Number(req.ttlSeconds || 0) > 0 ? Number(req.ttlSeconds) * 1000 : 24 * 3600 * 1000;
      if (ttlMs > MAX_TOKEN_TTL_MS) throw new ApiError('Invalid', 'a bootstrap token may live at most 7 days');
      const t = newToken(req.node, ttlMs);
      await d.store.commit([{ op: 'put', resource: t.resource as unknown as Resource, expectVersion: '0' }]);
      return { token: t.token, expiresAt: (t.resource.spec as TokenSpec).expiresAt };
    }),
    JoinNode: unary<{ csr: string }, object>('JoinNode', async (req, call) => {
      const header = String(call.metadata.get('authorization')[0] ?? '');
      const parsed = parseToken(header.replace(/^Bearer\s+/i, ''));
      const stored = parsed && d.store.get({ kind: TOKEN_KIND, namespace: '', name: parsed.id });
      const spec = stored?.spec as TokenSpec | undefined;
      if (!parsed || !stored || !spec || !secretMatches(spec, parsed.secret) || Date.parse(spec.expiresAt) < Date.now()) {
        d.metrics.authFailures.inc({ method: 'JoinNode' });
        throw new ApiError('Unauthenticated', 'the bootstrap token is unknown, expired or already used; create one with `ambit token create --node NAME`');
      }
      const issued = await sign(req.csr, nodeId(d.trustDomain, spec.node), d.nodeCertTtlMs, 'node');
      const nodeKey = { kind: 'Node', namespace: '', name: spec.node };
      const ops: Parameters<Store['commit']>[0] = [{ op: 'delete', key: { kind: TOKEN_KIND, namespace: '', name: parsed.id }, expectVersion: stored.metadata.resourceVersion }];
      if (!d.store.get(nodeKey)) {
        const node: Resource = { apiVersion: AMBIT_API_VERSION, kind: 'Node', metadata: { name: spec.node }, spec: { addresses: [], podCIDRs: [] } };
        ops.push({ op: 'put', resource: node });
      }
      try {
        // Consuming the token and registering the node is one commit: a token works once.
        await d.store.commit(ops);
      } catch (err) {
        if (err instanceof StoreConflictError) throw new ApiError('Unauthenticated', 'the bootstrap token was already used');
        throw err;
      }
      d.log.info({ node: spec.node }, 'node joined');
      return { node: spec.node, certChain: issued.certChainPem, rootCert: d.rootPem, trustDomain: d.trustDomain, expiresAt: issued.notAfter.toISOString() };
    }),
    RenewNode: unary<{ csr: string }, object>('RenewNode', async (req, call) => {
      const who = authed('RenewNode', call);
      if (who.role !== 'node') throw new ApiError('Forbidden', 'only a node may renew a node certificate');
      if (!d.store.get({ kind: 'Node', namespace: '', name: who.node })) refuse('node-removed', `node ${who.node} was removed; join again with a new bootstrap token`);
      const issued = await sign(req.csr, nodeId(d.trustDomain, who.node), d.nodeCertTtlMs, 'node');
      return { node: who.node, certChain: issued.certChainPem, rootCert: d.rootPem, trustDomain: d.trustDomain, expiresAt: issued.notAfter.toISOString() };
    }),
    CreateCertificate: unary<{ csr: string; namespace: string; serviceAccount: string }, object>('CreateCertificate', async (req, call) => {
      const who = authed('CreateCertificate', call);
      if (who.role !== 'node') refuse('not-a-node', `${who.id} may not request workload certificates; only node credentials can`);
      const node = (who as Extract<Principal, { role: 'node' }>).node;
      if (!d.store.get({ kind: 'Node', namespace: '', name: node })) refuse('node-removed', `node ${node} was removed`);
      const ns = req.namespace;
      const sa = req.serviceAccount || 'default';
      const hosted = workloads.has(node, ns, sa);
      const uri = workloadId(d.trustDomain, ns || '-', sa);
      if (!ns || !hosted) {
        d.log.warn({ node, identity: uri }, 'refused a certificate for an identity with no workload on the requesting node');
        refuse('no-workload-on-node', `node ${node} runs no workload with service account ${sa} in namespace ${ns || '(empty)'}; refusing ${uri}`);
      }
      const issued = await sign(req.csr, uri, d.workloadCertTtlMs, 'workload');
      return { certChain: issued.certChainPem, rootCert: d.rootPem, expiresAt: issued.notAfter.toISOString() };
    }),
  });

  // ---- Discovery
  server.addService(svc.Discovery.service, {
    Subscribe: (call: grpc.ServerDuplexStream<DiscoveryRequestMsg, object>) => {
      let handle: ReturnType<DiscoveryServer['connect']> | undefined;
      let who: Principal;
      try {
        who = authed('Subscribe', call);
      } catch (err) {
        call.emit('error', toServiceError(err));
        call.end();
        return;
      }
      const fail = (err: ApiError) => {
        handle?.close();
        call.emit('error', toServiceError(err));
        call.end();
      };
      call.on('data', (msg: DiscoveryRequestMsg) => {
        if (!handle) {
          const sub = parseSubscriber(msg.subscriber);
          if (!sub) return fail(new ApiError('Invalid', 'the first message must name the subscriber: type ztunnel (name = node) or waypoint (name = namespace/name)'));
          const denied = subscribeDenied(who, sub);
          if (denied) return fail(new ApiError('Forbidden', denied));
          handle = d.discovery.connect(sub, msg.initialResourceVersions ?? {}, (r) => call.write(r));
          return;
        }
        if (msg.responseNonce) handle.onReply(msg.responseNonce, msg.errorDetail ?? '');
      });
      const close = () => handle?.close();
      call.on('end', () => {
        close();
        call.end();
      });
      call.on('cancelled', close);
      call.on('error', close);
      call.on('close', close);
    },
  });
  return server;
}

/**
 * A waypoint Gateway's status is live, as Kubernetes controllers keep it: Programmed once an
 * instance has applied the configuration pushed to it (computed on read, so it never
 * goes stale in the store). Routes get theirs the same way (route-status.ts).
 */
function withStatus(d: { discovery: DiscoveryServer; store: Store }, r: Resource): Resource {
  if (isRouteKind(r.kind)) return withRouteStatus(d.store, r);
  const discovery = d.discovery;
  if (r.kind !== 'Gateway' || (r.spec as { gatewayClassName?: string } | undefined)?.gatewayClassName !== WAYPOINT_GATEWAY_CLASS) return r;
  const st = discovery.waypointStatus(r.metadata.namespace ?? '', r.metadata.name);
  const programmed = st.synced > 0;
  const reason = programmed ? 'Programmed' : st.lastNack ? 'Invalid' : st.instances > 0 ? 'Pending' : 'NoInstances';
  const message = programmed
    ? `${st.synced} of ${st.instances} instance(s) applied the current configuration${st.lastNack ? `; refused: ${st.lastNack}` : ''}`
    : st.lastNack
      ? `the waypoint refused its configuration: ${st.lastNack}`
      : st.instances > 0
        ? 'an instance is connected and has not applied its configuration yet'
        : 'no waypoint instance is connected to the control plane';
  const now = new Date().toISOString();
  return {
    ...r,
    status: {
      conditions: [
        { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'waypoint of class istio-waypoint', lastTransitionTime: now },
        { type: 'Programmed', status: programmed ? 'True' : 'False', reason, message, lastTransitionTime: now },
      ],
      instances: st.instances,
    },
  };
}

interface DiscoveryRequestMsg {
  subscriber?: { type: string; name: string };
  initialResourceVersions?: Record<string, string>;
  responseNonce?: string;
  errorDetail?: string;
}

function parseSubscriber(s: { type: string; name: string } | undefined): Subscriber | null {
  if (!s) return null;
  if (s.type === 'ztunnel' && s.name) return { type: 'ztunnel', node: s.name };
  if (s.type === 'waypoint') {
    const [namespace, name, extra] = s.name.split('/');
    if (namespace && name && extra === undefined) return { type: 'waypoint', namespace, name };
  }
  return null;
}

function subscribeDenied(who: Principal, sub: Subscriber): string | null {
  if (who.role === 'admin') return null;
  if (sub.type === 'ztunnel') {
    return who.role === 'node' && who.node === sub.node ? null : `${who.id} may not subscribe as the ztunnel of node ${sub.node}`;
  }
  return who.role === 'workload' && who.namespace === sub.namespace && who.serviceAccount === sub.name
    ? null
    : `${who.id} may not subscribe as waypoint ${sub.namespace}/${sub.name}`;
}
