// Programs the waypoint end-to-end test runs inside pods of the local cluster (compiled to
// dist/test/helpers/pod-tools.js): an echo backend (HTTP/1.1 + h2c on one port, a raw
// byte echo after an Upgrade, gRPC on another port), and clients that print JSON.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const PROTO = `syntax = "proto3";
package echo;
service Echo {
  rpc Say (Msg) returns (Msg);
  rpc Chat (stream Msg) returns (stream Msg);
}
message Msg { string text = 1; string pod = 2; }
`;

function loadEcho(): grpc.GrpcObject {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'echo-proto-')), 'echo.proto');
  fs.writeFileSync(file, PROTO);
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, { keepCase: true }));
}

/** The last --name value wins, so a caller can override a default it was given. */
function arg(name: string, def?: string): string {
  const i = process.argv.lastIndexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (def === undefined) throw new Error(`--${name} is required`);
  return def;
}

function args(name: string): string[] {
  const out: string[] = [];
  process.argv.forEach((a, i) => {
    if (a === `--${name}` && i + 1 < process.argv.length) out.push(process.argv[i + 1]);
  });
  return out;
}

/** HTTP echo: answers JSON with the pod, its version label, method, path and headers. FAIL_RATE answers 503 at random. */
function serve(): void {
  const pod = process.env.POD_NAME ?? 'unknown';
  const version = arg('version', 'v1');
  const failRate = Number(arg('fail-rate', '0'));
  let requests = 0;
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    requests++;
    const url = req.url ?? '/';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const send = (status: number, body: object) => {
        res.writeHead(status, { 'content-type': 'application/json', 'x-version': version });
        res.end(JSON.stringify(body));
      };
      if (url === '/stats') return send(200, { pod, version, requests });
      const m = /^\/delay\/(\d+)/.exec(url);
      const answer = () => {
        if (url.startsWith('/status/')) return send(Number(url.slice(8, 11)) || 500, { pod, version });
        if (failRate > 0 && Math.random() < failRate) return send(503, { pod, version, failed: true });
        send(200, { pod, version, method: req.method, path: url, headers: req.headers, body: Buffer.concat(chunks).length });
      };
      if (m) setTimeout(answer, Number(m[1]));
      else answer();
    });
  };
  const server = http.createServer(handler);
  // A raw byte echo after the 101: enough to show the upgraded connection is tunnelled both ways.
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  server.listen(Number(arg('port', '8080')), '0.0.0.0');
  // h2c on its own port, for HTTP/2 clients through the waypoint.
  http2.createServer(handler).listen(Number(arg('h2-port', '8081')), '0.0.0.0');
  const pkg = loadEcho() as unknown as { echo: { Echo: grpc.ServiceClientConstructor } };
  const g = new grpc.Server();
  g.addService(pkg.echo.Echo.service, {
    Say: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { text: call.request.text, pod }),
    Chat: (call: grpc.ServerDuplexStream<{ text: string }, unknown>) => {
      call.on('data', (m: { text: string }) => call.write({ text: m.text.toUpperCase(), pod }));
      call.on('end', () => call.end());
    },
  });
  g.bindAsync(`0.0.0.0:${arg('grpc-port', '9090')}`, grpc.ServerCredentials.createInsecure(), () => undefined);
}

/** N requests with C in flight; prints {statuses, versions, errors, ms}. */
async function load(): Promise<void> {
  const url = arg('url');
  const n = Number(arg('n', '100'));
  const c = Number(arg('c', '8'));
  const headers: Record<string, string> = {};
  for (const h of args('header')) {
    const i = h.indexOf(':');
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  const statuses: Record<string, number> = {};
  const versions: Record<string, number> = {};
  const errors: string[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  let next = 0;
  const t0 = Date.now();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const req = http.request(url, { agent, headers, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1;
          const v = String(res.headers['x-version'] ?? 'none');
          versions[v] = (versions[v] ?? 0) + 1;
          resolve();
        });
        res.on('error', (e) => {
          errors.push(e.message);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        errors.push(e.message);
        resolve();
      });
      req.end();
    });
  await Promise.all(Array.from({ length: c }, async () => {
    while (next < n) {
      next++;
      await one();
    }
  }));
  agent.destroy();
  process.stdout.write(`${JSON.stringify({ statuses, versions, errors: errors.slice(0, 5), errorCount: errors.length, ms: Date.now() - t0 })}\n`);
}

/** Writes raw bytes (given with \\r\\n escapes) and prints what comes back until the peer closes or 3 s pass. */
function raw(): void {
  const host = arg('host');
  const port = Number(arg('port'));
  const data = arg('data').replace(/\\r/g, '\r').replace(/\\n/g, '\n');
  const s = net.connect(port, host, () => s.write(data));
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  const done = (closed: boolean) => {
    process.stdout.write(JSON.stringify({ response: Buffer.concat(chunks).toString('latin1'), closed }) + '\n');
    process.exit(0);
  };
  s.on('close', () => done(true));
  s.on('error', () => undefined);
  setTimeout(() => done(false), Number(arg('wait', '3000'))).unref();
}

/** gRPC unary, then a bidirectional stream of 3 messages; prints the replies. */
function grpcClient(): void {
  const pkg = loadEcho() as unknown as { echo: { Echo: grpc.ServiceClientConstructor } };
  const client = new pkg.echo.Echo(arg('target'), grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    Say: (m: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r: { text: string; pod: string }) => void) => void;
    Chat: () => grpc.ClientDuplexStream<object, { text: string }>;
  };
  const deadline = new Date(Date.now() + 10_000);
  client.Say({ text: 'hello' }, { deadline }, (err, r) => {
    if (err) {
      process.stdout.write(`${JSON.stringify({ error: `${err.code} ${err.details}` })}\n`);
      process.exit(1);
    }
    const call = client.Chat();
    const got: string[] = [];
    call.on('data', (m: { text: string }) => got.push(m.text));
    call.on('error', (e: Error) => {
      process.stdout.write(`${JSON.stringify({ unary: r.text, error: e.message })}\n`);
      process.exit(1);
    });
    call.on('end', () => {
      process.stdout.write(`${JSON.stringify({ unary: r.text, stream: got })}\n`);
      process.exit(0);
    });
    for (const t of ['a', 'b', 'c']) call.write({ text: t });
    call.end();
  });
}

/** HTTP/1.1 Upgrade: websocket, then bytes both ways over the upgraded connection. */
function websocket(): void {
  const host = arg('host');
  const port = Number(arg('port', '80'));
  const s = net.connect(port, host, () => {
    s.write(`GET /chat HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  });
  let buf = '';
  let upgraded = false;
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    if (!upgraded && buf.includes('\r\n\r\n')) {
      upgraded = true;
      const status = buf.split('\r\n')[0];
      buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
      if (!status.includes(' 101 ')) {
        process.stdout.write(`${JSON.stringify({ status })}\n`);
        process.exit(1);
      }
      s.write('ping-over-upgrade');
    }
    if (upgraded && buf.includes('ping-over-upgrade')) {
      process.stdout.write(`${JSON.stringify({ status: 101, echoed: true })}\n`);
      process.exit(0);
    }
  });
  setTimeout(() => {
    process.stdout.write(`${JSON.stringify({ timeout: true, got: buf.slice(0, 200) })}\n`);
    process.exit(1);
  }, 8000).unref();
}

