/**
 * Opaque TCP through the waypoint: bytes that are not HTTP go, unmodified and with half-close
 * preserved, to one endpoint of the service the tunnel was addressed to.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from '../../lib/telemetry/log';
import type { RequestRecord } from '../telemetry/types';
import type { Cluster } from './cluster';
import type { UpstreamConnector } from './connector';

export interface TcpProxyOptions {
  client: Duplex;
  /** Bytes read during protocol detection that could not be put back into `client`. */
  leftover: Buffer;
  /** The client half-closed during detection. */
  clientEnded: boolean;
  cluster: Cluster;
  connector: UpstreamConnector;
  record: RequestRecord;
  sourceIp: string;
  log: Logger;
}

export function proxyTcp(o: TcpProxyOptions): void {
  const { client, cluster, record } = o;
  // Both from the cluster's DestinationRule (connectionPool.tcp), else the waypoint's defaults.
  const connectTimeoutMs = cluster.connectTimeoutMs;
  const idleTimeoutMs = cluster.tcpIdleTimeoutMs;
  let finished = false;
  const finish = (flag: string) => {
    if (finished) return;
    finished = true;
    record.close(0, flag);
  };
  client.on('error', () => client.destroy());
  const ep = cluster.pick({ headers: {}, sourceIp: o.sourceIp }, new Set());
  if (!ep) {
    client.destroy();
    return finish('UH');
  }
  const admission = cluster.admit('tcp');
  if (!admission.ok) {
    client.destroy();
    return finish('UO');
  }
  record.setDestination(ep.target.workload, ep.target.workload.identity, `${ep.address}:${ep.target.port}`);
  cluster.onStart(ep);
  const release = () => {
    admission.release();
    cluster.onEnd(ep);
  };
  let clientGone = false;
  client.once('close', () => {
    clientGone = true;
  });
  o.connector.connect(ep.target, { timeoutMs: connectTimeoutMs, traceparent: record.traceparent, keepalive: cluster.keepalive }).then(
    (server) => {
      cluster.report(ep, { status: 200 });
      record.connected?.();
      if (clientGone) {
        server.destroy();
        release();
        return finish('DC');
      }
      server.on('error', () => server.destroy());
      let lastActivity = Date.now();
      client.on('data', (c: Buffer) => {
        record.requestBytes += c.length;
        lastActivity = Date.now();
      });
      server.on('data', (c: Buffer) => {
        record.responseBytes += c.length;
        lastActivity = Date.now();
      });
      // One timer per connection, re-armed for the time left rather than on every chunk.
      const checkIdle = () => {
        const idle = Date.now() - lastActivity;
        if (idle >= idleTimeoutMs) {
          o.log.debug({ endpoint: ep.id, idleMs: idle }, 'closing an idle tcp connection');
          client.destroy();
          server.destroy();
          return;
        }
        idleTimer = setTimeout(checkIdle, idleTimeoutMs - idle);
        idleTimer.unref();
      };
      let idleTimer = setTimeout(checkIdle, idleTimeoutMs);
      idleTimer.unref();
      const maxAge = cluster.maxConnectionDurationMs;
      const ageTimer =
        maxAge > 0
          ? setTimeout(() => {
              o.log.debug({ endpoint: ep.id, maxConnectionDurationMs: maxAge }, 'closing a tcp connection at its maximum duration');
              client.destroy();
              server.destroy();
            }, maxAge).unref()
          : null;
      if (o.leftover.length > 0) {
        record.requestBytes += o.leftover.length;
        server.write(o.leftover);
      }
      if (o.clientEnded) server.end();
      else client.pipe(server);
      server.pipe(client);
      let closed = 0;
      const onClose = () => {
        if (++closed === 1) {
          // Whichever side closes first, the other gets a moment to flush, then goes too.
          setTimeout(() => {
            client.destroy();
            server.destroy();
          }, 5_000).unref();
          return;
        }
        clearTimeout(idleTimer);
        if (ageTimer !== null) clearTimeout(ageTimer);
        release();
        finish('-');
      };
      client.once('close', onClose);
      server.once('close', onClose);
      client.resume();
    },
    (e: unknown) => {
      cluster.report(ep, { connectFailure: true });
      o.log.debug({ err: e, endpoint: ep.id }, 'tcp upstream connect failed');
      release();
      client.destroy();
      finish('UF');
    },
  );
}
