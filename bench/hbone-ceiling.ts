// Where the one-flow throughput ceiling is with Node's own TCP, TLS and HTTP/2 on this machine.
// One TCP flow of --mib MiB goes from a source process through two proxy processes to a sink
// process (4 separate children on 127.0.0.1, sharing the machine's cores as the real ztunnels
// do), so the CPU of each one is its own (/proc/<pid>/stat utime+stime). Scenarios:
//
//   direct    source -> sink (no proxy: the baseline)
//   tcp-pipe  source -> proxy A -(plain TCP)-> proxy B -> sink, socket.pipe both ways
//   tls-pipe  the same, A and B talking TLS 1.3 with mutual SPIFFE certificates (no HTTP/2)
//   hbone     A = Ambit's HboneClient + splice (as ztunnel/proxy/outbound.ts), B = createHboneServer
//             + splice (as ztunnel/proxy/inbound.ts): HTTP/2 CONNECT over mTLS 1.3, minus the
//             netns, the iptables redirect and the policy lookup
//   --ciphers adds tls-pipe once per TLS 1.3 cipher suite
//
// Runs alternate (ABCD, DCBA, ...) and each figure is the median over --repeats runs. The
// certificates (a throwaway CA and SVIDs spiffe://cluster.local/ns/bench/sa/{a,b}) come from the
// control plane's own CertificateAuthority. Also reported: the cipher's own cost (one core, in
// process) and whether the kernel offers kernel TLS (the "tls" TCP ULP).
//
//   npm run build && node dist/bench/hbone-ceiling.js [--mib 2048] [--repeats 3] [--ciphers] [--help]
//
// The children are this same file run with `--role ...` (internal).
import { ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import type http2 from 'node:http2';
import * as C from './common';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TRUST_DOMAIN = 'cluster.local';
const ID_A = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/a`;
const ID_B = `spiffe://${TRUST_DOMAIN}/ns/bench/sa/b`;
const SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'] as const;
const SUITE_SHORT: Record<string, string> = { TLS_AES_128_GCM_SHA256: 'aes128gcm', TLS_AES_256_GCM_SHA384: 'aes256gcm', TLS_CHACHA20_POLY1305_SHA256: 'chacha20' };

// =======================================================================================
// Children: `node hbone-ceiling.js --role <sink|source|proxy> --key value ...`. Each prints
// JSON lines on stdout ({"event":"ready","port":N} first) and exits when its stdin closes
// (so a dead parent leaves nothing behind), or on SIGTERM/SIGKILL by PID from the parent.

function emit(event: string, data: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
}

function childArgs(): Record<string, string> {
  const out: Record<string, string> = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  return out;
}

function listening(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

async function child(): Promise<void> {
  const a = childArgs();
  process.stdin.on('data', () => undefined);
  process.stdin.on('end', () => process.exit(0));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`${a.role}${a.side ? ` ${a.side}` : ''}: ${err.stack ?? err.message}\n`);
    process.exit(1);
  });
  if (a.role === 'sink') return sink();
  if (a.role === 'source') return source(Number(a.target), Number(a.mib), Number(a['chunk-kib']));
  if (a.role === 'proxy') return proxy(a);
  throw new Error(`unknown role ${a.role}`);
}

/** Counts bytes; reports first byte -> end of stream. */
async function sink(): Promise<void> {
  const server = net.createServer({ noDelay: true }, (s) => {
    let bytes = 0;
    let first = 0n;
    s.on('data', (b: Buffer) => {
      if (bytes === 0) first = process.hrtime.bigint();
      bytes += b.length;
    });
    s.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - first) / 1e9;
      emit('done', { bytes, seconds });
      s.end();
    });
    s.on('error', (err) => emit('error', { message: `sink: ${err.message}` }));
  });
  emit('ready', { port: await listening(server) });
}

