import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Counter, Histogram, Registry, type RegistryContentType } from 'prom-client';
import type { WorkloadView } from '../../lib/mesh/snapshot';
import { MtlsMode, TunnelProtocol } from '../../lib/api/workload-types';
import type { Logger } from '../../lib/telemetry/log';
import { WaypointTelemetry } from '../../waypoint/telemetry/request-telemetry';
import { BYTES_BUCKETS, DURATION_BUCKETS_MS, REQUEST_LABELS } from '../../waypoint/telemetry/metrics';
import { spanName } from '../../waypoint/telemetry/tracing';
import type { RequestInfo } from '../../waypoint/telemetry/types';
import { startOtlpReceiver } from '../helpers/waypoint-telemetry-otlp';

// ---------------------------------------------------------------------------------------------
// Fixtures

function workload(name: string, namespace: string, app: string, version: string, sa = name): WorkloadView {
  return {
    key: `wl/${namespace}/${name}`,
    ips: ['10.1.0.1'],
    identity: `spiffe://cluster.local/ns/${namespace}/sa/${sa}`,
    hbone: true,
    msg: {
      uid: `${namespace}/${name}`,
      name,
      namespace,
      serviceAccount: sa,
      node: 'node-a',
      addresses: [new Uint8Array([10, 1, 0, 1])],
      trustDomain: 'cluster.local',
      tunnelProtocol: TunnelProtocol.HBONE,
      canonicalName: app,
      canonicalRevision: version,
      services: {},
      authorizationPolicies: [],
      mtlsMode: MtlsMode.STRICT,
      portMtls: {},
      network: '',
      labels: { app, version },
    },
  };
}

const productpage = workload('productpage-v1-abc', 'bookinfo', 'productpage', 'v1', 'bookinfo-productpage');
const reviewsV2 = workload('reviews-v2-xyz', 'bookinfo', 'reviews', 'v2', 'bookinfo-reviews');
const PP_PRINCIPAL = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage';
const RV_PRINCIPAL = 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews';
const REVIEWS = { name: 'reviews', namespace: 'bookinfo', hostname: 'reviews.bookinfo.svc.cluster.local' };

function request(over: Partial<RequestInfo> = {}): RequestInfo {
  return {
    source: productpage,
    sourcePrincipal: PP_PRINCIPAL,
    sourceAddress: '10.1.0.1:43210',
    destinationService: REVIEWS,
    servicePort: 9080,
    protocol: 'http',
    method: 'GET',
    path: '/reviews/1?debug=1',
    authority: 'reviews.bookinfo.svc.cluster.local:9080',
    userAgent: 'curl/8.5.0',
    requestId: 'req-0001',
    ...over,
  };
}

/** A pino logger whose lines are kept in memory (pino writes synchronously to a plain write()). */
function capturedLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'info', base: { component: 'waypoint' } }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

function telemetry(opts: { otlpEndpoint?: string; sampleRatio?: number; registry?: Registry } = {}) {
  const registry = opts.registry ?? new Registry();
  const { log, lines } = capturedLogger();
  const t = new WaypointTelemetry({ registry, log, otlpEndpoint: opts.otlpEndpoint, sampleRatio: opts.sampleRatio, serviceName: 'waypoint.bookinfo' });
  return { t, registry, lines };
}

