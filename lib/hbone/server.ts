import http2 from 'node:http2';
import type tls from 'node:tls';
import { PeerIdentityCache } from '../identity/peer';
import { HBONE_SETTINGS, raiseSessionWindow } from './settings';

export interface TunnelContext {
  /** The client's SPIFFE ID (TLS has verified its chain to the mesh root); null if none could be read. */
  peerIdentity: string | null;
  remoteAddress: string;
  remotePort: number;
  authority: string;
  headers: http2.IncomingHttpHeaders;
}

export interface HboneServerOptions {
  /** PEM material of the serving SVID: cert chain, key, and the trust bundle clients must chain to. */
  certChainPem: string;
  keyPem: string;
  rootPem: string;
  /** Called once per CONNECT stream; answer with `stream.respond({':status': ...})`. */
  onTunnel: (ctx: TunnelContext, stream: http2.ServerHttp2Stream) => void;
}

const identities = new PeerIdentityCache();
const sessionPeers = new WeakMap<http2.Http2Session, string | null>();

/**
 * HBONE server: mutual TLS 1.3 (a client certificate chaining to the mesh root is
 * required), HTTP/2 with raised windows, CONNECT only. Listen it on an fd from lib/native.
 */
export type HboneServer = http2.Http2SecureServer & {
  rotate(certChainPem: string, keyPem: string, rootPem: string): void;
  /** Stops accepting: closes the listener and sends GOAWAY on every session, whose open tunnels run to their end. */
  drain(): void;
};

export function createHboneServer(opts: HboneServerOptions): HboneServer {
  const server = http2.createSecureServer({
    cert: opts.certChainPem,
    key: opts.keyPem,
    ca: opts.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['h2'],
    allowHTTP1: false,
    settings: HBONE_SETTINGS,
  }) as HboneServer;
  const sessions = new Set<http2.ServerHttp2Session>();
  server.drain = () => {
    server.close();
    for (const s of sessions) s.close();
  };
  server.rotate = (certChainPem, keyPem, rootPem) => {
    (server as unknown as tls.Server).setSecureContext({ cert: certChainPem, key: keyPem, ca: rootPem, minVersion: 'TLSv1.3' });
  };
  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    raiseSessionWindow(session);
    session.on('error', () => undefined);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    if (headers[':method'] !== 'CONNECT') {
      stream.respond({ ':status': 405 }, { endStream: true });
      return;
    }
    const authority = String(headers[':authority'] ?? '');
    const socket = stream.session?.socket as tls.TLSSocket | undefined;
    if (!socket) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    // One peer per session: read its certificate once, not per CONNECT stream.
    let peerIdentity = sessionPeers.get(stream.session!);
    if (peerIdentity === undefined) {
      const cert = socket.getPeerCertificate();
      peerIdentity = cert && cert.raw ? identities.identity(cert) : null;
      sessionPeers.set(stream.session!, peerIdentity);
    }
    opts.onTunnel(
      {
        peerIdentity,
        remoteAddress: socket.remoteAddress ?? '',
        remotePort: socket.remotePort ?? 0,
        authority,
        headers,
      },
      stream,
    );
  });
  server.on('tlsClientError', () => undefined);
  server.on('sessionError', () => undefined);
  return server;
}
