import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import {
  buildSnapshot, GW, h1Request, h2Request, hostOf, identityOf, ISTIO, obj, rawExchange, readBody, serviceConfig, sleep, startBackend, startHarness, startTcpBackend,
  type Backend, type BackendRequest, type BackendResponse, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';
import { RATE_LIMIT_ANNOTATION } from '../../waypoint/http/filters/rate-limit';

const web: ServiceDef = { name: 'web', vip: '10.96.2.1', ports: [80] };
const grpcSvc: ServiceDef = { name: 'echo', vip: '10.96.2.2', ports: [50051] };
const shadow: ServiceDef = { name: 'shadow', vip: '10.96.2.3', ports: [80] };
const p80 = [{ servicePort: 80, targetPort: 80 }];
const mesh = buildSnapshot(
  [web, grpcSvc, shadow],
  [
    { name: 'web-1', ip: '10.0.3.1', services: { [hostOf('web')]: p80 } },
    { name: 'echo-1', ip: '10.0.3.2', services: { [hostOf('echo')]: [{ servicePort: 50051, targetPort: 50051 }] } },
    { name: 'shadow-1', ip: '10.0.3.3', services: { [hostOf('shadow')]: p80 } },
  ],
);

const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const echoService: grpc.ServiceDefinition = {
  unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
  slow: { path: '/test.Echo/Slow', requestStream: false, responseStream: false, requestSerialize: raw.serialize, requestDeserialize: raw.deserialize, responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};
const EchoClient = grpc.makeGenericClientConstructor(echoService, 'Echo');

let h: Harness;
let webBackend: Backend;
let shadowBackend: Backend;
const shadowSeen: Array<{ host: string; body: string }> = [];
let grpcServer: grpc.Server;
let webPort: number;
let grpcPort: number;

function apply(webParts: Parameters<typeof serviceConfig>[1] = {}) {
  const errs = h.engine.update(
    mesh,
    new Map([
      ['l7/shop/web', serviceConfig(web, webParts)],
      ['l7/shop/echo', serviceConfig(grpcSvc)],
      ['l7/shop/shadow', serviceConfig(shadow)],
    ]),
  );
  assert.deepEqual(errs, []);
}

before(async () => {
  h = await startHarness();
  webBackend = await startBackend('web-1', (req: BackendRequest, res: BackendResponse) => {
    void readBody(req).then(async (body) => {
      if (req.url === '/slow') await sleep(400);
      if (req.url === '/trailers-unannounced') {
        const r = res as http.ServerResponse;
        r.write('body');
        r.addTrailers({ 'x-sum': 'abc' });
        r.end();
        return;
      }
      if (req.url === '/trailers') {
        const r = res as http.ServerResponse;
        r.setHeader('trailer', 'x-checksum');
        r.write(`got ${body.length} bytes; te=${String(req.headers['transfer-encoding'] ?? '')}`);
        r.addTrailers({ 'x-checksum': createHash('sha256').update(body).digest('hex') });
        r.end();
        return;
      }
      res.setHeader('x-body-length', String(body.length));
      res.end(`echo:${body.toString()}`);
    });
  });
  webBackend.h1.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const accept = createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    if (head.length) socket.write(head);
    socket.pipe(socket);
  });
  shadowBackend = await startBackend('shadow-1', (req: BackendRequest, res: BackendResponse) => {
    void readBody(req).then((body) => {
      shadowSeen.push({ host: String(req.headers.host ?? req.headers[':authority']), body: body.toString() });
      res.statusCode = 500;
      res.end('the mirror answer is ignored');
    });
  });
  h.connector.ports.set('web-1', webBackend.port);
  h.connector.ports.set('shadow-1', shadowBackend.port);

  grpcServer = new grpc.Server();
  grpcServer.addService(echoService, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const md = new grpc.Metadata();
      md.set('x-trailer', 'present');
      cb(null, Buffer.concat([Buffer.from('echo:'), call.request]), md);
    },
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(Buffer.concat([Buffer.from('re:'), b])));
      call.on('end', () => call.end());
    },
    slow: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      setTimeout(() => cb(null, Buffer.from('late')), 3000).unref();
    },
  });
  const gport = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  h.connector.ports.set('echo-1', gport);
  apply();
  webPort = await h.tunnel({ authority: '10.96.2.1:80' });
  grpcPort = await h.tunnel({ authority: `${hostOf('echo')}:50051` });
});

