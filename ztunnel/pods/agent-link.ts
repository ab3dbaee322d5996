import net from 'node:net';
import readline from 'node:readline';
import type { AgentMessage, ZtunnelAck } from '../../lib/api/node-protocol';
import type { Logger } from '../../lib/telemetry/log';

/**
 * The ztunnel's end of the agent socket: connect, take the snapshot and every add/del,
 * ack each one, reconnect with backoff when the agent goes away (pods keep being served).
 */
export class AgentLink {
  private socket?: net.Socket;
  private stopped = false;
  private attempt = 0;
  private timer?: NodeJS.Timeout;
  connected = false;

  constructor(
    private readonly path: string,
    private readonly handle: (m: AgentMessage) => Promise<void>,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private connect(): void {
    const s = net.createConnection(this.path);
    this.socket = s;
    s.on('connect', () => {
      this.attempt = 0;
      this.connected = true;
      this.log.info({ socket: this.path }, 'connected to the node agent');
    });
    let chain = Promise.resolve();
    readline.createInterface({ input: s }).on('error', () => undefined).on('line', (line) => {
      let msg: AgentMessage;
      try {
        msg = JSON.parse(line) as AgentMessage;
      } catch {
        this.log.warn({ line: line.slice(0, 200) }, 'agent sent a line that is not JSON; ignored');
        return;
      }
      chain = chain.then(async () => {
        const ack: ZtunnelAck = { type: 'ack', id: msg.id };
        try {
          await this.handle(msg);
        } catch (err) {
          ack.error = (err as Error).message;
          this.log.warn({ type: msg.type, err: ack.error }, 'could not take a pod from the agent');
        }
        if (!s.destroyed) s.write(`${JSON.stringify(ack)}\n`);
      });
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (this.attempt === 0 || this.attempt % 10 === 0) this.log.warn({ socket: this.path, err: err.code ?? err.message }, 'node agent not reachable; retrying (pods already enrolled keep working)');
    });
    s.on('close', () => {
      this.connected = false;
      if (this.stopped) return;
      const delay = Math.min(5000, 100 * 2 ** this.attempt++);
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.destroy();
  }
}
