// The programs bench/dataplane-l4.ts and bench/dataplane-l7.ts run INSIDE pods (each pod is a
// netns of a local `ambit dev` cluster), as `node dist/bench/dataplane-l4-pod.js <command> ...`:
//
//   server  --port 8080 --size 1024
//       HTTP/1.1 server (node:http). Any request gets a body of --size bytes (Content-Length,
//       keep-alive unless the client says `Connection: close`); a request body is read and dropped.
//
//   load    --host IP --port 8080 --rate 1000 --duration 10 --warmup 2 --conns 16 --size 1024
//       Open-loop, constant-rate HTTP/1.1 load generator (the wrk2 idea): request i is
//       SCHEDULED at t0 + i/rate whatever happened to the earlier ones, goes out on the next
//       idle keep-alive connection (queued when none is idle), and its latency is measured
//       from its scheduled time to the last byte of the response. So a stall shows up as
//       latency of every request scheduled during it (no coordinated omission). Each request
//       is a POST with a --size byte body; the server answers --size bytes.
//       It also records the service time (actual write -> last byte) and the generator's own
//       lag (scheduled -> actual write). Node's timers have a 1 ms granularity, so the schedule
//       is kept by a worker thread that sleeps with Atomics.wait (sub-millisecond) and posts each
//       due request to the main thread, which owns the sockets (lag p50 ~0.1 ms instead of ~0.6).
//       stdout: a line `MEASURE_START` when the warm-up ends, `MEASURE_END` when the last
//       measured request is scheduled, then one line of JSON with the results.
//
//   cpuprof --port 9229 --out FILE          (run with node --experimental-websocket)
//       CPU profile of a Node process of the same netns whose inspector listens on
//       127.0.0.1:--port (a Node process opens it on SIGUSR1): starts V8's sampling profiler
//       over the inspector protocol, prints `PROFILING`, and on SIGTERM stops it, writes FILE
//       (.cpuprofile: Chrome DevTools, speedscope) and prints `WRITTEN`. For processes the
//       bench cannot preload cpu-profile-preload.js into (dataplane-l7.ts: the waypoint pod).
//
// Nothing here talks to anything but the --host given (a pod of the bench's own cluster), or,
// for cpuprof, the inspector on the netns's own loopback.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

function flags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`unexpected argument ${argv[i]}`);
    out[m[1]] = m[2] ?? argv[++i];
  }
  return out;
}

function num(f: Record<string, string>, k: string, def: number): number {
  const v = f[k] === undefined ? def : Number(f[k]);
  if (!Number.isFinite(v)) throw new Error(`--${k} must be a number`);
  return v;
}

// ---------------------------------------------------------------------------------------

function server(f: Record<string, string>): void {
  const port = num(f, 'port', 8080);
  const body = Buffer.alloc(num(f, 'size', 1024), 'x');
  const srv = http.createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
    });
  });
  srv.keepAliveTimeout = 120_000;
  srv.headersTimeout = 130_000;
  srv.requestTimeout = 0;
  srv.listen(port, '0.0.0.0', () => process.stdout.write(`listening on ${port}\n`));
  const stop = () => {
    srv.close();
    srv.closeAllConnections();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------------------

interface Req {
  i: number;
  sched: number;
  sent: number;
  done: number;
  ok: boolean;
}

class Conn {
  sock: net.Socket;
  buf: Buffer = Buffer.alloc(0);
  cur?: Req;
  alive = true;
  constructor(host: string, port: number, private readonly gen: LoadGen) {
    this.sock = net.connect({ host, port, noDelay: true });
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', () => undefined);
    this.sock.on('close', () => this.onClose());
  }

  send(r: Req, wire: Buffer): void {
    this.cur = r;
    r.sent = performance.now();
    this.sock.write(wire);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString('latin1');
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const total = end + 4 + (m ? Number(m[1]) : 0);
      if (this.buf.length < total) return;
      const ok = /^HTTP\/1\.[01] 200 /.test(head);
      this.buf = this.buf.subarray(total);
      const r = this.cur;
      this.cur = undefined;
      if (r) {
        r.done = performance.now();
        r.ok = ok;
        this.gen.completed(r, this);
      }
    }
  }

  private onClose(): void {
    this.alive = false;
    const r = this.cur;
    this.cur = undefined;
    if (r) {
      r.done = performance.now();
      r.ok = false;
      this.gen.failed(r);
    }
    this.gen.lost(this);
  }
}

