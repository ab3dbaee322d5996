import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { classify } from '../../waypoint/listener/protocol-detect';
import { requestIdOf, sanitizeRequestHeaders, stripHopByHop } from '../../waypoint/http/headers';
import { toTcpSpec, compileAuthz, peerAttributes } from '../../waypoint/http/filters/authz';
import { parseRateLimit, TokenBucket } from '../../waypoint/http/filters/rate-limit';
import { rewritePath } from '../../waypoint/http/filters/header-mutation';
import { redirectLocation } from '../../waypoint/http/filters/redirect';
import { decideFault } from '../../waypoint/http/filters/fault';
import { parseGrpcTimeout } from '../../waypoint/http/router';
import { RequestBody } from '../../waypoint/http/request-body';
import { tunnelKey } from '../../waypoint/engine';
import { effectivePolicy } from '../../waypoint/upstream/cluster';
import type { AuthorizationPolicySpec } from '../../lib/api/kinds/security';
import type { DestinationRuleSpec } from '../../lib/api/kinds/networking';
import { seededRandom } from '../../waypoint/upstream/weighted-pick';

test('protocol detection: h2 preface, HTTP/1 request lines, anything else is TCP', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');
  assert.equal(classify(b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'http2');
  assert.equal(classify(b('PRI * HTTP/2')), undefined, 'a partial preface waits');
  assert.equal(classify(b('GET / HTTP/1.1\r\n')), 'http1');
  assert.equal(classify(b('GET / HTTP/1.1\n')), 'http1', 'bare LF is left to llhttp to refuse');
  assert.equal(classify(b('GE')), undefined);
  assert.equal(classify(b('\x16\x03\x01\x02\x00')), 'tcp', 'TLS ClientHello');
  assert.equal(classify(b('\x00\x00\x00\x08\x04\xd2\x16\x2f')), 'tcp', 'postgres startup');
  assert.equal(classify(b('HELLO world\r\n')), 'tcp', 'a line that is not a request line');
  assert.equal(classify(b('A'.repeat(9000))), 'tcp', 'no line within the peek limit');
  assert.equal(classify(b(`GET /${'a'.repeat(9000)}`)), 'http1', 'a request line longer than the peek window is still HTTP (the parser answers 414/431)');
  assert.equal(classify(b(`GET /a b${'a'.repeat(9000)}`)), 'tcp', 'a space inside the would-be target is not a request line');
  assert.equal(classify(b('\r\nGET / HTTP/1.1\r\n')), 'http1', 'empty lines before the request line are ignored (RFC 9112 2.2)');
  assert.equal(classify(b('\r\n\n\r\nPOST /x HTTP/1.0\r\n')), 'http1');
  assert.equal(classify(b('\r\n\r\n')), undefined, 'only empty lines so far: wait');
  assert.equal(classify(b('\r\n'.repeat(5000))), 'tcp', 'empty lines up to the peek limit');
  assert.equal(classify(b('\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'tcp', 'the HTTP/2 preface counts only at the first byte');
});

test('hop-by-hop headers go, including those Connection names; te keeps only trailers', () => {
  const h: Record<string, string | string[]> = { connection: 'keep-alive, x-secret', 'keep-alive': 'timeout=5', 'x-secret': '1', 'proxy-authorization': 'x', te: 'trailers, deflate', upgrade: 'h2c', 'transfer-encoding': 'chunked', 'x-kept': 'y' };
  stripHopByHop(h);
  assert.deepEqual(h, { te: 'trailers', 'x-kept': 'y' });
  const ws: Record<string, string | string[]> = { connection: 'Upgrade', upgrade: 'websocket' };
  stripHopByHop(ws, { keepUpgrade: true });
  assert.deepEqual(ws, { upgrade: 'websocket', connection: 'upgrade' });
});

test('caller-supplied forwarding and mesh-internal headers are replaced', () => {
  const h: Record<string, string | string[]> = { 'x-forwarded-for': '1.2.3.4', 'x-forwarded-host': 'evil', 'x-envoy-retry-on': '5xx', 'x-ambit-source': 'x', forwarded: 'for=1.1.1.1', 'x-request-id': 'bad id with spaces', traceparent: 'caller', tracestate: 'congo=t61' };
  sanitizeRequestHeaders(h, { sourceAddress: '10.0.0.9', traceparent: '00-aa-bb-01', requestId: requestIdOf(h), continuesTrace: false });
  assert.equal(h.tracestate, undefined, "a new trace does not carry the caller's tracestate");
  assert.equal(h['x-forwarded-for'], '10.0.0.9');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], undefined);
  assert.equal(h['x-envoy-retry-on'], undefined);
  assert.equal(h['x-ambit-source'], undefined);
  assert.equal(h.forwarded, undefined);
  assert.equal(h.traceparent, '00-aa-bb-01');
  assert.notEqual(h['x-request-id'], 'bad id with spaces');
  assert.equal(requestIdOf({ 'x-request-id': 'abc-123' }), 'abc-123');
  // Envoy propagates other id formats too: AWS X-Ray style, base64.
  assert.equal(requestIdOf({ 'x-request-id': 'Root=1-5759e988-bd862e3fe1be46a994272793' }), 'Root=1-5759e988-bd862e3fe1be46a994272793');
  assert.equal(requestIdOf({ 'x-request-id': 'YWJjZGVm/Z2hp+aa==' }), 'YWJjZGVm/Z2hp+aa==');
  assert.notEqual(requestIdOf({ 'x-request-id': 'x'.repeat(300) }), 'x'.repeat(300));
  const kept: Record<string, string | string[]> = { tracestate: 'congo=t61' };
  sanitizeRequestHeaders(kept, { sourceAddress: '10.0.0.9', traceparent: '00-aa-bb-01', requestId: 'r', continuesTrace: true });
  assert.equal(kept.tracestate, 'congo=t61', 'a continued trace keeps it');
});

test('policies on opaque TCP fail closed', () => {
  const allowHttp: AuthorizationPolicySpec = { action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/x'] } }] }, { from: [{ source: { namespaces: ['a'] } }] }] };
  assert.deepEqual(toTcpSpec(allowHttp).rules, [{ from: [{ source: { namespaces: ['a'] } }] }]);
  const deny: AuthorizationPolicySpec = { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['a'], requestPrincipals: ['*'] } }], to: [{ operation: { methods: ['POST'], ports: ['80'] } }], when: [{ key: 'request.headers[x]', values: ['1'] }] }] };
  assert.deepEqual(toTcpSpec(deny).rules, [{ from: [{ source: { namespaces: ['a'] } }], to: [{ operation: { ports: ['80'] } }], when: undefined }]);
  assert.throws(() => compileAuthz([{ namespace: 'n', name: 'c', spec: { action: 'CUSTOM', rules: [{}] } }]), /AuthorizationPolicy\/n\/c/);
  assert.deepEqual(peerAttributes('spiffe://td/ns/shop/sa/web'), { principal: 'td/ns/shop/sa/web', namespace: 'shop' });
  assert.deepEqual(peerAttributes(null), { principal: null, namespace: null });
});