after(async () => {
  await h.close();
  await webBackend.close();
  await shadowBackend.close();
  grpcServer.forceShutdown();
});

test('gRPC unary through the engine, with trailers', async () => {
  const client = new EchoClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  try {
    const { reply, trailers } = await new Promise<{ reply: Buffer; trailers: grpc.Metadata }>((resolve, reject) => {
      let reply: Buffer | undefined;
      let trailers: grpc.Metadata | undefined;
      const maybe = () => {
        if (reply !== undefined && trailers !== undefined) resolve({ reply, trailers });
      };
      const call = client.makeUnaryRequest('/test.Echo/Unary', raw.serialize, raw.deserialize, Buffer.from('ping'), (err: grpc.ServiceError | null, v?: Buffer) => {
        if (err) return reject(err);
        reply = v as Buffer;
        maybe();
      });
      call.on('status', (st: grpc.StatusObject) => {
        trailers = st.metadata;
        maybe();
      });
    });
    await sleep(10);
    assert.equal(reply.toString(), 'echo:ping');
    assert.deepEqual(trailers.get('x-trailer'), ['present']);
    const rec = h.telemetry.records.find((r) => r.info.path === '/test.Echo/Unary');
    assert.equal(rec?.info.protocol, 'grpc');
    assert.equal(rec?.grpcStatus, '0');
  } finally {
    client.close();
  }
});

test('gRPC bidirectional streaming through the engine', async () => {
  const client = new EchoClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest('/test.Echo/Chat', raw.serialize, raw.deserialize);
    const got: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      call.on('data', (b: Buffer) => {
        got.push(b.toString());
        // Each reply triggers the next message: both directions are live at once.
        if (got.length < 5) call.write(Buffer.from(`m${got.length}`));
        else call.end();
      });
      call.on('error', reject);
      call.on('status', () => resolve());
    });
    call.write(Buffer.from('m0'));
    await done;
    assert.deepEqual(got, ['re:m0', 're:m1', 're:m2', 're:m3', 're:m4']);
  } finally {
    client.close();
  }
});

test('grpc-timeout is honoured: DEADLINE_EXCEEDED as a trailers-only response', async () => {
  const s = http2.connect(`http://127.0.0.1:${grpcPort}`);
  try {
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 2]), Buffer.from('hi')]);
    const t0 = Date.now();
    const r = await h2Request(s, { ':method': 'POST', ':path': '/test.Echo/Slow', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' }, frame.toString('latin1'));
    const elapsed = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(r.headers['grpc-status'], '4');
    assert.ok(elapsed < 2500, `took ${elapsed} ms`);
  } finally {
    s.close();
  }
});

