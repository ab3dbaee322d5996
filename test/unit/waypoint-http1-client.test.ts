import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Readable } from 'node:stream';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import type { UpstreamConnector, UpstreamTarget } from '../../waypoint/upstream/connector';
import { UpstreamError, type UpstreamRequestHead } from '../../waypoint/upstream/exchange';
import { Http1Pool, type Http1PoolOptions } from '../../waypoint/upstream/upstream-http1';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ServerRequest {
  /** Head and body exactly as received. */
  raw: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

interface RawServer {
  port: number;
  /** Connections accepted. */
  connections: number;
  /** Connections open now, and the most ever open at once. */
  open: number;
  maxOpen: number;
  /** Sockets closed (by either side). */
  closed: number;
  requests: ServerRequest[];
  close(): Promise<void>;
}

const servers: RawServer[] = [];
const pools: Http1Pool[] = [];

after(async () => {
  for (const p of pools) p.close();
  for (const s of servers) await s.close();
});

/**
 * A TCP server that reads HTTP/1.1 requests one after another on each connection (Content-Length
 * or chunked bodies) and lets the test answer each with whatever bytes it likes.
 */
async function startServer(onRequest: (req: ServerRequest, sock: net.Socket, n: number) => void, onConnection?: (sock: net.Socket) => boolean): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const srv: RawServer = {
    port: 0,
    connections: 0,
    open: 0,
    maxOpen: 0,
    closed: 0,
    requests: [],
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((sock) => {
    sockets.add(sock);
    srv.connections++;
    srv.open++;
    srv.maxOpen = Math.max(srv.maxOpen, srv.open);
    sock.on('error', () => {});
    sock.on('close', () => {
      sockets.delete(sock);
      srv.open--;
      srv.closed++;
    });
    if (onConnection?.(sock)) return;
    let buf = '';
    let perConn = 0;
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const he = buf.indexOf('\r\n\r\n');
        if (he === -1) return;
        const lines = buf.slice(0, he).split('\r\n');
        const [method, path] = lines[0].split(' ');
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
        }
        let end: number;
        let body: string;
        if (headers['transfer-encoding'] === 'chunked') {
          const rest = buf.slice(he + 4);
          const last = rest.startsWith('0\r\n\r\n') ? 0 : rest.indexOf('\r\n0\r\n\r\n');
          if (last === -1) return;
          end = he + 4 + (last === 0 ? 5 : last + 7);
          body = '';
          let s = rest.slice(0, end - he - 4);
          for (;;) {
            const nl = s.indexOf('\r\n');
            const size = parseInt(s.slice(0, nl), 16);
            if (size === 0) break;
            body += s.slice(nl + 2, nl + 2 + size);
            s = s.slice(nl + 4 + size);
          }
        } else {
          const n = Number(headers['content-length'] ?? 0);
          if (buf.length < he + 4 + n) return;
          end = he + 4 + n;
          body = buf.slice(he + 4, end);
        }
        const req: ServerRequest = { raw: buf.slice(0, end), method, path, headers, body };
        buf = buf.slice(end);
        srv.requests.push(req);
        onRequest(req, sock, perConn++);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  srv.port = (server.address() as net.AddressInfo).port;
  servers.push(srv);
  return srv;
}

/** Client sockets handed out, to see how many the pool held at once (the server sees closes late). */
const clientSockets: net.Socket[] = [];
let maxLiveClients = 0;

const connector: UpstreamConnector = {
  connect: (t) =>
    new Promise((resolve, reject) => {
      const live = clientSockets.filter((c) => !c.destroyed).length + 1;
      maxLiveClients = Math.max(maxLiveClients, live);
      const s = net.connect(t.port, '127.0.0.1');
      clientSockets.push(s);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    }),
};

function target(port: number): UpstreamTarget {
  return { workload: {} as WorkloadView, address: '127.0.0.1', port };
}

function pool(opts: Partial<Http1PoolOptions> = {}): Http1Pool {
  const p = new Http1Pool(connector, { connectTimeoutMs: 2000, maxConnections: 0, maxRequestsPerConnection: 0, idleTimeoutMs: 10_000, ...opts });
  pools.push(p);
  return p;
}

function get(path = '/', extra: Partial<UpstreamRequestHead> = {}): UpstreamRequestHead {
  return { method: 'GET', path, authority: 'svc.test', headers: {}, hasBody: false, ...extra };
}

/** Reads a body to its end or its close; `ended` tells which. */
function drain(body: Readable): Promise<{ data: string; ended: boolean }> {
  return new Promise((resolve) => {
    let data = '';
    let ended = false;
    body.on('data', (c: Buffer) => (data += c.toString('latin1')));
    body.on('end', () => (ended = true));
    body.on('close', () => resolve({ data, ended }));
  });
}

async function fetch(p: Http1Pool, port: number, head: UpstreamRequestHead = get(), body?: string[]) {
  const ex = p.request(`ep:${port}`, target(port), head);
  if (body) {
    for (const c of body) ex.requestBody.write(Buffer.from(c));
    ex.requestBody.end();
  }
  const res = await ex.response;
  const b = await drain(res.body);
  return { ex, res, ...b };
}

async function rejection(p: Promise<unknown>): Promise<UpstreamError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof UpstreamError, `expected an UpstreamError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

test('a Content-Length response: status, headers (repeated ones as arrays) and body', async () => {
  const srv = await startServer((_r, s) => s.write('HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello'));
  const r = await fetch(pool(), srv.port);
  assert.equal(r.res.status, 201);
  assert.equal(r.res.endStream, false);
  assert.equal(r.res.headers['content-length'], '5');
  assert.deepEqual(r.res.headers['x-a'], ['1', '2']);
  assert.deepEqual(r, { ...r, data: 'hello', ended: true });
});

test('a chunked response delivered byte by byte, with trailers', async () => {
  const wire = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Checksum: abc\r\n\r\n';
  const srv = await startServer(async (_r, s) => {
    for (const ch of wire) {
      s.write(ch);
      await sleep(1);
    }
  });
  const ex = pool().request(`ep:${srv.port}`, target(srv.port), get());
  const res = await ex.response;
  assert.equal(res.trailers(), undefined, 'no trailers before the end');
  const b = await drain(res.body);
  assert.deepEqual(b, { data: 'hello world', ended: true });
  assert.deepEqual(res.trailers(), { 'x-checksum': 'abc' });
});

test('a response without framing runs until the connection closes', async () => {
  const srv = await startServer((_r, s) => s.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome data, then FIN'));
  const p = pool();
  const r = await fetch(p, srv.port);
  assert.deepEqual([r.data, r.ended], ['some data, then FIN', true]);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 2, 'a close-delimited response leaves nothing to reuse');
});

test('HEAD, 204 and 304 responses have no body whatever their Content-Length says', async () => {
  const srv = await startServer((req, s) => {
    if (req.method === 'HEAD') s.write('HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n');
    else if (req.path === '/204') s.write('HTTP/1.1 204 No Content\r\n\r\n');
    else s.write('HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: "x"\r\n\r\n');
  });
  const p = pool();
  const head = await fetch(p, srv.port, get('/', { method: 'HEAD' }));
  assert.deepEqual([head.res.status, head.res.headers['content-length'], head.data, head.ended], [200, '1234', '', true]);
  const nc = await fetch(p, srv.port, get('/204'));
  assert.deepEqual([nc.res.status, nc.data, nc.ended], [204, '', true]);
  const nm = await fetch(p, srv.port, get('/304'));
  assert.deepEqual([nm.res.status, nm.res.headers['content-length'], nm.data, nm.ended], [304, '99', '', true]);
  assert.equal(srv.connections, 1, 'all three on one connection: none of them waited for a body');
});

test('interim 100 and 103 responses are skipped', async () => {
  const srv = await startServer((_r, s) => {
    s.write('HTTP/1.1 100 Continue\r\n\r\n');
    setTimeout(() => s.write('HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 10);
  });
  const r = await fetch(pool(), srv.port);
  assert.deepEqual([r.res.status, r.res.headers.link, r.data, r.ended], [200, undefined, 'ok', true]);
});

test('a malformed status line or an unsolicited 101 rejects with Reset', async () => {
  const srv = await startServer((req, s) => {
    if (req.path === '/101') s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n');
    else s.write('HTTP/1.1 2000 Nope\r\nContent-Length: 0\r\n\r\n');
  });
  const p = pool();
  const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get()).response);
  assert.equal(e.code, 'Reset');
  assert.match(e.message, /invalid response: malformed status line/);
  const e2 = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get('/101')).response);
  assert.equal(e2.code, 'Reset');
});

test('a bad chunk size closes the body without end', async () => {
  const srv = await startServer((_r, s) => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\nmore\r\n'));
  const r = await fetch(pool(), srv.port);
  assert.equal(r.data, 'abc');
  assert.equal(r.ended, false);
  assert.equal(r.res.trailers(), undefined);
});

test('Transfer-Encoding with Content-Length, a non-chunked coding, or conflicting lengths are rejected', async () => {
  const answers: Record<string, string> = {
    '/te-cl': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    '/gzip': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n',
    '/cl-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
    '/cl-bad': 'HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc',
  };
  const srv = await startServer((req, s) => s.write(answers[req.path]));
  const p = pool();
  for (const path of Object.keys(answers)) {
    const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get(path)).response);
    assert.equal(e.code, 'Reset', path);
    assert.match(e.message, /invalid response/, path);
  }
  // Identical repeated lengths are fine.
  const srv2 = await startServer((_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc'));
  const ok = await fetch(p, srv2.port);
  assert.deepEqual([ok.data, ok.ended], ['abc', true]);
  assert.equal(ok.res.headers['content-length'], '3', 'passed on as one value');
});

test('sequential requests reuse one connection; connection: close forces a new one', async () => {
  const srv = await startServer((req, s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${req.path === '/close' ? 'Connection: close\r\n' : ''}\r\nok`));
  const p = pool();
  await fetch(p, srv.port);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1);
  await fetch(p, srv.port, get('/close'));
  await fetch(p, srv.port);
  assert.equal(srv.connections, 2);
  // HTTP/1.0 closes unless it says keep-alive.
  const srv10 = await startServer((_r, s) => s.write('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  await fetch(p, srv10.port);
  await fetch(p, srv10.port);
  assert.equal(srv10.connections, 2);
});

