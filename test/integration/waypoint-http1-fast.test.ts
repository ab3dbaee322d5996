/**
 * The waypoint's own HTTP/1.1 server path (http1-server-connection.ts) on real sockets: keep-alive,
 * pipelining, handing a connection to node:http mid-way, unread bodies, timeouts and response
 * framing, as a caller sees them on the wire.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type http from 'node:http';
import net from 'node:net';
import {
  buildSnapshot, hostOf, ISTIO, obj, rawExchange, readBody, serviceConfig, sleep, startBackend, startHarness,
  type Backend, type Harness, type ServiceDef,
} from '../helpers/waypoint-harness';

const web: ServiceDef = { name: 'web', vip: '10.96.0.60', ports: [8080] };
const workloads = [{ name: 'web-a', ip: '10.0.6.1', services: { [hostOf('web')]: [{ servicePort: 8080, targetPort: 8080 }] } }];
const mesh = buildSnapshot([web], workloads);

let h: Harness;
let backend: Backend;
/** The endpoint answers this many /retry requests with 503 before it answers normally. */
let failNext = 0;
let port: number;

before(async () => {
  h = await startHarness({ limits: { requestHeadersTimeoutMs: 400, keepAliveTimeoutMs: 600 } });
  backend = await startBackend('web-a', (req, res) => {
    void readBody(req).then(
      (body) => {
      const url = String(req.url);
      if (url.startsWith('/nocontent')) {
        res.statusCode = 204;
        res.end();
        return;
      }
      if (url.startsWith('/retry') && failNext > 0) {
        failNext--;
        res.statusCode = 503;
        res.end('try again');
        return;
      }
      if (url.startsWith('/stream')) {
        (res as http.ServerResponse).write('part1,');
        setTimeout(() => res.end('part2'), 20);
        return;
      }
      res.setHeader('x-method', String(req.method));
      res.end(`${req.method} ${url} ${body.length}:${body.toString().slice(0, 16)}`);
      },
      () => {},
    );
  });
  h.connector.ports.set('web-a', backend.port);
  // Only /ok* and /stream* and /nocontent* are routed: anything else gets a 404 from the waypoint itself, body unread.
  const vs = obj(ISTIO, 'VirtualService', 'web', {
    hosts: ['web'],
    http: [
      { match: [{ uri: { prefix: '/retry' } }], route: [{ destination: { host: 'web' } }], retries: { attempts: 2, retryOn: '5xx' } },
      { match: [{ uri: { prefix: '/ok' } }, { uri: { prefix: '/stream' } }, { uri: { prefix: '/nocontent' } }], route: [{ destination: { host: 'web' } }] },
    ],
  });
  assert.deepEqual(h.engine.update(mesh, new Map([['l7/shop/web', serviceConfig(web, { virtualServices: [vs] })]])), []);
  port = await h.tunnel({ authority: '10.96.0.60:8080' });
});

after(async () => {
  await h.close();
  await backend.close();
});