/** Waits for "go" on stdin, then writes `mib` MiB in one connection (respecting backpressure) and ends it. */
async function source(target: number, mib: number, chunkKib: number): Promise<void> {
  const chunk = crypto.randomBytes(chunkKib * 1024);
  emit('ready', {});
  await once(process.stdin, 'data');
  const sock = net.connect({ host: '127.0.0.1', port: target });
  sock.setNoDelay(true);
  sock.on('data', () => undefined);
  await once(sock, 'connect');
  const t0 = process.hrtime.bigint();
  const total = mib * MiB;
  let sent = 0;
  while (sent < total) {
    const n = Math.min(chunk.length, total - sent);
    const ok = sock.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    sent += n;
    if (!ok) await once(sock, 'drain');
  }
  sock.end();
  await once(sock, 'finish');
  emit('sent', { bytes: sent, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
}

function readCerts(dir: string, who: 'a' | 'b'): { cert: string; key: string; ca: string } {
  return {
    cert: fs.readFileSync(path.join(dir, `${who}-cert.pem`), 'utf8'),
    key: fs.readFileSync(path.join(dir, `${who}-key.pem`), 'utf8'),
    ca: fs.readFileSync(path.join(dir, 'root-cert.pem'), 'utf8'),
  };
}

function tlsFacts(s: tls.TLSSocket): Record<string, unknown> {
  return { protocol: s.getProtocol(), cipher: s.getCipher()?.standardName ?? s.getCipher()?.name, alpn: s.alpnProtocol || null };
}

/** Plain socket.pipe both ways; an error on either side destroys both. */
function pipeBoth(x: net.Socket, y: net.Socket): void {
  x.pipe(y);
  y.pipe(x);
  const kill = () => {
    x.destroy();
    y.destroy();
  };
  x.on('error', kill);
  y.on('error', kill);
}

async function proxy(a: Record<string, string>): Promise<void> {
  const kind = a.kind;
  const side = a.side as 'a' | 'b';
  const target = Number(a.target);
  const cipher = a.cipher || undefined;
  if (kind === 'hbone') return side === 'a' ? hboneA(a, target) : hboneB(a);
  let server: net.Server;
  if (kind === 'tcp') {
    // Like the ztunnel's listeners: half-open allowed, Nagle off on every socket.
    server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
      const u = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
      u.setNoDelay(true);
      pipeBoth(c, u);
    });
  } else if (kind === 'tls' && side === 'a') {
    const { spiffeIdOfCert } = await import('../lib/identity/peer');
    const m = readCerts(a.certs, 'a');
    const secureContext = tls.createSecureContext({ cert: m.cert, key: m.key, ca: m.ca, minVersion: 'TLSv1.3', ...(cipher ? { ciphers: cipher } : {}) });
    server = net.createServer({ allowHalfOpen: true, noDelay: true }, (c) => {
      const u = tls.connect({
        host: '127.0.0.1',
        port: target,
        secureContext,
        minVersion: 'TLSv1.3',
        allowHalfOpen: true,
        // The chain is verified against the bench root; the identity is the URI SAN, as in HBONE.
        checkServerIdentity: (_host, cert) => (spiffeIdOfCert(cert.raw) === ID_B ? undefined : new Error(`server is not ${ID_B}`)),
      } as tls.ConnectionOptions);
      u.setNoDelay(true);
      u.once('secureConnect', () => emit('tls', { ...tlsFacts(u), peerIdentity: spiffeIdOfCert(u.getPeerCertificate().raw) }));
      pipeBoth(c, u);
    });
  } else if (kind === 'tls' && side === 'b') {
    const { spiffeIdOfCert } = await import('../lib/identity/peer');
    const m = readCerts(a.certs, 'b');
    server = tls.createServer(
      { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3', allowHalfOpen: true, ...(cipher ? { ciphers: cipher } : {}) },
      (s) => {
        const peer = spiffeIdOfCert(s.getPeerCertificate().raw);
        emit('tls', { ...tlsFacts(s), peerIdentity: peer });
        if (peer !== ID_A) {
          s.destroy();
          return;
        }
        s.setNoDelay(true);
        const u = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
        u.setNoDelay(true);
        pipeBoth(s, u);
      },
    );
    server.on('tlsClientError', (err) => emit('error', { message: `tls-pipe B: ${err.message}` }));
  } else {
    throw new Error(`unknown proxy ${kind}/${side}`);
  }
  emit('ready', { port: await listening(server) });
}

/** What the ztunnel's metrics and access log need; the log goes to a file, as a ztunnel's stdout does. */
async function telemetry(logFile: string) {
  const pino = (await import('pino')).default;
  const { ZtunnelMetrics } = await import('../ztunnel/telemetry/metrics');
  const log = pino({ level: 'info', base: { component: 'ztunnel' }, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: logFile, sync: true }));
  return { metrics: new ZtunnelMetrics(), log };
}