test('maxRequestsPerConnection retires a connection after that many requests', async () => {
  const srv = await startServer((_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  const p = pool({ maxRequestsPerConnection: 2 });
  await fetch(p, srv.port);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 2);
});

test('maxConnections queues requests beyond it and serves them in turn', async () => {
  const srv = await startServer((_r, s) => setTimeout(() => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 20));
  const p = pool({ maxConnections: 1 });
  const rs = await Promise.all([1, 2, 3].map((i) => fetch(p, srv.port, get(`/${i}`))));
  assert.deepEqual(
    rs.map((r) => [r.res.status, r.data, r.ended]),
    [1, 2, 3].map(() => [200, 'ok', true]),
  );
  assert.equal(srv.maxOpen, 1);
  assert.equal(srv.connections, 1);
  assert.deepEqual(
    srv.requests.map((r) => r.path),
    ['/1', '/2', '/3'],
  );
});

test('maxConnections: a connection that closes lets a waiting request open a new one', async () => {
  const srv = await startServer((_r, s) => setTimeout(() => s.end('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok'), 20));
  const p = pool({ maxConnections: 1 });
  for (const c of clientSockets) c.destroy();
  maxLiveClients = 0;
  const rs = await Promise.all([1, 2, 3].map((i) => fetch(p, srv.port, get(`/${i}`))));
  assert.deepEqual(
    rs.map((r) => r.data),
    ['ok', 'ok', 'ok'],
  );
  assert.equal(srv.connections, 3);
  assert.equal(maxLiveClients, 1, 'each new connection was opened only once the previous one was gone');
});

test('an idle connection is closed after idleTimeoutMs', async () => {
  const srv = await startServer((_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  const p = pool({ idleTimeoutMs: 100 });
  await fetch(p, srv.port);
  await sleep(30);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1);
  const deadline = Date.now() + 2000;
  while (srv.closed === 0 && Date.now() < deadline) await sleep(10);
  assert.equal(srv.closed, 1);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 2);
});

test('a response that ends before the request body does leaves a connection that is not reused', async () => {
  let seenHead = 0;
  const srv = await startServer(
    (_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'),
    (sock) => {
      if (seenHead > 0) return false;
      // The first connection answers as soon as the head is in, without reading the body.
      sock.once('data', () => {
        seenHead++;
        sock.write('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\n\r\nbig');
      });
      return true;
    },
  );
  const p = pool();
  const ex = p.request(`ep:${srv.port}`, target(srv.port), { method: 'POST', path: '/up', authority: 'svc', headers: { 'content-length': '10' }, hasBody: true });
  ex.requestBody.write(Buffer.from('12345'));
  const res = await ex.response;
  const b = await drain(res.body);
  assert.deepEqual([res.status, b.data, b.ended], [413, 'big', true]);
  ex.requestBody.end(Buffer.from('67890'));
  ex.abort();
  const r = await fetch(p, srv.port);
  assert.equal(r.data, 'ok');
  assert.equal(srv.connections, 2);
});

test('an endpoint closing a kept-alive connection as the next request arrives: reusedConnection', async () => {
  const srv = await startServer((_r, s, n) => {
    if (n === 0) s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    else s.destroy();
  });
  const p = pool();
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1);
  const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get('/again')).response);
  assert.equal(e.code, 'Reset');
  assert.equal(e.reusedConnection, true);
  // A first request on a fresh connection is not a reuse race.
  const srv2 = await startServer((_r, s) => s.destroy());
  const e2 = await rejection(p.request(`ep:${srv2.port}`, target(srv2.port), get()).response);
  assert.equal(e2.reusedConnection, false);
});