/** Splits a byte stream of HTTP/1.1 responses (Content-Length or chunked framing) into status + body. */
function responses(text: string): Array<{ status: number; head: string; body: string }> {
  const out: Array<{ status: number; head: string; body: string }> = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end);
    rest = rest.slice(end + 4);
    const status = Number(head.split(' ')[1]);
    const cl = /\r\ncontent-length: (\d+)/i.exec(head);
    let body = '';
    if (/\r\ntransfer-encoding: chunked/i.test(head)) {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (size === 0) {
          rest = rest.slice(rest.indexOf('\r\n') + 2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else if (cl && !head.startsWith('HTTP/1.1 204') && !/^HEAD/.test(head)) {
      body = rest.slice(0, Number(cl[1]));
      rest = rest.slice(Number(cl[1]));
    }
    out.push({ status, head, body });
  }
  return out;
}

test('pipelined requests on one connection are answered in order, and Connection: close ends it', async () => {
  const r = await rawExchange(
    port,
    'GET /ok/1 HTTP/1.1\r\nHost: web\r\n\r\n' +
      'POST /ok/2 HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello' +
      'HEAD /ok/3 HTTP/1.1\r\nHost: web\r\n\r\n' +
      'GET /ok/4 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n',
  );
  assert.ok(r.closed, 'the waypoint closed the connection after the last response');
  const rs = responses(r.text);
  assert.deepEqual(
    rs.map((x) => [x.status, x.body]),
    [
      [200, 'GET /ok/1 0:'],
      [200, 'POST /ok/2 5:hello'],
      [200, ''],
      [200, 'GET /ok/4 0:'],
    ],
  );
  assert.match(rs[2].head, /x-method: HEAD/);
  assert.match(rs[0].head, /\r\ndate: /i);
  assert.match(rs[3].head, /\r\nconnection: close/i);
  assert.doesNotMatch(rs[0].head, /connection: close/i);
});

test('a request outside the fast subset mid-connection is served by node:http on the same connection', async () => {
  const r = await rawExchange(
    port,
    'GET /ok/a HTTP/1.1\r\nHost: web\r\n\r\n' +
      'POST /ok/b HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'GET /ok/c HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n',
  );
  assert.deepEqual(
    responses(r.text).map((x) => [x.status, x.body]),
    [
      [200, 'GET /ok/a 0:'],
      [200, 'POST /ok/b 3:abc'],
      [200, 'GET /ok/c 0:'],
    ],
  );
  assert.ok(r.closed);
});

test('smuggling-shaped requests after a fast one still get 400 and a closed connection', async () => {
  // [attack, requests the endpoint may see]: a bad chunk is found only after the head went upstream.
  for (const [attack, hits] of [
    ['POST /ok HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /ok/smuggled HTTP/1.1\r\nHost: web\r\n\r\n', 1],
    ['POST /ok HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd', 1],
    ['POST /ok HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n', 2],
  ] as const) {
    const before = backend.hits;
    const r = await rawExchange(port, `GET /ok/first HTTP/1.1\r\nHost: web\r\n\r\n${attack}`);
    const rs = responses(r.text);
    assert.equal(rs[0].status, 200);
    assert.equal(rs[1]?.status, 400, attack);
    assert.equal(rs.length, 2, 'nothing after the bad request is served');
    assert.ok(r.closed);
    assert.equal(backend.hits - before, hits, 'nothing smuggled reached the endpoint');
  }
});

test('a body the waypoint never read (local reply) is skipped, and the next request on the connection is served', async () => {
  const body = 'x'.repeat(10_000);
  const r = await rawExchange(port, `POST /denied HTTP/1.1\r\nHost: web\r\nContent-Length: ${body.length}\r\n\r\n${body}GET /ok/after HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n`);
  const rs = responses(r.text);
  assert.deepEqual(
    rs.map((x) => x.status),
    [404, 200],
  );
  assert.equal(rs[1].body, 'GET /ok/after 0:');
});

test('a large unread body closes the connection after the local reply instead of reading it all', async () => {
  const s = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  s.on('error', () => {});
  s.write(`POST /denied HTTP/1.1\r\nHost: web\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n${'y'.repeat(1000)}`);
  await closed;
  const text = Buffer.concat(chunks).toString('latin1');
  assert.match(text, /^HTTP\/1\.1 404 /);
  assert.match(text, /\r\nconnection: close/i);
});

test('streamed and empty responses are framed correctly (chunked, 204 without a length)', async () => {
  const r = await rawExchange(port, 'GET /stream HTTP/1.1\r\nHost: web\r\n\r\nGET /nocontent HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n');
  const rs = responses(r.text);
  assert.equal(rs[0].status, 200);
  assert.equal(rs[0].body, 'part1,part2');
  assert.match(rs[0].head, /transfer-encoding: chunked/i);
  assert.equal(rs[1].status, 204);
  assert.doesNotMatch(rs[1].head, /content-length|transfer-encoding/i);
});

test('a head that trickles in too slowly gets 408 and the connection closes (slowloris)', async () => {
  const s = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  s.write('GET /ok HTTP/1.1\r\nHost: web\r\n');
  const started = Date.now();
  const trickle = setInterval(() => s.writable && s.write('X: y\r\n'), 100);
  await closed;
  clearInterval(trickle);
  assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - started < 3000);
});

test('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  const closed = new Promise<number>((r) => s.on('close', () => r(Date.now())));
  s.write('GET /ok HTTP/1.1\r\nHost: web\r\n\r\n');
  await sleep(100);
  assert.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 200 /);
  const t0 = Date.now();
  const at = await closed;
  assert.ok(at - t0 >= 300 && at - t0 < 3000, `closed after ${at - t0} ms`);
});

test('a retried request carries its whole body again, whether it came with the head or trickled in', async () => {
  const body = 'b'.repeat(3000);
  // With the head, in one write.
  failNext = 1;
  let r = await rawExchange(port, `POST /retry/1 HTTP/1.1\r\nHost: web\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  assert.deepEqual(
    responses(r.text).map((x) => [x.status, x.body]),
    [[200, `POST /retry/1 ${body.length}:${body.slice(0, 16)}`]],
  );
  // In pieces, after the head.
  failNext = 1;
  const s = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => {});
  const closed = new Promise<void>((res) => s.on('close', () => res()));
  s.write(`POST /retry/2 HTTP/1.1\r\nHost: web\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
  for (let i = 0; i < body.length; i += 1000) {
    await sleep(20);
    s.write(body.slice(i, i + 1000));
  }
  await closed;
  r = { text: Buffer.concat(chunks).toString('latin1'), closed: true };
  assert.deepEqual(
    responses(r.text).map((x) => [x.status, x.body]),
    [[200, `POST /retry/2 ${body.length}:${body.slice(0, 16)}`]],
  );
  assert.equal(failNext, 0, 'each request failed once before it succeeded');
});
