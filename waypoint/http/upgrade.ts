/**
 * HTTP/1.1 Upgrade (WebSocket): the request goes to one endpoint (no retries: an upgrade is not
 * idempotent in any useful sense), the endpoint's 101 goes back to the caller, and from then on
 * the bytes flow both ways untouched until either side closes.
 */
import type { Duplex } from 'node:stream';
import type { RequestRecord } from '../telemetry/types';
import type { UpstreamRequestHead } from '../upstream/exchange';
import { pickWeighted } from '../upstream/weighted-pick';
import type { RawHttp1Downstream } from './downstream';
import { applyHeaderMutation } from './filters/header-mutation';
import { stripHopByHop } from './headers';
import { sendLocalReply } from './local-reply';
import type { RouteMatch } from './route-table';
import type { RouterDeps } from './router';
import type { ResponseFlag } from './types';

export interface UpgradeRequest {
  ds: RawHttp1Downstream;
  record: RequestRecord;
  route: RouteMatch;
  head: UpstreamRequestHead;
  /** Bytes the caller sent after its request head (already part of the upgraded stream). */
  clientHead: Buffer;
  sourceIp: string;
  faultFlag?: ResponseFlag;
}

function flags(...f: Array<ResponseFlag | undefined>): string {
  const l = f.filter((x): x is ResponseFlag => x !== undefined && x !== '-');
  return l.length === 0 ? '-' : l.join(',');
}

/** How long an upgrade waits for the endpoint's answer when its route sets no timeout. */
export const UPGRADE_RESPONSE_TIMEOUT_MS = 30_000;

export function forwardUpgrade(deps: RouterDeps, u: UpgradeRequest): void {
  const { ds, record } = u;
  const fail = (status: number, text: string, flag: ResponseFlag) => {
    sendLocalReply(ds, status, text, { grpc: false, record });
    record.close(status, flags(u.faultFlag, flag));
  };
  const backend = pickWeighted(u.route.backends, deps.random);
  if (!backend) return fail(u.route.noBackendStatus, 'no healthy upstream', 'UH');
  applyHeaderMutation(u.head.headers, backend.requestHeaders);
  const cluster = deps.clusters.get({ hostname: backend.hostname, port: backend.port, subset: backend.subset?.name });
  if (backend.subset && (backend.subset.labels === null || cluster.undefinedSubset)) return fail(503, 'no healthy upstream', 'NC');
  const ep = cluster.pick({ headers: u.head.headers, sourceIp: u.sourceIp }, new Set());
  if (!ep) return fail(503, 'no healthy upstream', 'UH');
  const admission = cluster.admit('http1');
  if (!admission.ok) return fail(503, 'upstream overflow', 'UO');
  record.setDestination(ep.target.workload, ep.target.workload.identity, `${ep.address}:${ep.target.port}`);
  cluster.onStart(ep);
  const up = cluster.http1.upgrade(ep.id, ep.target, u.head);
  let finished = false;
  // An endpoint that takes the request but never answers it must not hold the caller forever: the
  // route's timeout (or UPGRADE_RESPONSE_TIMEOUT_MS) covers the wait for the 101 or another answer.
  const answerTimer = setTimeout(() => {
    if (finished) return;
    up.abort();
    sendLocalReply(ds, 504, 'upstream request timeout', { grpc: false, record });
    end(504, 'UT');
  }, u.route.timeouts.requestMs ?? UPGRADE_RESPONSE_TIMEOUT_MS);
  const end = (status: number, flag?: ResponseFlag) => {
    clearTimeout(answerTimer);
    if (finished) return;
    finished = true;
    admission.release();
    cluster.onEnd(ep);
    record.close(status, flags(u.faultFlag, flag));
  };
  ds.onAbort(() => {
    up.abort();
    end(0, 'DC');
  });
  up.result.then(
    (r) => {
      clearTimeout(answerTimer);
      if (finished) {
        if (r.kind === 'upgraded') r.socket.destroy();
        else r.response.body.destroy();
        return;
      }
      if (ds.aborted) {
        if (r.kind === 'upgraded') r.socket.destroy();
        else r.response.body.destroy();
        return;
      }
      if (r.kind === 'response') {
        cluster.report(ep, { status: r.response.status });
        const h = { ...r.response.headers };
        stripHopByHop(h);
        ds.sendHeaders(r.response.status, h, { endStream: false, trailers: false });
        r.response.body.on('data', (c: Buffer) => {
          record.responseBytes += c.length;
          ds.write(c);
        });
        r.response.body.once('end', () => {
          ds.end();
          end(r.response.status);
        });
        r.response.body.once('close', () => {
          if (!finished) {
            ds.reset();
            end(r.response.status, 'UC');
          }
        });
        return;
      }
      cluster.report(ep, { status: 101 });
      const h = { ...r.headers };
      stripHopByHop(h, { keepUpgrade: true });
      ds.sendSwitchingProtocols(h);
      splice(ds.socket, r.socket, u.clientHead, r.head, record, () => end(101));
    },
    (e: unknown) => {
      const connect = (e as { code?: string }).code === 'ConnectFailed' || (e as { code?: string }).code === 'Denied';
      cluster.report(ep, { connectFailure: connect, status: connect ? undefined : 503 });
      if (finished) return;
      sendLocalReply(ds, 503, 'upstream connect error or disconnect/reset before headers', { grpc: false, record });
      end(503, connect ? 'UF' : 'UC');
    },
  );
}

/** Joins the two sockets, half-close preserved, counting bytes for telemetry; `done` runs once both are closed. */
function splice(client: Duplex, server: Duplex, clientHead: Buffer, serverHead: Buffer, record: RequestRecord, done: () => void): void {
  if (serverHead.length > 0) {
    record.responseBytes += serverHead.length;
    client.write(serverHead);
  }
  if (clientHead.length > 0) {
    record.requestBytes += clientHead.length;
    server.write(clientHead);
  }
  client.on('data', (c: Buffer) => {
    record.requestBytes += c.length;
  });
  server.on('data', (c: Buffer) => {
    record.responseBytes += c.length;
  });
  client.pipe(server);
  server.pipe(client);
  let closed = 0;
  const onClose = () => {
    if (++closed < 2) {
      // One side is gone for good: give the other a moment to flush, then close it too.
      setTimeout(() => {
        client.destroy();
        server.destroy();
      }, 1000).unref();
      return;
    }
    done();
  };
  client.once('close', onClose);
  server.once('close', onClose);
  client.on('error', () => client.destroy());
  server.on('error', () => server.destroy());
  client.resume();
}