test('a 50 KiB response head is accepted; one beyond maxResponseHeadBytes is not', async () => {
  const big = 'a'.repeat(50 * 1024);
  const srv = await startServer((req, s) => s.write(`HTTP/1.1 200 OK\r\nX-Big: ${req.path === '/huge' ? big + big : big}\r\nContent-Length: 2\r\n\r\nok`));
  const p = pool();
  const r = await fetch(p, srv.port);
  assert.equal(r.res.headers['x-big'], big);
  assert.equal(r.data, 'ok');
  const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get('/huge')).response);
  assert.match(e.message, /too large/);
  const small = pool({ maxResponseHeadBytes: 1024 });
  const e2 = await rejection(small.request(`ep:${srv.port}`, target(srv.port), get()).response);
  assert.match(e2.message, /too large/);
});

test('connection errors before the head reject; mid-body they close the body without end', async () => {
  const srv = await startServer((req, s) => {
    if (req.path === '/cut') {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      setTimeout(() => s.destroy(), 20);
    } else s.end('HTTP/1.1 200 OK\r\nContent-Le');
  });
  const p = pool();
  const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get()).response);
  assert.equal(e.code, 'Reset');
  assert.match(e.message, /^upstream reset/);
  const r = await fetch(p, srv.port, get('/cut'));
  assert.deepEqual([r.data, r.ended], ['partial', false]);
});

