import net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { HboneClient } from '../../lib/hbone/client';
import { H_FORWARDED, H_TRACEPARENT } from '../../lib/hbone/settings';
import { PORT_HBONE } from '../../lib/api/node-protocol';
import { setKeepalive } from '../../lib/native';
import type { TcpKeepalive } from './connector';

export interface ConnectTarget {
  workload: { identity: string; hbone: boolean };
  address: string;
  port: number;
}

/**
 * The waypoint's second tunnel: to a mesh endpoint over HBONE with the waypoint's own
 * SVID (the endpoint's ztunnel applies its L4 policy to the waypoint's identity), or
 * plain TCP to an endpoint outside the mesh. The waypoint's pod is never captured, so
 * its sockets need no mark.
 */
export class HboneConnector {
  private readonly hbone = new HboneClient();

  constructor(
    private readonly identity: () => { id: string; context: tls.SecureContext },
    /** Nodes' HBONE port; only tests change it. */
    private readonly hbonePort = PORT_HBONE,
  ) {}

  async connect(target: ConnectTarget, opts: { timeoutMs: number; traceparent?: string; forwardedFor?: string; keepalive?: TcpKeepalive }): Promise<Duplex> {
    const keepalive = opts.keepalive;
    if (!target.workload.hbone) return plainConnect(target.address, target.port, opts.timeoutMs, keepalive);
    const me = this.identity();
    const headers: Record<string, string> = {};
    if (opts.forwardedFor) headers[H_FORWARDED] = `for=${opts.forwardedFor.includes(':') ? `"[${opts.forwardedFor}]"` : opts.forwardedFor}`;
    if (opts.traceparent) headers[H_TRACEPARENT] = opts.traceparent;
    const t = await this.hbone.open({
      sourceId: me.id,
      sourceContext: me.context,
      peerAddress: target.address,
      peerPort: this.hbonePort,
      expectedIdentities: [target.workload.identity],
      authority: target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`,
      headers,
      // Only called when no HBONE connection to that node is pooled: a pooled one is shared by every
      // service it carries and keeps the keepalive it was opened with.
      dial: (host, port) => {
        const s = net.connect({ host, port, noDelay: true });
        if (keepalive) s.once('connect', () => applyKeepalive(s, keepalive));
        return s;
      },
      timeoutMs: opts.timeoutMs,
    });
    return t.stream;
  }

  /** A rotated SVID: new sessions use it; pooled ones finish on the old one. */
  rotated(): void {
    this.hbone.close();
  }

  close(): void {
    this.hbone.close();
  }
}

/** The socket has its fd once connected; a failure leaves the connection as it is rather than failing it. */
function applyKeepalive(s: net.Socket, k: TcpKeepalive): void {
  try {
    setKeepalive(s, k);
  } catch {
    // Only an unusual platform or a socket closed meanwhile gets here; node's own call still enables probes.
    s.setKeepAlive(true, (k.idleSeconds ?? 0) * 1000);
  }
}

function plainConnect(host: string, port: number, timeoutMs: number, keepalive: TcpKeepalive | undefined): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const t = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`), { code: 'Timeout' }));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      if (keepalive) applyKeepalive(s, keepalive);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(Object.assign(new Error(`connect to ${host}:${port} failed: ${err.message}`), { code: 'ConnectFailed' }));
    });
  });
}