test('WebSocket: the 101 comes back and the upgraded bytes are tunnelled', async () => {
  const sock = net.connect(webPort, '127.0.0.1');
  const key = Buffer.from('0123456789abcdef').toString('base64');
  sock.write(`GET /chat HTTP/1.1\r\nHost: web\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buf = Buffer.alloc(0);
  const read = (pred: (b: Buffer) => boolean) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pred(buf)) {
          sock.removeListener('data', onData);
          resolve();
        }
      };
      const onData = (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        check();
      };
      sock.on('data', onData);
      sock.once('error', reject);
      check();
    });
  await read((b) => b.includes('\r\n\r\n'));
  const headEnd = buf.indexOf('\r\n\r\n') + 4;
  const head = buf.subarray(0, headEnd).toString();
  assert.match(head, /^HTTP\/1\.1 101 /);
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.match(head, new RegExp(`sec-websocket-accept: ${accept.replace(/[+/]/g, '\\$&')}`, 'i'));
  buf = buf.subarray(headEnd);
  // A masked text frame "hello", as a browser would send it; the echo server returns the bytes as they are.
  const frame = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 'h'.charCodeAt(0) ^ 1, 'e'.charCodeAt(0) ^ 2, 'l'.charCodeAt(0) ^ 3, 'l'.charCodeAt(0) ^ 4, 'o'.charCodeAt(0) ^ 1]);
  sock.write(frame);
  await read((b) => b.length >= frame.length);
  assert.deepEqual(buf.subarray(0, frame.length), frame);
  sock.destroy();
  await sleep(50);
  const rec = h.telemetry.records.find((r) => r.info.path === '/chat');
  assert.equal(rec?.code, 101);
});

test('HTTP/1.1: keep-alive, chunked bodies with trailers, and 100-continue', async () => {
  apply();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < 5; i++) assert.equal((await h1Request(webPort, { agent, method: 'POST', body: `n${i}` })).body, `echo:n${i}`);
  agent.destroy();

  const big = Buffer.alloc(200 * 1024, 7);
  const withTrailers = await new Promise<{ body: string; trailers: NodeJS.Dict<string> }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: webPort, method: 'POST', path: '/trailers', headers: { host: 'web', 'transfer-encoding': 'chunked', te: 'trailers' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ body, trailers: res.trailers }));
    });
    req.on('error', reject);
    req.write(big.subarray(0, 100 * 1024));
    setTimeout(() => req.end(big.subarray(100 * 1024)), 20);
  });
  assert.match(withTrailers.body, /^got 204800 bytes/);
  assert.equal(withTrailers.trailers['x-checksum'], createHash('sha256').update(big).digest('hex'));

  const cont = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
    let continued = false;
    const req = http.request({ host: '127.0.0.1', port: webPort, method: 'POST', path: '/upload', headers: { host: 'web', expect: '100-continue', 'content-length': '5' } }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, continued }));
    });
    req.on('continue', () => {
      continued = true;
      req.end('hello');
    });
    req.on('error', reject);
  });
  assert.deepEqual(cont, { status: 200, body: 'echo:hello', continued: true });
});

test('tunnels that are HTTP/2 CONNECT streams (as HBONE delivers them) carry HTTP/1.1 and HTTP/2', async () => {
  const hbone = http2.createServer();
  hbone.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (headers[':method'] !== 'CONNECT') return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    stream.respond({ ':status': 200 });
    h.engine.handleTunnel(stream, { authority: String(headers[':authority']), peerIdentity: identityOf('client'), sourceAddress: '10.1.0.7' });
  });
  await new Promise<void>((r) => hbone.listen(0, '127.0.0.1', () => r()));
  const hbonePort = (hbone.address() as net.AddressInfo).port;
  const outer = http2.connect(`http://127.0.0.1:${hbonePort}`);
  const open = () =>
    new Promise<http2.ClientHttp2Stream>((resolve, reject) => {
      const s = outer.request({ ':method': 'CONNECT', ':authority': '10.96.2.1:80' }, { endStream: false });
      s.once('response', (hh) => (hh[':status'] === 200 ? resolve(s) : reject(new Error(String(hh[':status'])))));
      s.once('error', reject);
    });
  try {
    const t1 = await open();
    const text = await new Promise<string>((resolve) => {
      let out = '';
      t1.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('echo:x')) resolve(out);
      });
      t1.write('POST /h1 HTTP/1.1\r\nHost: web\r\nContent-Length: 1\r\n\r\nx');
    });
    assert.match(text, /^HTTP\/1\.1 200 /);
    t1.close();

    const t2 = await open();
    const inner = http2.connect('http://web', { createConnection: () => t2 });
    const r = await h2Request(inner, { ':method': 'POST', ':path': '/h2' }, 'inner');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'echo:inner');
    inner.close();
  } finally {
    outer.close();
    await new Promise<void>((r) => hbone.close(() => r()));
  }
});

test('local rate limit answers 429 RL past the bucket', async () => {
  const route = obj(GW, 'HTTPRoute', 'web', { parentRefs: [{ group: '', kind: 'Service', name: 'web' }], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] }, { annotations: { [RATE_LIMIT_ANNOTATION]: '5/m burst 5' } });
  apply({ httpRoutes: [route] });
  const statuses = [];
  for (let i = 0; i < 10; i++) statuses.push((await h1Request(webPort)).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429, 429, 429]);
  assert.equal(h.telemetry.records.at(-1)?.flags, 'RL');
  apply();
});

test('RequestMirror sends a copy, ignores its answer and never affects the request', async () => {
  const route = obj(GW, 'HTTPRoute', 'web', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }], backendRefs: [{ name: 'web', port: 80 }] }],
  });
  apply({ httpRoutes: [route] });
  shadowSeen.length = 0;
  const r = await h1Request(webPort, { method: 'POST', path: '/m', body: 'payload', headers: { host: 'web' } });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'echo:payload');
  for (let i = 0; i < 50 && shadowSeen.length === 0; i++) await sleep(20);
  assert.deepEqual(shadowSeen, [{ host: 'web-shadow', body: 'payload' }]);
  apply();
});