test('a connect failure rejects with connectError', async () => {
  const failing: UpstreamConnector = { connect: () => Promise.reject(Object.assign(new Error('no route'), { code: 'ConnectFailed' })) };
  const p = new Http1Pool(failing, { connectTimeoutMs: 100, maxConnections: 0, maxRequestsPerConnection: 0, idleTimeoutMs: 1000 });
  const e = await rejection(p.request('ep:1', target(1), get()).response);
  assert.equal(e.code, 'ConnectFailed');
  assert.match(e.message, /no route/);
});

test('abort: mid-body closes the body without end; after completion it leaves the pooled connection alone', async () => {
  const srv = await startServer((req, s) => {
    if (req.path === '/slow') s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst');
    else s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  const p = pool();
  const done = await fetch(p, srv.port);
  done.ex.abort();
  done.ex.abort();
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1, 'a late abort must not destroy the connection it no longer owns');
  const ex = p.request(`ep:${srv.port}`, target(srv.port), get('/slow'));
  const res = await ex.response;
  const body = drain(res.body);
  await sleep(20);
  ex.abort();
  ex.abort();
  assert.deepEqual(await body, { data: 'first', ended: false });
  // Aborted before the response: the promise rejects rather than hanging.
  const silent = await startServer(() => {});
  const ex2 = p.request(`ep:${silent.port}`, target(silent.port), get());
  await sleep(20);
  ex2.abort();
  assert.equal((await rejection(ex2.response)).code, 'Reset');
});

test('configure() with new options and retain() drop idle connections', async () => {
  const srv = await startServer((_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  const opts: Http1PoolOptions = { connectTimeoutMs: 2000, maxConnections: 0, maxRequestsPerConnection: 0, idleTimeoutMs: 10_000 };
  const p = new Http1Pool(connector, opts);
  pools.push(p);
  await fetch(p, srv.port);
  p.configure({ ...opts });
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1, 'unchanged options keep the pool');
  p.configure({ ...opts, maxConnections: 5 });
  await fetch(p, srv.port);
  assert.equal(srv.connections, 2);
  p.retain(new Set(['other']));
  const deadline = Date.now() + 2000;
  while (srv.closed < 2 && Date.now() < deadline) await sleep(10);
  assert.equal(srv.closed, 2);
});

test('the request as it goes on the wire: request line, host, framing', async () => {
  const firstData: string[] = [];
  const srv = await startServer(
    (_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
    (sock) => {
      sock.once('data', (d: Buffer) => firstData.push(d.toString('latin1')));
      return false;
    },
  );
  const p = pool();
  await fetch(p, srv.port, get('/p?q=1', { headers: { host: 'ignored', 'x-a': '1', 'x-multi': ['a', 'b'] } }));
  await fetch(p, srv.port, { method: 'POST', path: '/cl', authority: 'svc:8080', headers: { 'content-type': 'text/plain', 'content-length': '8' }, hasBody: true }, ['hell', 'o wo']);
  await fetch(p, srv.port, { method: 'PUT', path: '/chunked', authority: 'svc', headers: { 'transfer-encoding': 'chunked' }, hasBody: true }, ['hello', '', 'abc']);
  await fetch(p, srv.port, { method: 'POST', path: '/empty', authority: 'svc', headers: {}, hasBody: false });
  await fetch(p, srv.port, { method: 'DELETE', path: '/d', authority: 'svc', headers: {}, hasBody: false });
  await fetch(p, srv.port, { method: 'PATCH', path: '/e', authority: 'svc', headers: {}, hasBody: true }, []);
  assert.deepEqual(
    srv.requests.map((r) => r.raw),
    [
      'GET /p?q=1 HTTP/1.1\r\nhost: svc.test\r\nx-a: 1\r\nx-multi: a\r\nx-multi: b\r\n\r\n',
      'POST /cl HTTP/1.1\r\nhost: svc:8080\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n\r\nhello wo',
      'PUT /chunked HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n',
      'POST /empty HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n',
      'DELETE /d HTTP/1.1\r\nhost: svc\r\n\r\n',
      'PATCH /e HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    ],
  );
  assert.equal(srv.connections, 1);
  // The head and the first body chunk leave in one write.
  const srv2 = await startServer(
    (_r, s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
    (sock) => {
      sock.once('data', (d: Buffer) => firstData.push(d.toString('latin1')));
      return false;
    },
  );
  firstData.length = 0;
  await fetch(p, srv2.port, { method: 'POST', path: '/cl', authority: 'svc', headers: { 'content-length': '5' }, hasBody: true }, ['hello']);
  assert.equal(firstData[0], 'POST /cl HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\n\r\nhello');
});

test('a slow upload gets its head out before the first body chunk', async () => {
  let got = '';
  const srv = await startServer(
    () => {},
    (sock) => {
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      return false;
    },
  );
  const p = pool();
  const ex = p.request(`ep:${srv.port}`, target(srv.port), { method: 'POST', path: '/slow', authority: 'svc', headers: {}, hasBody: true });
  const deadline = Date.now() + 2000;
  while (got === '' && Date.now() < deadline) await sleep(5);
  assert.equal(got, 'POST /slow HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n');
  ex.requestBody.end(Buffer.from('x'));
  while (srv.requests.length === 0 && Date.now() < deadline) await sleep(5);
  assert.equal(srv.requests[0]?.raw, 'POST /slow HTTP/1.1\r\nhost: svc\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n');
  ex.abort();
});

test('a Content-Length body longer or shorter than declared aborts the exchange', async () => {
  const srv = await startServer(() => {});
  const p = pool();
  const long = p.request(`ep:${srv.port}`, target(srv.port), { method: 'POST', path: '/', authority: 'svc', headers: { 'content-length': '3' }, hasBody: true });
  long.requestBody.end(Buffer.from('toolong'));
  assert.match((await rejection(long.response)).message, /longer/);
  const short = p.request(`ep:${srv.port}`, target(srv.port), { method: 'POST', path: '/', authority: 'svc', headers: { 'content-length': '30' }, hasBody: true });
  short.requestBody.end(Buffer.from('short'));
  assert.match((await rejection(short.response)).message, /shorter/);
});

test('a head that cannot be sent fails the exchange without touching the endpoint', async () => {
  const srv = await startServer(() => {});
  const p = pool();
  const e = await rejection(p.request(`ep:${srv.port}`, target(srv.port), get('/', { headers: { 'x-bad': 'a\r\nx-injected: 1' } })).response);
  assert.equal(e.code, 'Reset');
  assert.equal(srv.connections, 0);
});

test('a large response body streams with backpressure', async () => {
  const chunk = 'x'.repeat(64 * 1024);
  const total = 64;
  const srv = await startServer((_r, s) => {
    s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${chunk.length * total}\r\n\r\n`);
    for (let i = 0; i < total; i++) s.write(chunk);
  });
  const p = pool();
  const ex = p.request(`ep:${srv.port}`, target(srv.port), get());
  const res = await ex.response;
  // Nobody reads for a while: the body must buffer only up to its high-water mark (plus a socket read).
  await sleep(100);
  assert.ok(res.body.readableLength < 1024 * 1024, `buffered ${res.body.readableLength}`);
  let n = 0;
  res.body.on('data', (c: Buffer) => (n += c.length));
  await new Promise((r) => res.body.once('end', r));
  assert.equal(n, chunk.length * total);
  await fetch(p, srv.port);
  assert.equal(srv.connections, 1);
});

test('a body that came with its head is handed over whole; one still arriving streams', async () => {
  const srv = await startServer((req, s) => {
    if (req.path === '/whole') s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    else {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello');
      setTimeout(() => s.write('world'), 30);
    }
  });
  const p = pool();
  const whole = await p.request('e', target(srv.port), get('/whole')).response;
  assert.equal(whole.whole?.toString(), 'hello');
  // Asking for the stream anyway still gets the same bytes.
  assert.deepEqual(await drain(whole.body), { data: 'hello', ended: true });
  const streamed = await p.request('e', target(srv.port), get('/later')).response;
  assert.equal(streamed.whole, undefined);
  assert.deepEqual(await drain(streamed.body), { data: 'helloworld', ended: true });
  assert.equal(srv.connections, 1, 'the connection was reused after the whole body');
});

test('a connection closing after its idle timeout is never handed another request', async () => {
  // The endpoint never closes its side: the closing connection lingers as long as it can.
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on('error', () => {});
    s.on('data', () => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const p = pool({ idleTimeoutMs: 50 });
    const first = await p.request('e', target(port), get()).response;
    assert.equal(first.status, 200);
    await sleep(120);
    const second = await p.request('e', target(port), get()).response;
    assert.deepEqual(await drain(second.body), { data: 'ok', ended: true });
    assert.equal(accepted.length, 2, 'the request went to a new connection');
  } finally {
    for (const s of accepted) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