class LoadGen {
  private readonly conns: Conn[] = [];
  private readonly idle: Conn[] = [];
  private readonly queue: Req[] = [];
  readonly reqs: Req[] = [];
  private readonly wire: Buffer;
  private outstanding = 0;
  errors = 0;
  reconnects = 0;
  private onDrained?: () => void;

  constructor(private readonly host: string, private readonly port: number, size: number) {
    const body = Buffer.alloc(size, 'y');
    this.wire = Buffer.concat([Buffer.from(`POST /bench HTTP/1.1\r\nHost: ${host}:${port}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${size}\r\n\r\n`, 'latin1'), body]);
  }

  async open(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
      const c = new Conn(this.host, this.port, this);
      c.sock.once('connect', () => {
        this.conns.push(c);
        this.idle.push(c);
        resolve();
      });
      c.sock.once('error', reject);
    })));
  }

  submit(r: Req): void {
    this.reqs.push(r);
    this.outstanding++;
    const c = this.idle.shift();
    if (c) c.send(r, this.wire);
    else this.queue.push(r);
  }

  completed(r: Req, c: Conn): void {
    if (!r.ok) this.errors++;
    this.outstanding--;
    const next = this.queue.shift();
    if (next) c.send(next, this.wire);
    else this.idle.push(c);
    if (this.outstanding === 0) this.onDrained?.();
  }

  failed(_r: Req): void {
    this.errors++;
    this.outstanding--;
    if (this.outstanding === 0) this.onDrained?.();
  }

  lost(c: Conn): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    const j = this.conns.indexOf(c);
    if (j >= 0) this.conns.splice(j, 1);
    // Replace it so the pool keeps its size; queued requests go out when it connects.
    this.reconnects++;
    const n = new Conn(this.host, this.port, this);
    n.sock.once('connect', () => {
      this.conns.push(n);
      const next = this.queue.shift();
      if (next) n.send(next, this.wire);
      else this.idle.push(n);
    });
  }

  drained(timeoutMs: number): Promise<boolean> {
    if (this.outstanding === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.onDrained = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
  }

  close(): void {
    for (const c of this.conns) c.sock.destroy();
  }
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

function summary(values: number[]): Record<string, number> {
  const s = Float64Array.from(values).sort();
  const us = (ms: number) => Math.round(ms * 1000);
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return { p50: us(pct(s, 50)), p90: us(pct(s, 90)), p99: us(pct(s, 99)), p999: us(pct(s, 99.9)), max: us(s[s.length - 1] ?? NaN), mean: us(mean) };
}

async function load(f: Record<string, string>): Promise<void> {
  const host = f.host;
  if (!host || !net.isIP(host)) throw new Error('--host IP is required');
  const port = num(f, 'port', 8080);
  const rate = num(f, 'rate', 1000);
  const duration = num(f, 'duration', 10);
  const warmup = num(f, 'warmup', 2);
  const conns = num(f, 'conns', 16);
  const size = num(f, 'size', 1024);
  const gen = new LoadGen(host, port, size);
  await gen.open(conns);
  const interval = 1000 / rate;
  const nWarm = Math.round(warmup * rate);
  const total = nWarm + Math.round(duration * rate);
  // Absolute (epoch) milliseconds: the worker's performance.now() has another origin.
  const t0Abs = performance.timeOrigin + performance.now() + 50;
  const t0 = t0Abs - performance.timeOrigin;
  let endMark = 0;
  await new Promise<void>((resolve, reject) => {
    const ticker = new Worker(__filename, { workerData: { ticker: true, t0Abs, interval, total } });
    ticker.on('error', reject);
    ticker.on('message', (upTo: number) => {
      // Every request due by now (the worker sends the highest due index).
      for (let i = gen.reqs.length; i <= upTo && i < total; i++) {
        if (i === nWarm) process.stdout.write('MEASURE_START\n');
        gen.submit({ i, sched: t0 + i * interval, sent: 0, done: 0, ok: false });
      }
      if (gen.reqs.length >= total && endMark === 0) {
        endMark = performance.now();
        process.stdout.write('MEASURE_END\n');
        resolve();
      }
    });
  });
  const drained = await gen.drained(5000);
  gen.close();
  const measured = gen.reqs.filter((r) => r.i >= nWarm);
  const done = measured.filter((r) => r.done > 0 && r.ok);
  const span = (endMark - (t0 + nWarm * interval)) / 1000;
  const result = {
    host, port, rate, durationS: duration, warmupS: warmup, conns, bodyBytes: size,
    scheduled: measured.length,
    completed: done.length,
    errors: measured.filter((r) => r.done > 0 && !r.ok).length,
    incomplete: measured.filter((r) => r.done === 0).length,
    drained,
    reconnects: gen.reconnects,
    achievedRate: Math.round(done.length / span),
    // Microseconds.
    latencyUs: summary(done.map((r) => r.done - r.sched)),
    serviceUs: summary(done.map((r) => r.done - r.sent)),
    lagUs: summary(done.map((r) => r.sent - r.sched)),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** The schedule keeper (a worker thread): posts the index of each request as it falls due. */
function ticker(d: { t0Abs: number; interval: number; total: number }): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const now = () => performance.timeOrigin + performance.now();
  for (let i = 0; i < d.total; ) {
    const wait = d.t0Abs + i * d.interval - now();
    if (wait > 0.02) Atomics.wait(cell, 0, 0, wait);
    // Everything due by now, in one message.
    const due = Math.min(d.total - 1, Math.floor((now() - d.t0Abs) / d.interval));
    if (due >= i) {
      parentPort!.postMessage(due);
      i = due + 1;
    }
  }
}

// ---------------------------------------------------------------------------------------

async function cpuprof(f: Record<string, string>): Promise<void> {
  const port = num(f, 'port', 9229);
  const out = f.out;
  if (!out) throw new Error('--out FILE is required');
  // The inspector opens a moment after SIGUSR1.
  let url: string | undefined;
  for (const end = Date.now() + 15_000; !url; ) {
    try {
      const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl?: string }>;
      url = list[0]?.webSocketDebuggerUrl;
    } catch {
      // not listening yet
    }
    if (!url) {
      if (Date.now() > end) throw new Error(`no inspector on 127.0.0.1:${port} (send the process SIGUSR1 first)`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  if (typeof WebSocket === 'undefined') throw new Error('no WebSocket: run node with --experimental-websocket');
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  let id = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.onmessage = (ev: MessageEvent) => {
    const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (!p) return;
    pending.delete(m.id!);
    if (m.error) p.reject(new Error(m.error.message));
    else p.resolve(m.result);
  };
  const call = (method: string, params?: unknown) => new Promise<unknown>((resolve, reject) => {
    const n = ++id;
    pending.set(n, { resolve, reject });
    ws.send(JSON.stringify({ id: n, method, params }));
  });
  const stop = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await call('Profiler.enable');
  await call('Profiler.start');
  process.stdout.write('PROFILING\n');
  await stop;
  const r = (await call('Profiler.stop')) as { profile: unknown };
  fs.writeFileSync(`${out}.tmp`, JSON.stringify(r.profile));
  fs.renameSync(`${out}.tmp`, out);
  process.stdout.write('WRITTEN\n');
  ws.close();
}

async function main(): Promise<void> {
  if (!isMainThread) return ticker(workerData as { t0Abs: number; interval: number; total: number });
  const [cmd, ...rest] = process.argv.slice(2);
  const f = flags(rest);
  if (cmd === 'server') return server(f);
  if (cmd === 'load') {
    await load(f);
    process.exit(0);
  }
  if (cmd === 'cpuprof') {
    await cpuprof(f);
    process.exit(0);
  }
  throw new Error('usage: dataplane-l4-pod.js server|load|cpuprof [--flags]');
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
