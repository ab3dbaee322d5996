import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Logger } from '../../lib/telemetry/log';
import type { ProxyState } from '../state/state';
import { isMeshDomain, resolveMeshName } from './resolver';

export interface DnsOptions {
  state: ProxyState;
  /** Upstream resolver "ip:port" for names outside the mesh; none means NXDOMAIN. */
  upstream?: string;
  log: Logger;
  ttl?: number;
}

type Question = dnsPacket.Question;

/** Answers one query; forwards names outside the mesh when an upstream is configured. */
export class DnsProxy {
  constructor(private readonly o: DnsOptions) {}

  async answer(query: Buffer, namespace: string): Promise<Buffer | undefined> {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(query);
    } catch {
      return undefined;
    }
    const question = q.questions?.[0] as Question | undefined;
    if (!question) return this.reply(q, 'FORMERR', []);
    const found = resolveMeshName(this.o.state.snapshot, question.name, namespace);
    if (found) {
      const want = question.type === 'A' ? 4 : question.type === 'AAAA' ? 6 : 0;
      const answers = found.addresses
        .filter((a) => net.isIP(a) === want)
        .map((a) => ({ type: question.type as 'A' | 'AAAA', name: question.name, ttl: this.o.ttl ?? 30, class: 'IN' as const, data: a }));
      return this.reply(q, 'NOERROR', answers);
    }
    if (isMeshDomain(question.name) || !this.o.upstream) return this.reply(q, 'NXDOMAIN', []);
    return this.forward(query).catch((err: Error) => {
      this.o.log.debug({ name: question.name, err: err.message }, 'dns: upstream failed');
      return this.reply(q, 'SERVFAIL', []);
    });
  }

  private reply(q: dnsPacket.DecodedPacket, rcode: string, answers: dnsPacket.Answer[]): Buffer {
    return dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.AUTHORITATIVE_ANSWER,
      rcode,
      questions: q.questions,
      answers,
    } as dnsPacket.Packet);
  }

  private forward(query: Buffer): Promise<Buffer> {
    const [host, port] = splitHostPort(this.o.upstream!);
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
      const t = setTimeout(() => {
        sock.close();
        reject(new Error('upstream timeout'));
      }, 3000);
      sock.once('message', (msg) => {
        clearTimeout(t);
        sock.close();
        resolve(msg);
      });
      sock.once('error', (err) => {
        clearTimeout(t);
        sock.close();
        reject(err);
      });
      sock.send(query, Number(port), host);
    });
  }

  /** Serves UDP and TCP (2-byte length framing) on sockets opened inside the pod. */
  serve(udp: dgram.Socket, tcp: net.Server, namespace: string): void {
    udp.on('message', (msg, rinfo) => {
      void this.answer(msg, namespace).then((r) => {
        if (r) udp.send(r, rinfo.port, rinfo.address);
      });
    });
    udp.on('error', (err) => this.o.log.warn({ err: err.message }, 'dns: udp error'));
    tcp.on('connection', (c) => {
      c.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      c.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 65537) return c.destroy();
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const len = buf.readUInt16BE(0);
          const msg = buf.subarray(2, 2 + len);
          buf = buf.subarray(2 + len);
          void this.answer(Buffer.from(msg), namespace).then((r) => {
            if (!r || c.destroyed) return;
            const out = Buffer.alloc(2 + r.length);
            out.writeUInt16BE(r.length, 0);
            r.copy(out, 2);
            c.write(out);
          });
        }
      });
    });
  }
}

function splitHostPort(s: string): [string, string] {
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(s);
  if (!m) throw new Error(`bad DNS upstream "${s}"`);
  return [m[1], m[2] ?? '53'];
}