/** HTTP/2 rapid reset: open and cancel --n streams on one connection, then check a fresh connection still gets 200. */
function rapidReset(): void {
  const url = arg('url');
  const n = Number(arg('n', '5000'));
  const c = http2.connect(url);
  let sent = 0;
  let closedBy = '';
  c.on('error', (e: Error) => (closedBy = closedBy || e.message));
  c.on('goaway', (code: number) => (closedBy = closedBy || `goaway ${code}`));
  c.on('close', () => (closedBy = closedBy || 'closed'));
  const flood = () => {
    for (let i = 0; i < 200 && sent < n && !c.destroyed && !c.closed; i++, sent++) {
      try {
        const r = c.request({ ':path': '/' });
        r.on('error', () => undefined);
        r.close(http2.constants.NGHTTP2_CANCEL);
      } catch {
        sent = n;
      }
    }
    if (sent < n && !c.destroyed && !c.closed) setImmediate(flood);
    else setTimeout(check, 500);
  };
  const check = () => {
    c.destroy();
    const fresh = http2.connect(url);
    fresh.on('error', (e: Error) => {
      process.stdout.write(`${JSON.stringify({ sent, closedBy, after: `error ${e.message}` })}\n`);
      process.exit(1);
    });
    const r = fresh.request({ ':path': '/after-flood' });
    r.on('response', (h) => {
      process.stdout.write(`${JSON.stringify({ sent, closedBy, after: h[':status'] })}\n`);
      fresh.close();
      process.exit(0);
    });
    r.on('error', (e: Error) => {
      process.stdout.write(`${JSON.stringify({ sent, closedBy, after: `error ${e.message}` })}\n`);
      process.exit(1);
    });
    r.end();
  };
  c.on('connect', flood);
}

/** A minimal OTLP/HTTP JSON trace receiver: POST /v1/traces stores spans, GET /spans lists {traceId, parentSpanId, name}. */
function otlp(): void {
  const spans: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; url?: string }> = [];
  http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/spans') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(spans));
    }
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      try {
        type Attr = { key: string; value?: { stringValue?: string } };
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: Array<{ scopeSpans?: Array<{ spans?: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; attributes?: Attr[] }> }> }> };
        for (const rs of body.resourceSpans ?? []) {
          for (const ss of rs.scopeSpans ?? []) {
            for (const sp of ss.spans ?? []) {
              const url = sp.attributes?.find((a) => a.key === 'http.url')?.value?.stringValue;
              spans.push({ traceId: sp.traceId, spanId: sp.spanId, parentSpanId: sp.parentSpanId, name: sp.name, ...(url !== undefined ? { url } : {}) });
            }
          }
        }
        res.setHeader('content-type', 'application/json');
        res.end('{}');
      } catch {
        res.statusCode = 400;
        res.end();
      }
    });
  }).listen(Number(arg('port', '4318')), '0.0.0.0');
}

const cmd = process.argv[2];
if (cmd === 'serve') serve();
else if (cmd === 'load') void load();
else if (cmd === 'raw') raw();
else if (cmd === 'grpc') grpcClient();
else if (cmd === 'websocket') websocket();
else if (cmd === 'rapid-reset') rapidReset();
else if (cmd === 'otlp') otlp();
else if (process.env.NODE_TEST_CONTEXT) {
  // `node --test dist/test/` loads every file, this one too: it is a program for pods, not a test.
} else {
  process.stderr.write('usage: pod-tools serve|load|raw|grpc|websocket|rapid-reset|otlp ...\n');
  process.exit(2);
}