/** Outbound side: the steps of Outbound.handle for a captured connection routed over HBONE. */
async function hboneA(a: Record<string, string>, target: number): Promise<void> {
  const { HboneClient } = await import('../lib/hbone/client');
  const { H_BAGGAGE, H_FORWARDED } = await import('../lib/hbone/settings');
  const { splice, abort } = await import('../ztunnel/proxy/splice');
  const { ConnectionRecord } = await import('../ztunnel/telemetry/connection');
  const { metrics, log } = await telemetry(a.log);
  const m = readCerts(a.certs, 'a');
  // One secure context per certificate, as the SecretManager builds it.
  const context = tls.createSecureContext({ cert: m.cert, key: m.key, ca: m.ca, minVersion: 'TLSv1.3' });
  const hbone = new HboneClient();
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false, noDelay: true }, (client) => {
    client.setNoDelay(true);
    client.on('error', () => undefined);
    const rec = new ConnectionRecord(
      { reporter: 'source', sourcePrincipal: ID_A, sourceAddress: `${client.remoteAddress}:${client.remotePort}`, destinationPrincipal: ID_B, destinationAddress: a.authority, mtls: true },
      metrics,
      log,
    );
    rec.open();
    client.pause();
    hbone
      .open({
        sourceId: ID_A,
        sourceContext: context,
        peerAddress: '127.0.0.1',
        peerPort: target,
        expectedIdentities: [ID_B],
        authority: a.authority,
        headers: { [H_FORWARDED]: `for=${client.remoteAddress}`, [H_BAGGAGE]: 'k8s.namespace.name=bench,k8s.pod.name=source' },
        dial: (host, port) => net.connect({ host, port, allowHalfOpen: true }),
      })
      .then((t) => {
        const sock = (t.stream.session as http2.ClientHttp2Session).socket as tls.TLSSocket;
        emit('tls', { ...tlsFacts(sock), peerIdentity: t.peerIdentity });
        if (client.destroyed) {
          abort(t.stream);
          rec.close('DC');
          return;
        }
        splice(client, t.stream, rec);
        client.resume();
      })
      .catch((err: Error) => {
        emit('error', { message: `hbone A: ${err.message}` });
        rec.close('UF', err.message);
        abort(client);
      });
  });
  emit('ready', { port: await listening(server) });
}

/** Inbound side: createHboneServer, then the steps of Inbound.tunnel (identity check, connect, 200, splice). */
async function hboneB(a: Record<string, string>): Promise<void> {
  const { createHboneServer } = await import('../lib/hbone/server');
  const { splice, abort } = await import('../ztunnel/proxy/splice');
  const { ConnectionRecord } = await import('../ztunnel/telemetry/connection');
  const { metrics, log } = await telemetry(a.log);
  const m = readCerts(a.certs, 'b');
  const server = createHboneServer({
    certChainPem: m.cert,
    keyPem: m.key,
    rootPem: m.ca,
    onTunnel: (ctx, stream) => {
      const sock = stream.session?.socket as tls.TLSSocket;
      emit('tls', { ...tlsFacts(sock), peerIdentity: ctx.peerIdentity });
      const rec = new ConnectionRecord(
        { reporter: 'destination', sourcePrincipal: ctx.peerIdentity, sourceAddress: `${ctx.remoteAddress}:${ctx.remotePort}`, destinationPrincipal: ID_B, destinationAddress: ctx.authority, mtls: true },
        metrics,
        log,
      );
      const t = /^\[?([0-9a-fA-F:.]+)\]?:(\d{1,5})$/.exec(ctx.authority);
      if (ctx.peerIdentity !== ID_A || !t) {
        stream.respond({ ':status': ctx.peerIdentity !== ID_A ? 401 : 400 }, { endStream: true });
        rec.close('RBAC');
        return;
      }
      const upstream = net.connect({ host: t[1], port: Number(t[2]), allowHalfOpen: true });
      upstream.setNoDelay(true);
      upstream.once('connect', () => {
        if (stream.destroyed) {
          abort(upstream);
          rec.close('DC');
          return;
        }
        rec.open();
        stream.respond({ ':status': 200 });
        splice(stream, upstream, rec);
      });
      upstream.once('error', (err) => {
        if (upstream.connecting && !stream.headersSent) stream.respond({ ':status': 503 }, { endStream: true });
        rec.close('UF', err.message);
      });
    },
  });
  emit('ready', { port: await listening(server as unknown as net.Server) });
}

// =======================================================================================
// The parent: certificates, children, /proc accounting, alternation, report.

interface Scenario {
  name: string;
  kind: 'direct' | 'tcp' | 'tls' | 'hbone';
  cipher?: string;
  what: string;
}

