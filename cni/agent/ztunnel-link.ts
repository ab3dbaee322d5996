import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import type { AgentMessage, PodInfo, ZtunnelAck } from '../../lib/api/node-protocol';
import type { Logger } from '../../lib/telemetry/log';

type Pending = { resolve: (error?: string) => void; timer: NodeJS.Timeout };
type Body = { type: 'snapshot'; pods: PodInfo[] } | { type: 'add'; pod: PodInfo } | { type: 'del'; uid: string };

/**
 * The agent's side of the ztunnel socket. One ztunnel at a time (a restarted one
 * replaces the old connection); every (re)connect gets the full snapshot first.
 */
export class ZtunnelLink {
  private server?: net.Server;
  private conn?: net.Socket;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();

  constructor(private readonly path: string, private readonly snapshot: () => PodInfo[], private readonly log: Logger) {}

  async start(): Promise<void> {
    try {
      fs.unlinkSync(this.path);
    } catch {
      // not there
    }
    this.server = net.createServer((c) => this.accept(c));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.path, () => resolve());
    });
    fs.chmodSync(this.path, 0o600);
  }

  get connected(): boolean {
    return !!this.conn && !this.conn.destroyed;
  }

  private accept(c: net.Socket): void {
    this.conn?.destroy();
    this.conn = c;
    this.log.info('ztunnel connected; sending the pod snapshot');
    c.on('error', () => undefined);
    c.on('close', () => {
      if (this.conn === c) this.conn = undefined;
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.resolve('ztunnel disconnected');
        this.pending.delete(id);
      }
    });
    readline.createInterface({ input: c }).on('error', () => undefined).on('line', (line) => {
      let ack: ZtunnelAck;
      try {
        ack = JSON.parse(line) as ZtunnelAck;
      } catch {
        return;
      }
      const p = this.pending.get(ack.id);
      if (!p) return;
      clearTimeout(p.timer);
      this.pending.delete(ack.id);
      p.resolve(ack.error);
    });
    void this.send({ type: 'snapshot', pods: this.snapshot() }).then((err) => {
      if (err) this.log.warn({ err }, 'ztunnel could not take every pod of the snapshot');
    });
  }

  /** Sends one message; resolves with the ztunnel's error text, or undefined when it acked cleanly. */
  send(body: Body, timeoutMs = 15_000): Promise<string | undefined> {
    const c = this.conn;
    if (!c || c.destroyed) return Promise.resolve('ztunnel is not connected to the agent');
    const id = ++this.seq;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve(`ztunnel did not answer in ${timeoutMs} ms`);
      }, timeoutMs);
      this.pending.set(id, { resolve, timer });
      c.write(`${JSON.stringify({ ...body, id } as AgentMessage)}\n`);
    });
  }

  async stop(): Promise<void> {
    this.conn?.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
