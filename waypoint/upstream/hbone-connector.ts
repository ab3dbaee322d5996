import net from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { HboneClient } from '../../lib/hbone/client';
import { H_FORWARDED, H_TRACEPARENT } from '../../lib/hbone/settings';
import { PORT_HBONE } from '../../lib/api/node-protocol';

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

  constructor(private readonly identity: () => { id: string; context: tls.SecureContext }) {}

  async connect(target: ConnectTarget, opts: { timeoutMs: number; traceparent?: string; forwardedFor?: string }): Promise<Duplex> {
    if (!target.workload.hbone) return plainConnect(target.address, target.port, opts.timeoutMs);
    const me = this.identity();
    const headers: Record<string, string> = {};
    if (opts.forwardedFor) headers[H_FORWARDED] = `for=${opts.forwardedFor.includes(':') ? `"[${opts.forwardedFor}]"` : opts.forwardedFor}`;
    if (opts.traceparent) headers[H_TRACEPARENT] = opts.traceparent;
    const t = await this.hbone.open({
      sourceId: me.id,
      sourceContext: me.context,
      peerAddress: target.address,
      peerPort: PORT_HBONE,
      expectedIdentities: [target.workload.identity],
      authority: target.address.includes(':') ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`,
      headers,
      dial: (host, port) => {
        const s = net.connect({ host, port, noDelay: true });
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

function plainConnect(host: string, port: number, timeoutMs: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, noDelay: true });
    const t = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`), { code: 'Timeout' }));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(Object.assign(new Error(`connect to ${host}:${port} failed: ${err.message}`), { code: 'ConnectFailed' }));
    });
  });
}