test('rate limit annotation and token bucket', () => {
  assert.deepEqual(parseRateLimit('100/s burst 20'), { perSecond: 100, burst: 20, source: '100/s burst 20' });
  assert.equal(parseRateLimit('60/m').perSecond, 1);
  assert.throws(() => parseRateLimit('lots'), /ambit.io\/local-rate-limit/);
  let t = 0;
  const b = new TokenBucket(parseRateLimit('2/s burst 2'), () => t);
  assert.deepEqual([b.tryTake(), b.tryTake(), b.tryTake()], [true, true, false]);
  t += 500;
  assert.deepEqual([b.tryTake(), b.tryTake()], [true, false]);
});

test('path rewrites and redirects', () => {
  assert.equal(rewritePath('/api/items?x=1', { type: 'ReplacePrefixMatch', prefix: '/api', value: '/v1' }), '/v1/items?x=1');
  assert.equal(rewritePath('/api/items', { type: 'ReplacePrefixMatch', prefix: '/api', value: '/' }), '/items');
  assert.equal(rewritePath('/api', { type: 'ReplacePrefixMatch', prefix: '/api', value: '/' }), '/');
  assert.equal(rewritePath('/a?q', { type: 'ReplaceFullPath', value: '/b' }), '/b?q');
  // An empty replacement (allowed by the Gateway API's table) and a case-insensitive match (ignoreUriCase).
  assert.equal(rewritePath('/foo/bar', { type: 'ReplacePrefixMatch', prefix: '/foo', value: '' }), '/bar');
  assert.equal(rewritePath('/foo', { type: 'ReplacePrefixMatch', prefix: '/foo', value: '' }), '/');
  assert.equal(rewritePath('/api/users', { type: 'ReplacePrefixMatch', prefix: '/API/', value: '/v2/', ignoreCase: true }), '/v2/users');
  assert.equal(rewritePath('/api/users', { type: 'ReplacePrefixMatch', prefix: '/API/', value: '/v2/' }), '/api/users');
  const at = (authority: string, listenerPort = 80) => ({ authority, pathAndQuery: '/x', scheme: 'http', listenerPort });
  assert.equal(redirectLocation({ statusCode: 301, scheme: 'https' }, at('web:80')), 'https://web/x');
  assert.equal(redirectLocation({ statusCode: 302, hostname: 'other', port: 8080 }, at('web')), 'http://other:8080/x');
  // Gateway API: no scheme and no port means the listener's (service) port; a scheme brings its default.
  assert.equal(redirectLocation({ statusCode: 302, hostname: 'example.com', listenerPort: true }, at('reviews:9080', 9080)), 'http://example.com:9080/x');
  assert.equal(redirectLocation({ statusCode: 302, listenerPort: true }, at('reviews', 9080)), 'http://reviews:9080/x');
  assert.equal(redirectLocation({ statusCode: 302, listenerPort: true }, at('reviews', 80)), 'http://reviews/x');
  assert.equal(redirectLocation({ statusCode: 302, scheme: 'https', listenerPort: true }, at('reviews:9080', 9080)), 'https://reviews/x');
  // Istio: FROM_PROTOCOL_DEFAULT drops the request's port; FROM_REQUEST_PORT keeps it.
  assert.equal(redirectLocation({ statusCode: 301, derivePort: 'FROM_PROTOCOL_DEFAULT' }, at('reviews:9080', 9080)), 'http://reviews/x');
  assert.equal(redirectLocation({ statusCode: 301, derivePort: 'FROM_REQUEST_PORT', hostname: 'b' }, at('reviews:9080', 9080)), 'http://b:9080/x');
  assert.equal(redirectLocation({ statusCode: 301, derivePort: 'FROM_REQUEST_PORT', hostname: 'b' }, at('reviews', 9080)), 'http://b:9080/x');
});