test('RequestMirror streams bodies of any size to the mirror; a mirror that stops reading is dropped without slowing the request', async () => {
  const route = obj(GW, 'HTTPRoute', 'web', {
    parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
    rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } }], backendRefs: [{ name: 'web', port: 80 }] }],
  });
  apply({ httpRoutes: [route] });
  try {
    // 300 KiB: beyond the 64 KiB kept for retries.
    shadowSeen.length = 0;
    const big = 'm'.repeat(300 * 1024);
    const r = await h1Request(webPort, { method: 'POST', path: '/m', body: big, headers: { host: 'web' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-body-length'], String(big.length));
    for (let i = 0; i < 250 && shadowSeen.length === 0; i++) await sleep(20);
    assert.equal(shadowSeen.length, 1);
    assert.equal(shadowSeen[0].body.length, big.length, 'the mirror got the whole body');
    assert.equal(shadowSeen[0].body, big);

    // A mirror endpoint that never reads: the real request still completes, and the mirror is given up.
    // It reads nothing until the real request has completed, then takes what was sent: a given-up
    // mirror shows as a connection that ends short of the body (whatever the machine's speed).
    let stalledClosed = false;
    let stalledBytes = 0;
    const stalledSocks: net.Socket[] = [];
    const stalled = await startTcpBackend((sock) => {
      sock.pause();
      stalledSocks.push(sock);
      sock.on('data', (d: Buffer) => (stalledBytes += d.length));
      // 'end': the waypoint closed its side (this server allows half-open connections).
      sock.once('end', () => (stalledClosed = true));
      sock.once('close', () => (stalledClosed = true));
    });
    h.connector.ports.set('shadow-1', stalled.port);
    // The waypoint's kept-alive connection to the first mirror must not carry the next copy.
    shadowBackend.dropConnections();
    await sleep(50);
    try {
      const huge = Buffer.alloc(12 * 1024 * 1024, 0x61);
      const started = Date.now();
      const r2 = await h1Request(webPort, { method: 'POST', path: '/m', body: huge, headers: { host: 'web' }, timeoutMs: 20_000 });
      assert.equal(r2.status, 200);
      assert.equal(r2.headers['x-body-length'], String(huge.length));
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      for (const sock of stalledSocks) sock.resume();
      for (let i = 0; i < 250 && !stalledClosed; i++) await sleep(20);
      assert.ok(stalledClosed, 'the mirror that fell behind was aborted');
      assert.ok(stalledBytes < huge.length, `the mirror got ${stalledBytes} of ${huge.length} bytes`);
    } finally {
      h.connector.ports.set('shadow-1', shadowBackend.port);
      await stalled.close();
    }
  } finally {
    apply();
  }
});

test('a caller that goes away mid-request closes its record once, with DC', async () => {
  apply();
  const before = h.telemetry.records.length;
  const sock = net.connect(webPort, '127.0.0.1');
  sock.write('GET /slow HTTP/1.1\r\nHost: web\r\n\r\n');
  await sleep(100);
  sock.destroy();
  await sleep(500);
  const recs = h.telemetry.records.slice(before);
  assert.equal(recs.length, 1);
  assert.equal(recs[0].closes, 1);
  assert.equal(recs[0].code, 0);
  assert.equal(recs[0].flags, 'DC');
});

test('an HTTP/2 caller that resets its stream mid-body never has its request completed upstream', async () => {
  const seen: string[] = [];
  const partial = await startBackend('partial', (req: BackendRequest, res: BackendResponse) => {
    let n = 0;
    let aborted = false;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      // node's HTTP/1 server also ends a request whose connection died, after 'aborted'.
      if (aborted) return;
      seen.push(`complete after ${n} bytes`);
      res.end('ok');
    });
    req.on('aborted', () => {
      aborted = true;
      seen.push(`aborted after ${n} bytes`);
    });
  });
  // A service of its own, declared HTTP/1.1: a completed body would show as the chunked terminator upstream.
  const part: ServiceDef = { name: 'part', vip: '10.96.2.9', ports: [80], appProtocols: { 80: 'http' } };
  const mesh2 = buildSnapshot(
    [web, grpcSvc, shadow, part],
    [
      { name: 'web-1', ip: '10.0.3.1', services: { [hostOf('web')]: p80 } },
      { name: 'echo-1', ip: '10.0.3.2', services: { [hostOf('echo')]: [{ servicePort: 50051, targetPort: 50051 }] } },
      { name: 'shadow-1', ip: '10.0.3.3', services: { [hostOf('shadow')]: p80 } },
      { name: 'part-1', ip: '10.0.3.9', services: { [hostOf('part')]: p80 } },
    ],
  );
  h.connector.ports.set('part-1', partial.port);
  try {
    assert.deepEqual(h.engine.update(mesh2, new Map([
      ['l7/shop/web', serviceConfig(web)], ['l7/shop/echo', serviceConfig(grpcSvc)], ['l7/shop/shadow', serviceConfig(shadow)], ['l7/shop/part', serviceConfig(part)],
    ])), []);
    const partPort = await h.tunnel({ authority: '10.96.2.9:80' });
    const session = http2.connect(`http://127.0.0.1:${partPort}`);
    session.on('error', () => {});
    const req = session.request({ ':method': 'POST', ':path': '/partial', ':authority': 'part' });
    req.on('error', () => {});
    req.write(Buffer.alloc(50_000, 1));
    await sleep(300);
    // RST_STREAM without END_STREAM first, as Go, Envoy and curl send it (node's own close() ends the stream first).
    (req as unknown as { end: () => void }).end = () => {};
    req.close(http2.constants.NGHTTP2_CANCEL);
    await sleep(500);
    session.destroy();
    assert.ok(seen.length > 0 && seen.every((e) => e.startsWith('aborted')), `upstream saw: ${JSON.stringify(seen)}`);
  } finally {
    apply();
    await partial.close();
  }
});

