import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { PeerIdentityCache } from '../identity/peer';
import { HboneError } from './errors';
import { HBONE_SETTINGS, raiseSessionWindow } from './settings';

/** Opens the TCP socket a tunnel rides on (in the source pod's netns, marked, for the ztunnel). */
export type Dialer = (host: string, port: number) => net.Socket;

export interface TunnelRequest {
  /** Key for pooling: the source identity. */
  sourceId: string;
  sourceContext: tls.SecureContext;
  peerAddress: string;
  peerPort: number;
  /** The server must present one of these SPIFFE IDs, compared exactly. */
  expectedIdentities: string[];
  /** `:authority` of the CONNECT: the original destination ip:port (or service host:port toward a waypoint). */
  authority: string;
  headers?: Record<string, string>;
  dial: Dialer;
  timeoutMs?: number;
}

export interface Tunnel {
  stream: http2.ClientHttp2Stream;
  /** The identity the peer proved. */
  peerIdentity: string;
}

interface PooledSession {
  session: http2.ClientHttp2Session;
  ready: Promise<void>;
  peerIdentity?: string;
}

const identities = new PeerIdentityCache();

/**
 * HBONE client: HTTP/2 CONNECT over mutual TLS, sessions pooled per (source identity,
 * destination identity, destination address) and multiplexing many tunnels.
 */
export class HboneClient {
  private readonly pool = new Map<string, PooledSession>();

  async open(req: TunnelRequest): Promise<Tunnel> {
    const key = `${req.sourceId}|${[...req.expectedIdentities].sort().join(',')}|${req.peerAddress}:${req.peerPort}`;
    let pooled = this.pool.get(key);
    if (!pooled || pooled.session.closed || pooled.session.destroyed || (pooled.session as { goawayReceived?: boolean }).goawayReceived) {
      pooled = this.connect(req, key);
      this.pool.set(key, pooled);
    }
    await pooled.ready;
    return this.request(pooled, req);
  }

  private connect(req: TunnelRequest, key: string): PooledSession {
    const timeoutMs = req.timeoutMs ?? 10_000;
    const expected = new Set(req.expectedIdentities);
    const pooled: PooledSession = { session: undefined as unknown as http2.ClientHttp2Session, ready: Promise.resolve() };
    let tlsSocket: tls.TLSSocket | undefined;
    const session = http2.connect(`https://${req.peerAddress.includes(':') ? `[${req.peerAddress}]` : req.peerAddress}:${req.peerPort}`, {
      settings: HBONE_SETTINGS,
      createConnection: () => {
        const raw = req.dial(req.peerAddress, req.peerPort);
        tlsSocket = tls.connect({
          socket: raw,
          secureContext: req.sourceContext,
          ALPNProtocols: ['h2'],
          minVersion: 'TLSv1.3',
          // The chain is verified against the mesh root; identity is the URI SAN, checked exactly.
          checkServerIdentity: (_host, cert) => {
            const id = identities.identity(cert);
            if (!id) return new HboneError('IdentityMismatch', `peer ${req.peerAddress} presented no single SPIFFE URI SAN`);
            if (!expected.has(id)) {
              return new HboneError('IdentityMismatch', `peer ${req.peerAddress} is ${id}, expected ${[...expected].join(' or ')}`);
            }
            pooled.peerIdentity = id;
            return undefined;
          },
        });
        return tlsSocket;
      },
    });
    pooled.session = session;
    pooled.ready = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        session.destroy();
        reject(new HboneError('Timeout', `HBONE handshake with ${req.peerAddress}:${req.peerPort} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      session.once('connect', () => {
        clearTimeout(t);
        raiseSessionWindow(session);
        resolve();
      });
      session.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(t);
        reject(classify(err, req));
      });
    });
    pooled.ready.catch(() => undefined);
    session.on('error', () => undefined);
    const drop = () => {
      if (this.pool.get(key) === pooled) this.pool.delete(key);
    };
    session.on('close', drop);
    session.on('goaway', drop);
    // An idle pooled session must not keep the process alive.
    session.unref();
    return pooled;
  }

  private request(pooled: PooledSession, req: TunnelRequest): Promise<Tunnel> {
    const timeoutMs = req.timeoutMs ?? 10_000;
    return new Promise<Tunnel>((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = pooled.session.request({ ':method': 'CONNECT', ':authority': req.authority, ...(req.headers ?? {}) }, { endStream: false });
      } catch (err) {
        reject(new HboneError('Protocol', `cannot open a stream to ${req.peerAddress}: ${(err as Error).message}`));
        return;
      }
      const t = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new HboneError('Timeout', `CONNECT ${req.authority} via ${req.peerAddress} got no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      stream.once('response', (headers) => {
        clearTimeout(t);
        const status = Number(headers[':status']);
        if (status === 200) {
          resolve({ stream, peerIdentity: pooled.peerIdentity ?? '' });
          return;
        }
        const code = status === 401 || status === 403 ? 'Denied' : status === 503 || status === 504 ? 'UpstreamUnavailable' : 'Protocol';
        stream.close();
        reject(new HboneError(code, `CONNECT ${req.authority} via ${req.peerAddress}: ${status}`, status));
      });
      stream.once('error', (err) => {
        clearTimeout(t);
        reject(new HboneError('Protocol', `CONNECT ${req.authority} via ${req.peerAddress}: ${err.message}`));
      });
    });
  }

  sessions(): number {
    return this.pool.size;
  }

  close(): void {
    for (const p of this.pool.values()) p.session.close();
    this.pool.clear();
  }
}

function classify(err: NodeJS.ErrnoException, req: TunnelRequest): HboneError {
  if (err instanceof HboneError) return err;
  const where = `${req.peerAddress}:${req.peerPort}`;
  if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'ETIMEDOUT') {
    return new HboneError('ConnectFailed', `cannot reach ${where} (${err.code}): is the destination's ztunnel running? maybe a NetworkPolicy blocks port ${req.peerPort}`);
  }
  if (err.code?.startsWith('ERR_SSL') || err.code?.includes('CERT') || /certificate|handshake|ssl/i.test(err.message)) {
    return new HboneError('TlsFailed', `mTLS handshake with ${where} failed: ${err.message}`);
  }
  return new HboneError('ConnectFailed', `HBONE to ${where} failed: ${err.message}`);
}