test('fault decisions follow the percentages', () => {
  const r = seededRandom(7);
  let aborts = 0;
  for (let i = 0; i < 10_000; i++) if (decideFault({ abort: { status: 503, percent: 12.5 } }, r)?.abort) aborts++;
  assert.ok(Math.abs(aborts / 10_000 - 0.125) < 0.02, `${aborts}`);
  assert.equal(decideFault(undefined, r), null);
});

test('grpc-timeout parsing', () => {
  assert.equal(parseGrpcTimeout('100m'), 100);
  assert.equal(parseGrpcTimeout('2S'), 2000);
  assert.equal(parseGrpcTimeout('1H'), 3_600_000);
  assert.equal(parseGrpcTimeout('500u'), 1);
  assert.equal(parseGrpcTimeout('abc'), undefined);
  assert.equal(parseGrpcTimeout('123456789S'), undefined, 'at most 8 digits');
});

test('tunnel authorities', () => {
  assert.deepEqual(tunnelKey('10.0.0.1:80'), { key: '10.0.0.1:80', host: '10.0.0.1', port: 80 });
  assert.deepEqual(tunnelKey('[fd00::1]:443'), { key: '[fd00::1]:443', host: 'fd00::1', port: 443 });
  assert.equal(tunnelKey('Web.NS.svc.cluster.local.:8080')?.key, 'web.ns.svc.cluster.local:8080');
  for (const bad of ['10.0.0.1', ':80', 'x:0', 'x:99999', '[::1]80', 'x:8a']) assert.equal(tunnelKey(bad), null, bad);
});