test('an HTTP/2 caller that closes its connection (FIN) has its requests ended at once, with DC', async () => {
  apply();
  const before = h.telemetry.records.length;
  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  session.on('error', () => {});
  const req = session.request({ ':path': '/slow', ':authority': 'web' });
  req.on('error', () => {});
  req.end();
  await sleep(100);
  // destroy() ends the socket with a FIN; the tunnel stays half-open unless the waypoint closes it.
  session.destroy();
  await sleep(600);
  // /slow answers after 400 ms. Had the waypoint not seen the caller leave, it would have written
  // that answer into the half-open tunnel and recorded a 200.
  const recs = h.telemetry.records.slice(before);
  assert.equal(recs.length, 1);
  assert.equal(recs[0].closes, 1);
  assert.equal(recs[0].flags, 'DC');
});

test('an HTTP/2 caller that accepts trailers gets them even when the endpoint did not announce them', async () => {
  apply();
  const session = http2.connect(`http://127.0.0.1:${webPort}`);
  try {
    const got = await new Promise<{ body: string; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
      const req = session.request({ ':path': '/trailers-unannounced', ':authority': 'web', te: 'trailers' });
      let body = '';
      let trailers: http2.IncomingHttpHeaders = {};
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('trailers', (t) => (trailers = t));
      req.on('end', () => resolve({ body, trailers }));
      req.on('error', reject);
      req.end();
    });
    assert.equal(got.body, 'body');
    assert.equal(got.trailers['x-sum'], 'abc');
  } finally {
    session.close();
  }
});

test('an h2c upgrade offer with a body (curl --http2 -d) is declined and the request served as HTTP/1.1', async () => {
  apply();
  const offer = 'POST /p HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello';
  const r = await rawExchange(webPort, `${offer}GET /after HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
  assert.match(r.text, /^HTTP\/1\.1 200/);
  assert.match(r.text, /echo:hello/);
  assert.doesNotMatch(r.text, /101 Switching/);
  // The connection stays HTTP/1.1: the next request on it is answered too.
  assert.equal(r.text.match(/HTTP\/1\.1 200/g)?.length, 2, r.text);
});

test('drain lets in-flight requests finish, asks HTTP/1 callers to close and refuses new tunnels', async () => {
  apply();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const inflight = h1Request(webPort, { agent, path: '/slow' });
  const h2s = http2.connect(`http://127.0.0.1:${webPort}`);
  let goaway = false;
  h2s.on('goaway', () => {
    goaway = true;
  });
  h2s.on('error', () => {});
  const h2inflight = h2Request(h2s, { ':path': '/slow' });
  await sleep(100);
  const drained = h.engine.drain(5000);
  const r = await inflight;
  assert.equal(r.status, 200);
  assert.equal(r.headers.connection, 'close');
  assert.equal((await h2inflight).status, 200);
  await drained;
  assert.ok(goaway, 'HTTP/2 caller got GOAWAY');
  agent.destroy();
  h2s.destroy();
  await assert.rejects(h1Request(webPort));
});