interface Run {
  scenario: string;
  repeat: number;
  bytes: number;
  /** Sink: first byte -> end of stream. */
  seconds: number;
  mbPerS: number;
  /** Parent: "go" to the sink's report; the CPU window. */
  windowSeconds: number;
  cpuSeconds: Record<string, number>;
  cpuSPerGiB: Record<string, number>;
  cores: Record<string, number>;
  otherProcessesCores: number;
  stealCores: number;
  startedQuiet: boolean;
  tls?: { a?: Record<string, unknown>; b?: Record<string, unknown> };
  error?: string;
}

function parent(): void {
  const USAGE = `hbone-ceiling: one TCP flow through two Node proxies on 127.0.0.1: direct, plain TCP pipe,
TLS 1.3 pipe (mutual certificates) and Ambit's HBONE (HTTP/2 CONNECT over mTLS 1.3), each in
4 child processes (source, proxy A, proxy B, sink) whose CPU is read from /proc/<pid>/stat.

  node dist/bench/hbone-ceiling.js [flags]

  --scenarios  comma-separated subset of direct,tcp-pipe,tls-pipe,hbone (default: all)
  --ciphers    also run tls-pipe once per TLS 1.3 cipher suite
  --cipher-probe-mib  MiB encrypted in process per AEAD to show the cipher's own cost (0 = skip)`;
  const F = C.parseFlags(
    {
      mib: 2048,
      repeats: 3,
      ciphers: false,
      scenarios: 'direct,tcp-pipe,tls-pipe,hbone',
      /**
       * Size of the source's write() calls. 64 KiB is what a Node proxy reads (and so writes) at
       * most per call, so every scenario writes at the same size; larger writes raise only direct.
       */
      chunkKib: 64,
      cipherProbeMib: 1024,
      /** Before each run, wait up to this many seconds for other processes to leave the CPUs alone (0 = don't). */
      waitIdle: 30,
      idleThreshold: 0.1,
      /** A run during which other processes used more than --idle-threshold cores is measured again, at most this many times. */
      retries: 1,
      /** Seconds one run may take before its children are killed and it counts as failed. */
      runTimeout: 180,
      /** Seconds; the whole bench gives up (and kills its children, removes its temp dir) after this. */
      timeout: 1200,
      json: '',
    },
    USAGE,
  );
  const log = (line: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${line}\n`);

  const ALL: Scenario[] = [
    { name: 'direct', kind: 'direct', what: 'source -> sink' },
    { name: 'tcp-pipe', kind: 'tcp', what: 'source -> A -(TCP)-> B -> sink, socket.pipe' },
    { name: 'tls-pipe', kind: 'tls', what: 'A -(TLS 1.3, mutual certs, default suites)-> B, socket.pipe' },
    { name: 'hbone', kind: 'hbone', what: 'A HboneClient + splice -(HTTP/2 CONNECT, mTLS 1.3)-> B createHboneServer + splice' },
  ];
  const wanted = new Set(F.scenarios.split(',').map((s) => s.trim()).filter(Boolean));
  for (const w of wanted) if (!ALL.some((s) => s.name === w)) throw new Error(`--scenarios: unknown "${w}" (direct,tcp-pipe,tls-pipe,hbone)`);
  const scenarios = ALL.filter((s) => wanted.has(s.name));
  if (F.ciphers) for (const c of SUITES) scenarios.push({ name: `tls-pipe/${SUITE_SHORT[c]}`, kind: 'tls', cipher: c, what: `tls-pipe with only ${c}` });
  if (scenarios.length === 0) throw new Error('no scenario selected');

  // ---- children, killed by PID
  const live = new Map<number, ChildProcess>();
  const killAll = () => {
    for (const [pid] of live) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };

  interface Kid {
    label: string;
    pid: number;
    proc: ChildProcess;
    events: Array<Record<string, unknown>>;
    wait(event: string, ms: number): Promise<Record<string, unknown>>;
    stderr(): string;
  }

  function spawnKid(label: string, args: string[]): Kid {
    const proc = spawn(process.execPath, [__filename, '--role', ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: C.REPO });
    if (proc.pid === undefined) throw new Error(`could not spawn ${label}`);
    const pid = proc.pid;
    live.set(pid, proc);
    const events: Array<Record<string, unknown>> = [];
    const waiters: Array<() => void> = [];
    let err = '';
    let exit: string | undefined;
    let partial = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      partial += d;
      let i: number;
      while ((i = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, i);
        partial = partial.slice(i + 1);
        try {
          events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          err += `(stdout) ${line}\n`;
        }
        for (const w of waiters.splice(0)) w();
      }
    });
    proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-8192)));
    proc.on('exit', (code, signal) => {
      exit = `exited (${signal ?? code})`;
      live.delete(pid);
      for (const w of waiters.splice(0)) w();
    });
    proc.stdin!.on('error', () => undefined);
    return {
      label, pid, proc, events,
      stderr: () => err.trim(),
      wait(event: string, ms: number) {
        return new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`${label}: no "${event}" within ${ms / 1000} s${err ? `; stderr: ${err.trim()}` : ''}`)), ms);
          const check = () => {
            const hit = events.find((e) => e.event === event);
            const bad = events.find((e) => e.event === 'error');
            if (hit) {
              clearTimeout(t);
              resolve(hit);
            } else if (bad) {
              clearTimeout(t);
              reject(new Error(`${label}: ${String(bad.message)}`));
            } else if (exit) {
              clearTimeout(t);
              reject(new Error(`${label} ${exit} before "${event}"${err ? `: ${err.trim()}` : ''}`));
            } else {
              waiters.push(check);
            }
          };
          check();
        });
      },
    };
  }

  async function stopKid(k: Kid): Promise<void> {
    if (!live.has(k.pid)) return;
    const exited = once(k.proc, 'exit');
    try {
      process.kill(k.pid, 'SIGTERM');
    } catch {
      return;
    }
    const t = setTimeout(() => {
      try {
        process.kill(k.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, 3000);
    await exited;
    clearTimeout(t);
  }

  // ---- one run of one scenario
  async function runOnce(s: Scenario, repeat: number, dir: string): Promise<Run> {
    const kids: Kid[] = [];
    const startMs = 20_000;
    try {
      const sink = spawnKid('sink', ['sink']);
      kids.push(sink);
      const sinkPort = Number((await sink.wait('ready', startMs)).port);
      let target = sinkPort;
      let A: Kid | undefined;
      let B: Kid | undefined;
      if (s.kind !== 'direct') {
        const common = ['--kind', s.kind, '--certs', dir, ...(s.cipher ? ['--cipher', s.cipher] : [])];
        B = spawnKid('proxy B', ['proxy', '--side', 'b', '--target', String(target), '--log', path.join(dir, `${s.kind}-b.log`), ...common]);
        kids.push(B);
        target = Number((await B.wait('ready', startMs)).port);
        A = spawnKid('proxy A', ['proxy', '--side', 'a', '--target', String(target), '--authority', `127.0.0.1:${sinkPort}`, '--log', path.join(dir, `${s.kind}-a.log`), ...common]);
        kids.push(A);
        target = Number((await A.wait('ready', startMs)).port);
      }
      const src = spawnKid('source', ['source', '--target', String(target), '--mib', String(F.mib), '--chunk-kib', String(F.chunkKib)]);
      kids.push(src);
      await src.wait('ready', startMs);

      const roles: Array<[string, Kid]> = [['source', src], ...(A ? [['proxyA', A] as [string, Kid]] : []), ...(B ? [['proxyB', B] as [string, Kid]] : []), ['sink', sink]];
      const pids = roles.map(([, k]) => k.pid);
      const startedQuiet = await C.waitForIdle(F.waitIdle, pids, `${s.name} #${repeat}`, F.idleThreshold);
      const cpu0 = roles.map(([, k]) => C.procSample(k.pid).cpuSeconds);
      const watch = new C.Interference(pids).start();
      const t0 = process.hrtime.bigint();
      src.proc.stdin!.write('go\n');
      const done = await sink.wait('done', F.runTimeout * 1000);
      const windowSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu1 = roles.map(([, k]) => C.procSample(k.pid).cpuSeconds);
      const { otherCores, stealCores } = watch.stop();
      const bytes = Number(done.bytes);
      if (bytes !== F.mib * MiB) throw new Error(`the sink received ${bytes} bytes, expected ${F.mib * MiB}`);
      const seconds = Number(done.seconds);
      const cpuSeconds: Record<string, number> = {};
      const cpuSPerGiB: Record<string, number> = {};
      const cores: Record<string, number> = {};
      roles.forEach(([role], i) => {
        const d = cpu1[i] - cpu0[i];
        cpuSeconds[role] = C.round(d, 2);
        cpuSPerGiB[role] = C.round(d / (bytes / GiB), 2);
        cores[role] = C.round(d / windowSeconds, 2);
      });
      const all = roles.reduce((n, _r, i) => n + cpu1[i] - cpu0[i], 0);
      cores.total = C.round(all / windowSeconds, 2);
      cpuSPerGiB.total = C.round(all / (bytes / GiB), 2);
      const run: Run = {
        scenario: s.name, repeat, bytes, seconds: C.round(seconds, 3), mbPerS: C.round(bytes / seconds / 1e6, 0), windowSeconds: C.round(windowSeconds, 3),
        cpuSeconds, cpuSPerGiB, cores, otherProcessesCores: otherCores, stealCores, startedQuiet,
      };
      if (A && B) run.tls = { a: A.events.find((e) => e.event === 'tls'), b: B.events.find((e) => e.event === 'tls') };
      if (run.tls) for (const side of [run.tls.a, run.tls.b]) if (side) delete side.event;
      return run;
    } finally {
      await Promise.all(kids.map(stopKid));
    }
  }

  // ---- certificates from the control plane's own CA
  async function certificates(dir: string): Promise<void> {
    const { CertificateAuthority } = await import('../controlplane/ca/ca');
    const { createCsr, generateKeyPair, privateKeyToPem } = await import('../lib/identity/pki');
    const ca = await CertificateAuthority.load({ dataDir: dir, trustDomain: TRUST_DOMAIN });
    fs.writeFileSync(path.join(dir, 'root-cert.pem'), ca.rootPem);
    for (const [who, id] of [['a', ID_A], ['b', ID_B]] as const) {
      const keys = await generateKeyPair();
      const issued = await ca.signCsr(await createCsr(keys, id), id, 24 * 3600 * 1000);
      fs.writeFileSync(path.join(dir, `${who}-cert.pem`), issued.certChainPem);
      fs.writeFileSync(path.join(dir, `${who}-key.pem`), await privateKeyToPem(keys.privateKey), { mode: 0o600 });
    }
  }

  /**
   * The AEAD's own cost on one core in this process (Node's OpenSSL): one update() per 16 KiB,
   * the size of a full TLS record. (Larger updates allocate large output buffers and page-fault.)
   */
  function cipherProbe(mib: number): Array<{ aead: string; suite: string; mbPerS: number; cpuSPerGiB: number }> {
    const out: Array<{ aead: string; suite: string; mbPerS: number; cpuSPerGiB: number }> = [];
    const record = crypto.randomBytes(16 * 1024);
    const records = (mib * MiB) / record.length;
    const pairs: Array<[string, string, number]> = [['aes-128-gcm', 'TLS_AES_128_GCM_SHA256', 16], ['aes-256-gcm', 'TLS_AES_256_GCM_SHA384', 32], ['chacha20-poly1305', 'TLS_CHACHA20_POLY1305_SHA256', 32]];
    for (const [aead, suite, keyLen] of pairs) {
      const key = crypto.randomBytes(keyLen);
      const iv = crypto.randomBytes(12);
      const warm = crypto.createCipheriv(aead as crypto.CipherGCMTypes, key, iv, { authTagLength: 16 });
      for (let i = 0; i < records / 8; i++) warm.update(record);
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const c = crypto.createCipheriv(aead as crypto.CipherGCMTypes, key, iv, { authTagLength: 16 });
      for (let i = 0; i < records; i++) c.update(record);
      c.final();
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const cu = process.cpuUsage(c0);
      const cpu = (cu.user + cu.system) / 1e6;
      out.push({ aead, suite, mbPerS: C.round((mib * MiB) / wall / 1e6, 0), cpuSPerGiB: C.round(cpu / ((mib * MiB) / GiB), 2) });
    }
    return out;
  }

  function kernelTls(): { tcpAvailableUlp: string[]; ktlsAvailable: boolean; modulesDir: boolean; note: string } {
    let ulps: string[] = [];
    try {
      ulps = fs.readFileSync('/proc/sys/net/ipv4/tcp_available_ulp', 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      // not Linux, or no such file
    }
    const modulesDir = fs.existsSync(`/lib/modules/${os.release()}`);
    const ktls = ulps.includes('tls');
    const note = ktls
      ? 'the "tls" ULP is registered: the kernel can do TLS record encryption (Node would still need native code to hand it the keys)'
      : `no "tls" ULP (only: ${ulps.join(' ') || 'none'})${modulesDir ? '; a tls module might still be loadable as root (modprobe tls)' : `; no /lib/modules/<release> either, so the tls module cannot be loaded`}: kernel TLS is not available on this machine`;
    return { tcpAvailableUlp: ulps, ktlsAvailable: ktls, modulesDir, note };
  }

  const median = (xs: number[]) => {
    const s = [...xs].sort((x, y) => x - y);
    const n = s.length;
    return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  };

  C.runBench('hbone-ceiling', F.timeout * 1000, async () => {
    const started = Date.now();
    const dir = C.tmpDir('hbone');
    // Registered after the temp dir, so it runs first: children die before their files go.
    C.onCleanup(killAll);
    await certificates(dir);
    log(`throwaway CA and SVIDs ${ID_A}, ${ID_B} in ${dir}`);
    const ktls = kernelTls();
    log(`kernel TLS: ${ktls.note}`);
    let probe: ReturnType<typeof cipherProbe> = [];
    if (F.cipherProbeMib > 0) {
      probe = cipherProbe(F.cipherProbeMib);
      log(`cipher alone, one core: ${probe.map((p) => `${p.aead} ${p.mbPerS} MB/s (${p.cpuSPerGiB} CPU-s/GiB)`).join(', ')}`);
    }

    const runs: Run[] = [];
    let failed = 0;
    for (let r = 1; r <= F.repeats; r++) {
      const order = r % 2 === 1 ? scenarios : [...scenarios].reverse();
      for (const s of order) {
        try {
          let run = await runOnce(s, r, dir);
          for (let retry = 1; retry <= F.retries && run.otherProcessesCores > F.idleThreshold; retry++) {
            log(`${s.name} #${r}: other processes used ${run.otherProcessesCores} cores (${run.mbPerS} MB/s); measuring again (${retry}/${F.retries})`);
            const again = await runOnce(s, r, dir);
            if (again.otherProcessesCores <= run.otherProcessesCores) run = again;
          }
          runs.push(run);
          const px = run.cpuSPerGiB.proxyA !== undefined ? `; proxy CPU-s/GiB A ${run.cpuSPerGiB.proxyA}, B ${run.cpuSPerGiB.proxyB}` : '';
          const cipher = run.tls?.a?.cipher ? `; ${String(run.tls.a.cipher)}${run.tls.a.alpn ? ` ${String(run.tls.a.alpn)}` : ''}` : '';
          log(`${s.name.padEnd(20)} #${r}: ${String(run.mbPerS).padStart(5)} MB/s in ${run.seconds} s${px}; cores ${run.cores.total} (others ${run.otherProcessesCores})${cipher}`);
        } catch (err) {
          failed++;
          runs.push({ scenario: s.name, repeat: r, error: (err as Error).message } as Run);
          log(`${s.name} #${r} FAILED: ${(err as Error).message}`);
        }
      }
    }

    // ---- medians and ratios
    const ok = (name: string) => runs.filter((x) => x.scenario === name && !x.error);
    const med = (name: string, f: (x: Run) => number | undefined) => {
      const v = ok(name).map(f).filter((x): x is number => x !== undefined && Number.isFinite(x));
      return v.length ? C.round(median(v), 2) : undefined;
    };
    const summary: Record<string, Record<string, unknown>> = {};
    for (const s of scenarios) {
      const rs = ok(s.name);
      if (rs.length === 0) continue;
      const mbs = rs.map((x) => x.mbPerS);
      summary[s.name] = {
        what: s.what,
        runs: rs.length,
        mbPerS: C.round(median(mbs), 0),
        mbPerSMin: Math.min(...mbs),
        mbPerSMax: Math.max(...mbs),
        proxyCpuSPerGiB: s.kind === 'direct' ? undefined : { a: med(s.name, (x) => x.cpuSPerGiB.proxyA), b: med(s.name, (x) => x.cpuSPerGiB.proxyB) },
        proxyCores: s.kind === 'direct' ? undefined : { a: med(s.name, (x) => x.cores.proxyA), b: med(s.name, (x) => x.cores.proxyB) },
        endpointCpuSPerGiB: { source: med(s.name, (x) => x.cpuSPerGiB.source), sink: med(s.name, (x) => x.cpuSPerGiB.sink) },
        totalCores: med(s.name, (x) => x.cores.total),
        totalCpuSPerGiB: med(s.name, (x) => x.cpuSPerGiB.total),
        otherProcessesCoresMax: Math.max(...rs.map((x) => x.otherProcessesCores)),
        disturbedRuns: rs.filter((x) => x.otherProcessesCores > F.idleThreshold).length,
        tls: rs[0].tls,
      };
    }
    const mb = (name: string) => summary[name]?.mbPerS as number | undefined;
    const ratio = (x: string, y: string) => (mb(x) !== undefined && mb(y) !== undefined ? C.round(mb(x)! / mb(y)!, 3) : undefined);
    const ratios: Record<string, number | undefined> = {};
    for (const s of scenarios) if (s.name !== 'direct') ratios[`${s.name} / direct`] = ratio(s.name, 'direct');
    ratios['tls-pipe / tcp-pipe'] = ratio('tls-pipe', 'tcp-pipe');
    ratios['hbone / tls-pipe'] = ratio('hbone', 'tls-pipe');
    for (const k of Object.keys(ratios)) if (ratios[k] === undefined) delete ratios[k];

    const result = {
      bench: 'hbone-ceiling',
      machine: C.machine(),
      openssl: process.versions.openssl,
      loadAverageAtEnd: C.loadAverage(),
      config: { mib: F.mib, repeats: F.repeats, chunkKib: F.chunkKib, order: 'alternating (ABCD, DCBA, ...)', scenarios: scenarios.map((s) => s.name) },
      kernelTls: ktls,
      cipherAloneOneCore: probe,
      summary,
      ratios,
      runs,
      failedRuns: failed,
      durationS: C.round((Date.now() - started) / 1000, 0),
    };
    const json = JSON.stringify(result, null, 2);
    process.stdout.write(`${json}\n`);
    if (F.json) fs.writeFileSync(F.json, `${json}\n`);

    // ---- table
    const pct = (x: number | undefined) => (x === undefined ? '' : `${C.round(x * 100, 1)} %`);
    const rows: string[][] = [['scenario', 'MB/s (min-max)', 'of direct', 'proxy CPU-s/GiB A / B', 'proxy cores A / B', 'all 4: cores, CPU-s/GiB', 'TLS']];
    for (const s of scenarios) {
      const x = summary[s.name];
      if (!x) {
        rows.push([s.name, 'failed', '', '', '', '', '']);
        continue;
      }
      const cpu = x.proxyCpuSPerGiB as { a?: number; b?: number } | undefined;
      const cores = x.proxyCores as { a?: number; b?: number } | undefined;
      const t = (x.tls as Run['tls'])?.a;
      rows.push([
        s.name,
        `${x.mbPerS} (${x.mbPerSMin}-${x.mbPerSMax})`,
        s.name === 'direct' ? '100 %' : pct(ratios[`${s.name} / direct`]),
        cpu ? `${cpu.a} / ${cpu.b}` : '-',
        cores ? `${cores.a} / ${cores.b}` : '-',
        `${x.totalCores}, ${x.totalCpuSPerGiB}`,
        t ? `${String(t.protocol)} ${String(t.cipher)}${t.alpn ? ` ${String(t.alpn)}` : ''}` : '',
      ]);
    }
    const w = rows[0].map((_h, i) => Math.max(...rows.map((row) => row[i].length)));
    const lines = rows.map((row) => row.map((cell, i) => cell.padEnd(w[i])).join('  ').trimEnd());
    lines.splice(1, 0, w.map((n) => '-'.repeat(n)).join('  '));
    const m = C.machine();
    process.stdout.write(`\nOne TCP flow of ${F.mib} MiB on 127.0.0.1, source -> proxy A -> proxy B -> sink in 4 processes sharing ${m.cpus} cores (${m.cpuModel}, Node ${m.node}, OpenSSL ${process.versions.openssl}); medians of ${F.repeats} alternating runs\n${lines.join('\n')}\n`);
    process.stdout.write(`ratios: ${Object.entries(ratios).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}\n`);
    if (probe.length) process.stdout.write(`cipher alone on one core (Node's OpenSSL, in process, 16 KiB records): ${probe.map((p) => `${p.aead} ${p.mbPerS} MB/s = ${p.cpuSPerGiB} CPU-s/GiB`).join(', ')}\n`);
    process.stdout.write(`kernel TLS: ${ktls.note}\n`);
    const disturbed = runs.filter((x) => !x.error && x.otherProcessesCores > F.idleThreshold).length;
    process.stdout.write(disturbed ? `disturbed by other processes (> ${F.idleThreshold} cores): ${disturbed} of ${runs.length} runs\n` : `no run was disturbed by other processes (> ${F.idleThreshold} cores)\n`);
    if (failed) {
      process.stdout.write(`${failed} run(s) failed (see "runs" in the JSON)\n`);
      process.exitCode = 1;
    }
  });
}

if (process.argv[2] === '--role') {
  void child().catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  });
} else {
  parent();
}
