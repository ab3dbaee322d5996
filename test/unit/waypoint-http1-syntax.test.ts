import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkedDecoder, findHeadEnd, parseRequestHead, parseResponseHead, serializeFields } from '../../waypoint/http/http1-syntax';

const head = (lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

test('a plain request head is parsed: Host kept apart, names lower-cased, values trimmed', () => {
  const h = parseRequestHead(head(['POST /a?b=1 HTTP/1.1', 'Host: web:8080', 'Content-Length: 5', 'X-Thing:  v \t', 'Connection: close']), 100);
  assert.ok(h);
  assert.equal(h.method, 'POST');
  assert.equal(h.target, '/a?b=1');
  assert.equal(h.authority, 'web:8080');
  // Connection is this hop's: read for `close`, kept out of the map.
  assert.deepEqual(h.headers, { 'content-length': '5', 'x-thing': 'v' });
  assert.equal(h.count, 4);
  assert.equal(h.contentLength, 5);
  assert.equal(h.close, true);
});

test('a Connection field that names other fields stays in the map, so they are stripped as hop-by-hop', () => {
  const h = parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: keep-alive, X-Secret', 'X-Secret: s', 'Keep-Alive: timeout=5']), 100);
  assert.ok(h);
  assert.equal(h.close, false);
  assert.equal(h.headers.connection, 'keep-alive, X-Secret');
  assert.equal(h.headers['keep-alive'], undefined);
  assert.equal(h.headers['x-secret'], 's');
  assert.equal(parseRequestHead(head(['GET / HTTP/1.1', 'Host: a', 'Connection: close', 'Connection: close']), 100), null, 'a repeated Connection goes to node:http');
});

test('anything outside the fast subset is left to node:http (null), never guessed at', () => {
  const cases: Record<string, string[]> = {
    'HTTP/1.0': ['GET / HTTP/1.0', 'Host: a'],
    'no Host': ['GET / HTTP/1.1', 'X: y'],
    'two Hosts': ['GET / HTTP/1.1', 'Host: a', 'Host: b'],
    'Transfer-Encoding': ['POST / HTTP/1.1', 'Host: a', 'Transfer-Encoding: chunked'],
    'CL and TE': ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Transfer-Encoding: chunked'],
    'duplicate Content-Length': ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3', 'Content-Length: 3'],
    'signed Content-Length': ['POST / HTTP/1.1', 'Host: a', 'Content-Length: +3'],
    'Content-Length with a list': ['POST / HTTP/1.1', 'Host: a', 'Content-Length: 3, 3'],
    'Expect': ['POST / HTTP/1.1', 'Host: a', 'Expect: 100-continue', 'Content-Length: 3'],
    'Upgrade': ['GET / HTTP/1.1', 'Host: a', 'Upgrade: websocket', 'Connection: Upgrade'],
    'Connection: upgrade alone': ['GET / HTTP/1.1', 'Host: a', 'Connection: upgrade'],
    'absolute-form target': ['GET http://a/ HTTP/1.1', 'Host: a'],
    'asterisk target': ['OPTIONS * HTTP/1.1', 'Host: a'],
    'unknown method': ['BREW / HTTP/1.1', 'Host: a'],
    'lower-case method': ['get / HTTP/1.1', 'Host: a'],
    'CONNECT': ['CONNECT a:443 HTTP/1.1', 'Host: a'],
    'space before colon': ['GET / HTTP/1.1', 'Host : a'],
    'obs-fold': ['GET / HTTP/1.1', 'Host: a', 'X: one', ' two'],
    'control character in a value': ['GET / HTTP/1.1', 'Host: a', 'X: a\u0001b'],
    'non-ASCII target': ['GET /\u00e9 HTTP/1.1', 'Host: a'],
    'extra space in request line': ['GET  / HTTP/1.1', 'Host: a'],
    'repeated field': ['GET / HTTP/1.1', 'Host: a', 'Cookie: a=1', 'Cookie: b=2'],
  };
  for (const [name, lines] of Object.entries(cases)) assert.equal(parseRequestHead(head(lines), 100), null, name);
  const many = ['GET / HTTP/1.1', 'Host: a', ...Array.from({ length: 10 }, (_, i) => `X-${i}: v`)];
  assert.ok(parseRequestHead(head(many), 11));
  assert.equal(parseRequestHead(head(many), 10), null, 'more fields than the limit');
});

test('findHeadEnd: complete, incomplete, bare LF and the size limit', () => {
  const b = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY');
  assert.equal(findHeadEnd(b, 0, 1000), b.length - 4);
  assert.equal(findHeadEnd(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n'), 0, 1000), -1);
  assert.equal(findHeadEnd(Buffer.from('GET / HTTP/1.1\nHost: a\r\n\r\n'), 0, 1000), -2);
  assert.equal(findHeadEnd(Buffer.from('GET / HTTP/1.1\r\nHost: a\n\n'), 0, 1000), -2);
  assert.equal(findHeadEnd(b, 0, 10), -1, 'the end lies beyond the limit');
});

test('response heads: status line, repeated fields as arrays, HTTP/1.0', () => {
  const r = parseResponseHead(head(['HTTP/1.1 201 Created', 'Set-Cookie: a=1', 'Set-Cookie: b=2', 'Content-Length: 0']));
  assert.ok(!('error' in r));
  assert.equal(r.status, 201);
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(r.http10, false);
  const hop = parseResponseHead(head(['HTTP/1.1 200 OK', 'Connection: keep-alive', 'Keep-Alive: timeout=5', 'Transfer-Encoding: gzip', 'Transfer-Encoding: chunked', 'X-A: 1']));
  assert.ok(!('error' in hop));
  assert.deepEqual(hop.headers, { 'x-a': '1' });
  assert.deepEqual(hop.hop, { connection: ['keep-alive'], transferEncoding: ['gzip', 'chunked'] });
  const named = parseResponseHead(head(['HTTP/1.1 200 OK', 'Connection: close, X-Internal', 'X-Internal: 1']));
  assert.ok(!('error' in named));
  assert.equal(named.headers.connection, 'close, X-Internal');
  const r10 = parseResponseHead(head(['HTTP/1.0 200']));
  assert.ok(!('error' in r10) && r10.http10);
  for (const bad of ['HTTP/1.1 20 OK', 'HTTP/2 200 OK', 'HTTP/1.1 200 OK\u0000', 'ICY 200 OK']) assert.ok('error' in parseResponseHead(head([bad])), bad);
  assert.ok('error' in parseResponseHead(head(['HTTP/1.1 200 OK', 'Bad Name: x'])));
});

test('chunked bodies decode whole or one byte at a time, with extensions and trailers', () => {
  const wire = Buffer.from('5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nGrpc-Status: 0\r\nX-T: y\r\n\r\nNEXT');
  for (const step of [wire.length, 1, 3]) {
    const d = new ChunkedDecoder(1024);
    const out: Buffer[] = [];
    let used = 0;
    for (let i = 0; i < wire.length && !d.done; i += step) {
      const part = wire.subarray(i, Math.min(wire.length, i + step));
      const n = d.feed(part, (c) => out.push(Buffer.from(c)));
      assert.notEqual(n, -1, d.error);
      used += n;
    }
    assert.ok(d.done, `step ${step}`);
    assert.equal(Buffer.concat(out).toString(), 'hello0123456789');
    assert.deepEqual(d.trailers, { 'grpc-status': '0', 'x-t': 'y' });
    assert.equal(wire.subarray(used).toString(), 'NEXT', `step ${step}: the next message is left alone`);
  }
});

test('chunked framing errors are refused, not skipped', () => {
  const bad = {
    'non-hex size': 'zz\r\nhello\r\n0\r\n\r\n',
    'negative size': '-5\r\nhello\r\n0\r\n\r\n',
    'size with spaces': '5 \r\nhello\r\n0\r\n\r\n',
    'huge size': 'fffffffffffffff\r\n',
    'missing CRLF after data': '5\r\nhelloX\r\n0\r\n\r\n',
    'bare LF': '5\nhello\r\n0\r\n\r\n',
    'bad trailer': '0\r\nBad Name: x\r\n\r\n',
  };
  for (const [name, text] of Object.entries(bad)) {
    const d = new ChunkedDecoder(1024);
    assert.equal(d.feed(Buffer.from(text), () => {}), -1, name);
    assert.ok(d.error.length > 0, name);
  }
  const big = new ChunkedDecoder(16);
  assert.equal(big.feed(Buffer.from(`0\r\nX: ${'a'.repeat(64)}\r\n\r\n`), () => {}), -1, 'trailers over the limit');
});

test('serialized fields never carry a line break, a bad name or a character beyond one byte', () => {
  const out = serializeFields(
    { 'x-ok': 'v', 'x-lf': 'a\nb', 'x-wide': 'a\u010Ab', 'bad name': 'v', 'x-list': ['1', 'x\r\ny: z', '2'], host: 'h' },
    new Set(['host']),
  );
  assert.equal(out, 'x-ok: v\r\nx-list: 1\r\nx-list: 2\r\n');
});