// ---------------------------------------------------------------------------------------------
// A small Prometheus text parser, enough for asserting on label sets and values

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function samples(registry: Registry, name: string, match: Record<string, string> = {}): Promise<PromSample[]> {
  return parseExposition(await registry.metrics()).filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

async function value(registry: Registry, name: string, match: Record<string, string> = {}): Promise<number | undefined> {
  const found = await samples(registry, name, match);
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(match)} matches ${found.length} series`);
  return found[0]?.value;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

// ---------------------------------------------------------------------------------------------
// Metrics

test('a closed request is counted with Istio labels taken from mesh metadata', async () => {
  const { t, registry } = telemetry();
  const r = t.start(request());
  r.setRoute('HTTPRoute/bookinfo/reviews#0');
  r.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  r.requestBytes = 123;
  r.responseBytes = 4567;
  r.close(200, '-');

  const total = await samples(registry, 'istio_requests_total');
  assert.equal(total.length, 1);
  assert.equal(total[0].value, 1);
  assert.deepEqual(total[0].labels, {
    reporter: 'waypoint',
    source_workload: 'productpage-v1-abc',
    source_workload_namespace: 'bookinfo',
    source_principal: PP_PRINCIPAL,
    source_app: 'productpage',
    source_version: 'v1',
    source_canonical_service: 'productpage',
    source_canonical_revision: 'v1',
    destination_workload: 'reviews-v2-xyz',
    destination_workload_namespace: 'bookinfo',
    destination_principal: RV_PRINCIPAL,
    destination_app: 'reviews',
    destination_version: 'v2',
    destination_service: 'reviews.bookinfo.svc.cluster.local',
    destination_service_name: 'reviews',
    destination_service_namespace: 'bookinfo',
    destination_canonical_service: 'reviews',
    destination_canonical_revision: 'v2',
    request_protocol: 'http',
    response_code: '200',
    grpc_response_status: '',
    response_flags: '-',
    connection_security_policy: 'mutual_tls',
  });
  assert.deepEqual(Object.keys(total[0].labels).sort(), [...REQUEST_LABELS].sort());

  // Histograms: cumulative buckets, +Inf, sum and count, all with the same label set.
  assert.equal(await value(registry, 'istio_request_bytes_bucket', { le: '100' }), 0);
  assert.equal(await value(registry, 'istio_request_bytes_bucket', { le: '1000' }), 1);
  assert.equal(await value(registry, 'istio_request_bytes_bucket', { le: '+Inf' }), 1);
  assert.equal(await value(registry, 'istio_request_bytes_sum'), 123);
  assert.equal(await value(registry, 'istio_request_bytes_count'), 1);
  assert.equal(await value(registry, 'istio_response_bytes_bucket', { le: '1000' }), 0);
  assert.equal(await value(registry, 'istio_response_bytes_bucket', { le: '10000' }), 1);
  assert.equal(await value(registry, 'istio_response_bytes_sum'), 4567);
  assert.equal(await value(registry, 'istio_request_duration_milliseconds_count'), 1);
  assert.equal(await value(registry, 'istio_request_duration_milliseconds_bucket', { le: '3600000' }), 1);
  const durationBuckets = await samples(registry, 'istio_request_duration_milliseconds_bucket');
  assert.deepEqual(
    durationBuckets.map((s) => s.labels.le),
    [...DURATION_BUCKETS_MS.map(String), '+Inf'],
  );
  for (const s of durationBuckets) assert.equal(s.labels.source_workload, 'productpage-v1-abc');
  const responseBuckets = await samples(registry, 'istio_response_bytes_bucket');
  assert.deepEqual(
    responseBuckets.map((s) => s.labels.le),
    [...BYTES_BUCKETS.map(String), '+Inf'],
  );
  // No TCP series for HTTP traffic.
  assert.equal((await samples(registry, 'istio_tcp_connections_opened_total')).length, 0);
});

test('close is idempotent: only the first call counts, logs and decides the code', async () => {
  const { t, registry, lines } = telemetry();
  const r = t.start(request());
  r.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  r.close(200, '-');
  r.close(503, 'UF');
  r.setDestination(undefined, null);
  assert.equal(await value(registry, 'istio_requests_total'), 1);
  assert.equal(await value(registry, 'istio_requests_total', { response_code: '200', destination_workload: 'reviews-v2-xyz' }), 1);
  assert.equal(await value(registry, 'istio_request_duration_milliseconds_count'), 1);
  assert.equal(lines.length, 1);
});

test('unknown source and destination are "unknown", without mTLS the policy is "none"', async () => {
  const { t, registry } = telemetry();
  const r = t.start(request({ source: undefined, sourcePrincipal: null }));
  r.close(503, 'UH');
  const [s] = await samples(registry, 'istio_requests_total');
  assert.ok(s);
  for (const k of REQUEST_LABELS.filter((l) => l.startsWith('source_') || (l.startsWith('destination_') && !l.startsWith('destination_service')))) {
    assert.equal(s.labels[k], 'unknown', k);
  }
  assert.equal(s.labels.destination_service, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(s.labels.connection_security_policy, 'none');
  assert.equal(s.labels.response_code, '503');
  assert.equal(s.labels.response_flags, 'UH');
  // A workload the mesh does not know but whose identity is proven: the namespace comes from its SPIFFE ID.
  const stranger = t.start(request({ source: undefined, sourcePrincipal: 'spiffe://cluster.local/ns/other/sa/caller' }));
  stranger.close(200, '-');
  assert.equal(await value(registry, 'istio_requests_total', { source_principal: 'spiffe://cluster.local/ns/other/sa/caller', source_workload: 'unknown' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { source_workload_namespace: 'other' }), 1);
});

test('requests with the same labels share a series; different codes or flags make new ones', async () => {
  const { t, registry } = telemetry();
  for (let i = 0; i < 3; i++) {
    const r = t.start(request());
    r.setDestination(reviewsV2, RV_PRINCIPAL);
    r.close(200, '-');
  }
  // Same metadata in a new snapshot (new view objects) must land in the same series.
  const again = t.start(request({ source: workload('productpage-v1-abc', 'bookinfo', 'productpage', 'v1', 'bookinfo-productpage') }));
  again.setDestination(workload('reviews-v2-xyz', 'bookinfo', 'reviews', 'v2', 'bookinfo-reviews'), RV_PRINCIPAL);
  again.close(200, '-');
  const failed = t.start(request());
  failed.setDestination(reviewsV2, RV_PRINCIPAL);
  failed.close(503, 'URX');
  assert.equal(await value(registry, 'istio_requests_total', { response_code: '200' }), 4);
  assert.equal(await value(registry, 'istio_requests_total', { response_code: '503', response_flags: 'URX' }), 1);
  assert.equal((await samples(registry, 'istio_requests_total')).length, 2);
});

test('a changed canonical revision in a new snapshot is picked up', async () => {
  const { t, registry } = telemetry();
  const r1 = t.start(request());
  r1.close(200, '-');
  const r2 = t.start(request({ source: workload('productpage-v1-abc', 'bookinfo', 'productpage', 'v1.1', 'bookinfo-productpage') }));
  r2.close(200, '-');
  assert.equal(await value(registry, 'istio_requests_total', { source_version: 'v1' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { source_version: 'v1.1' }), 1);
});

test('gRPC status is a bounded label; non-gRPC requests leave it empty', async () => {
  const { t, registry } = telemetry();
  const ok = t.start(request({ protocol: 'grpc' }));
  ok.close(200, '-', '14');
  const bogus = t.start(request({ protocol: 'grpc' }));
  bogus.close(200, '-', 'attacker-chosen');
  const none = t.start(request({ protocol: 'grpc' }));
  none.close(200, '-');
  // No grpc-status: the HTTP status as a gRPC client maps it (503 -> UNAVAILABLE); no response, none.
  const unavailable = t.start(request({ protocol: 'grpc' }));
  unavailable.close(503, '-');
  const gone = t.start(request({ protocol: 'grpc' }));
  gone.close(0, 'DC');
  const weird = t.start(request());
  weird.close(1234567, '-');
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '14', response_code: '200' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '14', response_code: '503' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: 'unknown' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '2' }), 1, 'a 200 without grpc-status is UNKNOWN');
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'grpc', grpc_response_status: '', response_code: '0' }), 1);
  assert.equal(await value(registry, 'istio_requests_total', { request_protocol: 'http', grpc_response_status: '', response_code: 'unknown' }), 1);
});

test('opaque TCP is reported with the TCP metrics, opened when the upstream connection is up', async () => {
  const { t, registry, lines } = telemetry();
  const r = t.start(request({ protocol: 'tcp', method: '', path: '', authority: '' }));
  assert.match(r.traceparent, TRACEPARENT);
  r.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  const labels = { reporter: 'waypoint', request_protocol: 'tcp', destination_workload: 'reviews-v2-xyz', source_principal: PP_PRINCIPAL };
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', labels), undefined, 'not before the connect succeeded');
  r.connected?.();
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', labels), 1);
  assert.equal(await value(registry, 'istio_tcp_connections_closed_total', labels), undefined);
  r.requestBytes = 10;
  r.responseBytes = 2000;
  r.close(0, '-');
  r.close(0, '-');
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', labels), 1);
  assert.equal(await value(registry, 'istio_tcp_connections_closed_total', labels), 1);
  assert.equal(await value(registry, 'istio_tcp_received_bytes_total', labels), 10);
  assert.equal(await value(registry, 'istio_tcp_sent_bytes_total', labels), 2000);
  const [opened] = await samples(registry, 'istio_tcp_connections_opened_total');
  assert.equal(opened.labels.connection_security_policy, 'mutual_tls');
  assert.equal(opened.labels.response_flags, '-');
  assert.equal(opened.labels.response_code, undefined);
  assert.equal((await samples(registry, 'istio_requests_total')).length, 0);
  assert.equal(lines.length, 1);

  // A connect that failed after the upstream was chosen: opened and closed in one series, its flags.
  const uf = t.start(request({ protocol: 'tcp', method: '', path: '', authority: '' }));
  uf.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  uf.close(0, 'UF');
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', { ...labels, response_flags: 'UF' }), 1);
  assert.equal(await value(registry, 'istio_tcp_connections_closed_total', { ...labels, response_flags: 'UF' }), 1);
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', { ...labels, response_flags: '-' }), 1, 'the "-" series is left balanced');
  // A connected one that ends with a flag closes in the series it opened in.
  const idle = t.start(request({ protocol: 'tcp', method: '', path: '', authority: '' }));
  idle.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  idle.connected?.();
  idle.close(0, 'UT');
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', { ...labels, response_flags: '-' }), 2);
  assert.equal(await value(registry, 'istio_tcp_connections_closed_total', { ...labels, response_flags: '-' }), 2);

  // Failing before an upstream was chosen still balances opened and closed.
  const failed = t.start(request({ protocol: 'tcp', source: undefined, sourcePrincipal: null }));
  failed.close(0, 'UH');
  assert.equal(await value(registry, 'istio_tcp_connections_opened_total', { response_flags: 'UH', source_workload: 'unknown' }), 1);
  assert.equal(await value(registry, 'istio_tcp_connections_closed_total', { response_flags: 'UH', connection_security_policy: 'none' }), 1);
});

test('two telemetry instances on one registry add up instead of clashing', async () => {
  const registry = new Registry();
  const a = telemetry({ registry }).t;
  const b = telemetry({ registry }).t;
  a.start(request()).close(200, '-');
  b.start(request()).close(200, '-');
  assert.equal(await value(registry, 'istio_requests_total'), 2);
});

test('a foreign metric holding one of the names is an error, not silently shadowed', () => {
  const registry = new Registry();
  new Counter({ name: 'istio_requests_total', help: 'x', registers: [registry] });
  assert.throws(() => telemetry({ registry }));
});

test('the exposition is what prom-client itself would produce for the same observations', async () => {
  const { t, registry } = telemetry();
  const reference = new Registry();
  const labelNames = [...REQUEST_LABELS];
  const refTotal = new Counter({ name: 'istio_requests_total', help: 'h', labelNames, registers: [reference] });
  const refReq = new Histogram({ name: 'istio_request_bytes', help: 'h', labelNames, buckets: [...BYTES_BUCKETS], registers: [reference] });
  const refResp = new Histogram({ name: 'istio_response_bytes', help: 'h', labelNames, buckets: [...BYTES_BUCKETS], registers: [reference] });
  const cases = [
    { code: 200, req: 0, resp: 1, src: productpage },
    { code: 200, req: 10, resp: 1e6, src: productpage },
    { code: 404, req: 5e9, resp: 999, src: undefined },
  ];
  for (const c of cases) {
    const r = t.start(request({ source: c.src, sourcePrincipal: c.src ? PP_PRINCIPAL : null, path: '/a "quoted"\\path' }));
    r.requestBytes = c.req;
    r.responseBytes = c.resp;
    r.setDestination(reviewsV2, RV_PRINCIPAL);
    r.close(c.code, '-');
  }
  // Label sets as the waypoint produced them (already checked field by field above).
  const produced = await samples(registry, 'istio_requests_total');
  assert.equal(produced.length, 2);
  for (const c of cases) {
    const labels = produced.find((s) => s.labels.response_code === String(c.code))?.labels;
    assert.ok(labels);
    refTotal.inc(labels);
    refReq.observe(labels, c.req);
    refResp.observe(labels, c.resp);
  }
  const body = (text: string) => text.split('\n').filter((l) => !l.startsWith('# HELP'));
  for (const name of ['istio_requests_total', 'istio_request_bytes', 'istio_response_bytes']) {
    assert.deepEqual(body(await registry.getSingleMetricAsString(name)), body(await reference.getSingleMetricAsString(name)), name);
  }
  // OpenMetrics rendering goes through the same Registry code paths.
  const open: Registry<RegistryContentType> = registry;
  open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  assert.match(await open.metrics(), /^istio_requests_total\{reporter="waypoint",.*response_code="404".*\} 1$/m);
  registry.resetMetrics();
  assert.equal((await samples(registry, 'istio_requests_total')).length, 0);
});

// ---------------------------------------------------------------------------------------------
// Access log

test('one access-log line per request with the request, route, peers and trace', () => {
  const { t, lines } = telemetry();
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const r = t.start(request({ traceparent: incoming }));
  r.setRoute('HTTPRoute/bookinfo/reviews#0');
  r.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  r.requestBytes = 12;
  r.responseBytes = 345;
  const before = Date.now();
  r.close(503, 'UF');
  assert.equal(lines.length, 1);
  const l = lines[0];
  assert.equal(l.level, 30);
  assert.equal(l.type, 'access');
  assert.equal(l.reporter, 'waypoint');
  assert.equal(l.component, 'waypoint');
  assert.equal(l.msg, 'request complete');
  assert.equal(l.method, 'GET');
  assert.equal(l.path, '/reviews/1?debug=1');
  assert.equal(l.protocol, 'http');
  assert.equal(l.response_code, 503);
  assert.equal(l.response_flags, 'UF');
  assert.equal(l.bytes_received, 12);
  assert.equal(l.bytes_sent, 345);
  assert.equal(l.upstream_host, '10.1.0.7:9080');
  assert.equal(l.route_name, 'HTTPRoute/bookinfo/reviews#0');
  assert.equal(l.authority, 'reviews.bookinfo.svc.cluster.local:9080');
  assert.equal(l.user_agent, 'curl/8.5.0');
  assert.equal(l.request_id, 'req-0001');
  assert.equal(l.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.equal(l.trace_id, r.traceId);
  assert.equal(l.src_addr, '10.1.0.1:43210');
  assert.equal(l.src_principal, PP_PRINCIPAL);
  assert.equal(l.src_workload, 'productpage-v1-abc');
  assert.equal(l.src_namespace, 'bookinfo');
  assert.equal(l.dst_principal, RV_PRINCIPAL);
  assert.equal(l.dst_workload, 'reviews-v2-xyz');
  assert.equal(l.dst_namespace, 'bookinfo');
  assert.equal(l.dst_service, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(typeof l.duration_ms, 'number');
  assert.ok((l.duration_ms as number) >= 0);
  const start = Date.parse(l.start_time as string);
  assert.ok(start <= before && before - start < 60_000, `start_time ${String(l.start_time)}`);
});

test('access logging filtered out by level costs nothing and writes nothing', async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  const registry = new Registry();
  const t = new WaypointTelemetry({ registry, log });
  t.start(request()).close(200, '-');
  assert.equal(lines.length, 0);
  assert.equal(await value(registry, 'istio_requests_total'), 1);
});

test('request-controlled access-log fields stay inside their JSON strings', () => {
  const { t, lines } = telemetry();
  const path = '/a"b\\c\n{"x":1}\u2028\u0000é';
  t.start(request({ path, userAgent: 'ua","level":60,"x":"', requestId: 'r"1' })).close(200, '-');
  assert.equal(lines.length, 1);
  assert.equal(lines[0].path, path);
  assert.equal(lines[0].user_agent, 'ua","level":60,"x":"');
  assert.equal(lines[0].level, 30);
  assert.equal(lines[0].request_id, 'r"1');
});

test('batched access-log lines reach the destination whole, when the batch fills, on flush and on a timer', async () => {
  const writes: string[] = [];
  const log = pino({ level: 'info', base: { component: 'waypoint' } }, { write: (s: string) => void writes.push(s) });
  const t = new WaypointTelemetry({ registry: new Registry(), log, accessLog: { batchChars: 2000, flushMs: 30 } });
  t.start(request()).close(200, '-');
  assert.equal(writes.length, 0, 'held in the batch');
  for (let i = 0; i < 10; i++) t.start(request()).close(200, '-');
  assert.ok(writes.length >= 1, 'a full batch is handed on at once');
  const lines = () => writes.join('').split('\n').filter((l) => l !== '');
  const before = lines().length;
  assert.ok(before < 11);
  t.flushAccessLog();
  assert.equal(lines().length, 11);
  for (const l of lines()) assert.equal((JSON.parse(l) as { msg: string }).msg, 'request complete');
  t.start(request()).close(200, '-');
  await new Promise((r) => setTimeout(r, 80));
  assert.equal(lines().length, 12, 'the timer hands on a partial batch');
  t.start(request()).close(200, '-');
  await t.shutdown();
  assert.equal(lines().length, 13, 'shutdown writes what is pending');
});

test('request-controlled access-log fields are bounded', () => {
  const { t, lines } = telemetry();
  t.start(request({ path: '/' + 'a'.repeat(100_000), userAgent: 'u'.repeat(10_000) })).close(200, '-');
  assert.ok((lines[0].path as string).length <= 2048);
  assert.ok((lines[0].user_agent as string).length <= 2048);
});

// ---------------------------------------------------------------------------------------------
// Tracing

test("span name is Istio's route decorator, service host:port/*: neither the caller's Host nor its paths mint names", () => {
  assert.equal(spanName(request()), 'reviews.bookinfo.svc.cluster.local:9080/*');
  assert.equal(spanName(request({ path: '/users/12345', authority: 'evil.example' })), 'reviews.bookinfo.svc.cluster.local:9080/*');
  assert.equal(spanName(request({ servicePort: undefined })), 'reviews.bookinfo.svc.cluster.local/*');
  assert.equal(spanName(request({ protocol: 'tcp' })), 'tcp reviews.bookinfo.svc.cluster.local');
});

test('a gRPC failure status in an HTTP 200 marks the span as an error; a client-side status does not', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const { t: tel } = telemetry({ otlpEndpoint: receiver.url });
  for (const status of ['13', '5', '0']) {
    const r = tel.start(request({ protocol: 'grpc', traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }));
    r.close(200, '-', status);
  }
  await tel.shutdown();
  const byStatus = new Map(receiver.spans.map((s) => [String(s.attributes['grpc.status_code']), s.status?.code ?? 0]));
  assert.equal(byStatus.get('13'), 2 /* ERROR: INTERNAL */);
  assert.notEqual(byStatus.get('5'), 2, 'NOT_FOUND is the caller\'s business, like a 404');
  assert.notEqual(byStatus.get('0'), 2);
});

test('a span continues the caller trace and reaches the OTLP/HTTP endpoint on shutdown', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const { t: tel, lines } = telemetry({ otlpEndpoint: receiver.url });
  assert.equal(tel.tracingEnabled, true);
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const callerSpan = '00f067aa0ba902b7';
  const r = tel.start(request({ traceparent: `00-${traceId}-${callerSpan}-01`, tracestate: 'vendor=abc' }));
  const m = TRACEPARENT.exec(r.traceparent);
  assert.ok(m, r.traceparent);
  assert.equal(m[1], traceId);
  assert.notEqual(m[2], callerSpan);
  assert.equal(m[3], '01');
  assert.equal(r.traceId, traceId);
  r.setRoute('HTTPRoute/bookinfo/reviews#0');
  r.setDestination(reviewsV2, RV_PRINCIPAL, '10.1.0.7:9080');
  r.requestBytes = 1;
  r.responseBytes = 2;
  r.close(503, 'UF');
  r.close(200, '-');
  await tel.shutdown();
  await tel.shutdown();

  assert.deepEqual(receiver.rejected, []);
  assert.equal(receiver.spans.length, 1);
  const s = receiver.spans[0];
  assert.equal(s.traceId, traceId);
  assert.equal(s.parentSpanId, callerSpan);
  assert.equal(s.spanId, m[2]);
  assert.equal(s.kind, 2 /* SPAN_KIND_SERVER */);
  assert.equal(s.name, 'reviews.bookinfo.svc.cluster.local:9080/*');
  assert.equal(s.status?.code, 2 /* STATUS_CODE_ERROR */);
  assert.equal(s.attributes['http.method'], 'GET');
  assert.equal(s.attributes['http.status_code'], 503);
  assert.equal(s.attributes['http.url'], 'http://reviews.bookinfo.svc.cluster.local:9080/reviews/1?debug=1');
  assert.equal(s.attributes.upstream_cluster, 'reviews.bookinfo.svc.cluster.local');
  assert.equal(s.attributes.upstream_address, '10.1.0.7:9080');
  assert.equal(s.attributes['peer.principal'], PP_PRINCIPAL);
  assert.equal(s.attributes['upstream.principal'], RV_PRINCIPAL);
  assert.equal(s.attributes.route_name, 'HTTPRoute/bookinfo/reviews#0');
  assert.equal(s.attributes.response_flags, 'UF');
  assert.equal(s.attributes['guid:x-request-id'], 'req-0001');
  assert.equal(s.attributes.error, true);
  assert.equal(s.resource['service.name'], 'waypoint.bookinfo');
  assert.equal(lines[0].trace_id, traceId);
});

test('an invalid or absent traceparent starts a new trace; 2xx spans are not errors', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const { t: tel } = telemetry({ otlpEndpoint: receiver.url });
  const bad = '00-00000000000000000000000000000000-00f067aa0ba902b7-01';
  const invalid = [bad, 'garbage', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'];
  const records = [...invalid.map((tp) => tel.start(request({ traceparent: tp }))), tel.start(request())];
  for (const r of records) {
    const m = TRACEPARENT.exec(r.traceparent);
    assert.ok(m, r.traceparent);
    assert.equal(m[1], r.traceId);
    assert.notEqual(r.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.notEqual(r.traceId, '0'.repeat(32));
    assert.equal(m[3], '01', 'sampled at the default ratio of 1');
    r.close(200, '-');
  }
  assert.equal(new Set(records.map((r) => r.traceId)).size, records.length);
  await tel.shutdown();
  assert.equal(receiver.spans.length, records.length);
  for (const s of receiver.spans) {
    assert.equal(s.parentSpanId, undefined);
    assert.notEqual(s.status?.code, 2);
    assert.equal(s.attributes.error, undefined);
  }
  assert.deepEqual(new Set(receiver.spans.map((s) => s.traceId)), new Set(records.map((r) => r.traceId)));
});

test("an unsampled caller is honoured: its trace continues, no span is exported", async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  const { t: tel } = telemetry({ otlpEndpoint: receiver.url });
  const r = tel.start(request({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00' }));
  assert.match(r.traceparent, /^00-4bf92f3577b34da6a3ce929d0e0e4736-(?!00f067aa0ba902b7)[0-9a-f]{16}-00$/);
  r.close(200, '-');
  // sampleRatio 0 applies to new traces only.
  const unsampledRoot = telemetry({ otlpEndpoint: receiver.url, sampleRatio: 0 }).t;
  const root = unsampledRoot.start(request());
  assert.match(root.traceparent, /-00$/);
  root.close(200, '-');
  const caller = unsampledRoot.start(request({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }));
  assert.match(caller.traceparent, /-01$/);
  caller.close(200, '-');
  await Promise.all([tel.shutdown(), unsampledRoot.shutdown()]);
  assert.equal(receiver.spans.length, 1);
  assert.equal(receiver.spans[0].parentSpanId, '00f067aa0ba902b7');
});

test('without an OTLP endpoint traceparent is still propagated', async () => {
  const { t: tel } = telemetry();
  assert.equal(tel.tracingEnabled, false);
  for (const flags of ['01', '00']) {
    const r = tel.start(request({ traceparent: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-${flags}` }));
    const m = TRACEPARENT.exec(r.traceparent);
    assert.ok(m, r.traceparent);
    assert.equal(m[1], '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.notEqual(m[2], '00f067aa0ba902b7');
    assert.equal(m[3], flags);
    r.close(200, '-');
  }
  // A future version with extra fields is accepted and re-emitted as version 00.
  const future = tel.start(request({ traceparent: '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra' }));
  assert.equal(future.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
  const spanIds = new Set<string>();
  for (const tp of [undefined, 'not-a-traceparent']) {
    const r = tel.start(request({ traceparent: tp }));
    const m = TRACEPARENT.exec(r.traceparent);
    assert.ok(m, r.traceparent);
    assert.equal(m[1], r.traceId);
    assert.notEqual(r.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    spanIds.add(m[2]);
  }
  assert.equal(spanIds.size, 2);
  assert.match(telemetry({ sampleRatio: 0 }).t.start(request()).traceparent, /-00$/);
  await tel.shutdown();
});

test('a failing OTLP endpoint costs a warning, not the request or the shutdown', async (t) => {
  const receiver = await startOtlpReceiver();
  t.after(() => receiver.close());
  // The receiver answers 400 off its path: a permanent failure, so no retry back-off to wait for.
  const { t: tel, lines } = telemetry({ otlpEndpoint: receiver.url.replace('/v1/traces', '/not-traces') });
  const r = tel.start(request());
  r.close(200, '-');
  await tel.flush();
  await tel.shutdown();
  assert.equal(receiver.spans.length, 0);
  assert.equal(receiver.rejected.length, 1);
  const warn = lines.find((l) => l.msg === 'trace export failed');
  assert.ok(warn, JSON.stringify(lines));
  assert.equal(warn.level, 40);
  assert.equal(warn.spans, 1);
});
