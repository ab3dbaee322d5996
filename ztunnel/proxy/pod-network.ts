import net from 'node:net';
import dgram from 'node:dgram';
import * as native from '../../lib/native';
import { ZTUNNEL_MARK } from '../../lib/api/node-protocol';

const CONNECT_TIMEOUT_MS = 10_000;

/**
 * Sockets on behalf of one pod: listeners inside its netns, and upstream connections
 * from inside its netns (so traffic leaves with the pod's address) marked so the pod's
 * redirect rules never capture them again. The only place the ztunnel meets lib/native.
 */
export interface PodNetwork {
  /** `host` defaults to every address; loopback-only listeners pass 127.0.0.1 or ::1. */
  listenTcp(port: number, host?: string): net.Server;
  /** A listening fd for servers that are not plain net.Servers (the HBONE TLS server). */
  listenTcpFd(port: number, host?: string): number;
  bindUdp(port: number, host: string): dgram.Socket;
  connect(host: string, port: number): net.Socket;
  originalDst(socket: net.Socket): { address: string; port: number };
}

export class NetnsPodNetwork implements PodNetwork {
  constructor(readonly netns: string, private readonly listenHost = '0.0.0.0') {}

  listenTcpFd(port: number, host = this.listenHost): number {
    // SO_REUSEPORT: a restarted ztunnel binds beside the old one and takes over without a gap.
    return native.listenTcp({ netns: this.netns, host, port, reusePort: true, backlog: 1024 });
  }

  listenTcp(port: number, host = this.listenHost): net.Server {
    const fd = this.listenTcpFd(port, host);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true });
    server.listen({ fd });
    return server;
  }

  bindUdp(port: number, host: string): dgram.Socket {
    const fd = native.bindUdp({ netns: this.netns, host, port, reusePort: true });
    const sock = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    sock.bind({ fd });
    return sock;
  }

  connect(host: string, port: number): net.Socket {
    const s = native.connectMarked({ netns: this.netns, host, port, mark: ZTUNNEL_MARK, allowHalfOpen: true });
    // An unanswered SYN would otherwise hold the connection (and its client) for ~2 minutes.
    const t = setTimeout(() => s.destroy(Object.assign(new Error(`connect ${host}:${port} timed out after ${CONNECT_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })), CONNECT_TIMEOUT_MS);
    t.unref();
    s.once('connect', () => clearTimeout(t));
    s.once('close', () => clearTimeout(t));
    return s;
  }

  originalDst(socket: net.Socket): { address: string; port: number } {
    return native.originalDst(socket);
  }
}