test('DestinationRule merge: rule, port level, subset, subset port level', () => {
  const dr: DestinationRuleSpec = {
    host: 'r',
    trafficPolicy: { loadBalancer: { simple: 'RANDOM' }, connectionPool: { tcp: { maxConnections: 5 } }, portLevelSettings: [{ port: { number: 80 }, loadBalancer: { simple: 'ROUND_ROBIN' } }] },
    subsets: [{ name: 'v2', labels: { version: 'v2' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 } } } }],
  } as DestinationRuleSpec;
  assert.deepEqual(effectivePolicy(dr, 80, undefined).policy.loadBalancer, { simple: 'ROUND_ROBIN' });
  assert.deepEqual(effectivePolicy(dr, 81, undefined).policy.loadBalancer, { simple: 'RANDOM' });
  const v2 = effectivePolicy(dr, 80, 'v2');
  assert.deepEqual(v2.subsetLabels, { version: 'v2' });
  assert.deepEqual(v2.policy.connectionPool, { tcp: { maxConnections: 1 } });
  assert.equal(effectivePolicy(dr, 80, 'v3').subsetLabels, null);
});

class Collect extends Writable {
  data: Buffer[] = [];
  ended = false;
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void) {
    this.data.push(c);
    cb();
  }
  override _final(cb: () => void) {
    this.ended = true;
    cb();
  }
}

test('request body: replayed for a retry within the bound, never beyond it', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 10);
  const first = new Collect();
  assert.equal(body.attach(first), true);
  src.write(Buffer.from('hello'));
  await new Promise((r) => setImmediate(r));
  body.detach();
  const second = new Collect();
  assert.equal(body.attach(second), true);
  src.end(Buffer.from('!!'));
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(second.data).toString(), 'hello!!');
  assert.ok(second.ended);
  assert.equal(body.replayable, true);
  const late = teeCollector();
  body.tee(late);
  assert.deepEqual([late.text(), late.state], ['hello!!', 'ended'], 'a copy taken after the end gets the kept body');

  const src2 = new PassThrough();
  const big = new RequestBody(src2, 4);
  assert.equal(big.attach(new Collect()), true);
  src2.write(Buffer.from('too long'));
  await new Promise((r) => setImmediate(r));
  assert.equal(big.replayable, false);
  big.detach();
  assert.equal(big.attach(new Collect()), false, 'a body that was not kept cannot be sent again');
  const lateBig = teeCollector();
  big.tee(lateBig);
  assert.equal(lateBig.state, 'aborted', 'a copy that would miss bytes is refused, not sent short');
});

function teeCollector() {
  const chunks: Buffer[] = [];
  const t = {
    state: 'open' as 'open' | 'ended' | 'aborted',
    write: (c: Buffer) => void chunks.push(c),
    end: () => void (t.state = 'ended'),
    abort: () => void (t.state = 'aborted'),
    text: () => Buffer.concat(chunks).toString(),
  };
  return t;
}

test('request body: a copy registered before reading gets every byte, beyond the retry bound, and is aborted if the body is abandoned', async () => {
  const src = new PassThrough();
  const body = new RequestBody(src, 4);
  const copy = teeCollector();
  body.tee(copy);
  const primary = new Collect();
  assert.equal(body.attach(primary), true);
  src.write(Buffer.from('more than '));
  src.end(Buffer.from('four bytes'));
  await new Promise((r) => setImmediate(r));
  assert.equal(body.replayable, false);
  assert.deepEqual([copy.text(), copy.state], ['more than four bytes', 'ended']);
  assert.equal(Buffer.concat(primary.data).toString(), 'more than four bytes');

  const src2 = new PassThrough();
  const abandoned = new RequestBody(src2, 1024);
  const copy2 = teeCollector();
  abandoned.tee(copy2);
  abandoned.attach(new Collect());
  src2.write(Buffer.from('part'));
  await new Promise((r) => setImmediate(r));
  abandoned.dispose();
  assert.equal(copy2.state, 'aborted');
});
