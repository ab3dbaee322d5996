import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLoadBalancer, Endpoint, LoadBalancerSettings, PickContext } from '../../waypoint/upstream/load-balancer';
import { createOutlierDetector, OutlierDetectionSettings } from '../../waypoint/upstream/outlier-detection';
import {
  AttemptOutcome,
  backoffMs,
  createRetryBudget,
  ISTIO_DEFAULT_RETRY_ON,
  matchRetryCondition,
  parseRetryOn,
  shouldRetry,
} from '../../waypoint/upstream/retry-policy';
import { createConnectionPoolLimits } from '../../waypoint/upstream/connection-pool-limits';
import { seededRandom } from '../../waypoint/upstream/weighted-pick';

const eps = (n: number, prefix = 'ep'): Endpoint[] => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, address: `10.0.0.${i + 1}:8080` }));
const noKey: PickContext = { headers: {} };

function counts(pick: () => Endpoint | null, times: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < times; i++) {
    const ep = pick();
    const id = ep === null ? 'null' : ep.id;
    m.set(id, (m.get(id) ?? 0) + 1);
  }
  return m;
}

/** A manual clock: tests advance time explicitly instead of sleeping. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

// ---------------------------------------------------------------------------------------------
// Load balancer

test('round robin visits every endpoint in turn and skips excluded ones', () => {
  const lb = createLoadBalancer({ simple: 'ROUND_ROBIN' }, eps(4), { random: seededRandom(1) });
  const seq = Array.from({ length: 8 }, () => lb.pick(noKey)?.id);
  assert.deepEqual(new Set(seq.slice(0, 4)).size, 4);
  assert.deepEqual(seq.slice(0, 4), seq.slice(4));
  const excluded = new Set(['ep1', 'ep2']);
  const c = counts(() => lb.pick({ headers: {}, excluded }), 100);
  assert.deepEqual([...c.keys()].sort(), ['ep0', 'ep3']);
  assert.equal(c.get('ep0'), 50);
  assert.equal(lb.pick({ headers: {}, excluded: new Set(['ep0', 'ep1', 'ep2', 'ep3']) }), null);
  assert.equal(createLoadBalancer({ simple: 'ROUND_ROBIN' }, []).pick(noKey), null);
});

test('random spreads picks uniformly', () => {
  const lb = createLoadBalancer({ simple: 'RANDOM' }, eps(4), { random: seededRandom(7) });
  const c = counts(() => lb.pick(noKey), 40_000);
  for (const id of ['ep0', 'ep1', 'ep2', 'ep3']) assert.ok(Math.abs((c.get(id) ?? 0) - 10_000) < 500, `${id}: ${c.get(id)}`);
  assert.equal(lb.pick({ headers: {}, excluded: new Set(['ep0', 'ep1', 'ep2']) })?.id, 'ep3');
});

test('least request (power of two choices) avoids the busiest endpoint and balances in-flight load', () => {
  for (const policy of [undefined, { simple: 'LEAST_REQUEST' as const }, { simple: 'UNSPECIFIED' as const }]) {
    const endpoints = eps(5);
    const lb = createLoadBalancer(policy, endpoints, { random: seededRandom(3) });
    assert.equal(lb.kind, 'LEAST_REQUEST');
    for (let i = 0; i < 10; i++) lb.onStart(endpoints[2]);
    // Two distinct choices are always compared, so the one host busier than all others can never win.
    const c = counts(() => lb.pick(noKey), 2000);
    assert.equal(c.get('ep2'), undefined);
    for (let i = 0; i < 10; i++) lb.onEnd(endpoints[2]);
    assert.equal(lb.inFlight('ep2'), 0);
  }
  // Requests that stay in flight: P2C keeps the spread far tighter than random would.
  const endpoints = eps(10);
  const lb = createLoadBalancer({ simple: 'LEAST_REQUEST' }, endpoints, { random: seededRandom(11) });
  for (let i = 0; i < 1000; i++) {
    const ep = lb.pick(noKey);
    assert.ok(ep);
    lb.onStart(ep);
  }
  const loads = endpoints.map((e) => lb.inFlight(e.id));
  assert.ok(Math.max(...loads) - Math.min(...loads) <= 6, `loads ${loads}`);
});

test('least request with two endpoints always takes the idler one', () => {
  const [a, b] = eps(2);
  const lb = createLoadBalancer({ simple: 'LEAST_REQUEST' }, [a, b], { random: seededRandom(5) });
  lb.onStart(a);
  for (let i = 0; i < 50; i++) assert.equal(lb.pick(noKey)?.id, 'ep1');
  assert.equal(lb.pick({ headers: {}, excluded: new Set(['ep1']) })?.id, 'ep0');
});

test('passthrough goes to the original destination', () => {
  const lb = createLoadBalancer({ simple: 'PASSTHROUGH' }, eps(2));
  assert.equal(lb.pick({ headers: {}, originalDestination: '10.0.0.2:8080' })?.id, 'ep1');
  assert.deepEqual(lb.pick({ headers: {}, originalDestination: '192.168.1.1:80' }), { id: '192.168.1.1:80', address: '192.168.1.1:80' });
  assert.equal(lb.pick(noKey), null);
});

const hashCases: Array<{ name: string; policy: LoadBalancerSettings; ctx: (k: string) => PickContext }> = [
  { name: 'header', policy: { consistentHash: { httpHeaderName: 'X-User' } }, ctx: (k) => ({ headers: { 'x-user': k } }) },
  { name: 'cookie', policy: { consistentHash: { httpCookie: { name: 'sid', ttl: '10s' } } }, ctx: (k) => ({ headers: { cookie: `a=1; sid=${k}; b=2` } }) },
  { name: 'source ip', policy: { consistentHash: { useSourceIp: true } }, ctx: (k) => ({ headers: {}, sourceIp: k }) },
  { name: 'query', policy: { consistentHash: { httpQueryParameterName: 'u' } }, ctx: (k) => ({ headers: {}, query: { u: k } }) },
  // What the router passes: the request's path, whose query is read only for this policy.
  { name: 'query parameter in the request path', policy: { consistentHash: { httpQueryParameterName: 'u' } }, ctx: (k) => ({ headers: {}, path: `/x?a=1&u=${k}` }) },
];

for (const hc of hashCases) {
  test(`consistent hash by ${hc.name}: same key, same endpoint; missing key falls back to round robin`, () => {
    const lb = createLoadBalancer(hc.policy, eps(8), { random: seededRandom(1) });
    assert.equal(lb.kind, 'CONSISTENT_HASH');
    const seen = new Set<string>();
    for (let k = 0; k < 200; k++) {
      const first = lb.pick(hc.ctx(`key-${k}`))?.id;
      assert.ok(first);
      seen.add(first);
      for (let r = 0; r < 3; r++) assert.equal(lb.pick(hc.ctx(`key-${k}`))?.id, first);
    }
    assert.equal(seen.size, 8);
    const rr = Array.from({ length: 8 }, () => lb.pick(noKey)?.id);
    assert.equal(new Set(rr).size, 8);
  });
}

test('consistent hash ring honours minimumRingSize and balances keys', () => {
  assert.ok((createLoadBalancer({ consistentHash: { useSourceIp: true } }, eps(3)).ringSize ?? 0) >= 1024);
  assert.ok((createLoadBalancer({ consistentHash: { useSourceIp: true, minimumRingSize: 0 } }, eps(3)).ringSize ?? 0) >= 1024);
  assert.ok((createLoadBalancer({ consistentHash: { useSourceIp: true, minimumRingSize: 5000 } }, eps(3)).ringSize ?? 0) >= 5000);
  const lb = createLoadBalancer({ consistentHash: { httpHeaderName: 'x-user' } }, eps(10));
  const c = counts(() => null, 0);
  for (let k = 0; k < 20_000; k++) {
    const id = lb.pick({ headers: { 'x-user': `user-${k}` } })?.id ?? 'null';
    c.set(id, (c.get(id) ?? 0) + 1);
  }
  for (const [id, n] of c) assert.ok(n > 1600 && n < 2400, `${id}: ${n}`);
});

test('consistent hash: adding or removing one endpoint moves only ~1/N of keys', () => {
  const policy: LoadBalancerSettings = { consistentHash: { httpHeaderName: 'x-user' } };
  const before = createLoadBalancer(policy, eps(10));
  // Same set in a different order must hash identically.
  const shuffled = createLoadBalancer(policy, [...eps(10)].reverse());
  const after = createLoadBalancer(policy, eps(11));
  const keys = Array.from({ length: 10_000 }, (_, k) => ({ headers: { 'x-user': `user-${k}` } }));
  let moved = 0;
  for (const ctx of keys) {
    const a = before.pick(ctx)?.id;
    assert.equal(shuffled.pick(ctx)?.id, a);
    const b = after.pick(ctx)?.id;
    if (a !== b) {
      moved++;
      assert.equal(b, 'ep10', 'a key only ever moves to the new endpoint');
    }
  }
  assert.ok(moved > 10_000 / 11 - 300 && moved < 10_000 / 11 + 300, `moved ${moved}`);

  // Removing ep3 (or excluding it, as an ejection does) moves only ep3's keys.
  const without = createLoadBalancer(policy, eps(10).filter((e) => e.id !== 'ep3'));
  for (const ctx of keys) {
    const a = before.pick(ctx)?.id;
    const excluded = before.pick({ ...ctx, excluded: new Set(['ep3']) })?.id;
    const b = without.pick(ctx)?.id;
    assert.equal(excluded, b);
    if (a !== 'ep3') assert.equal(b, a);
  }
});

test('setEndpoints keeps in-flight counts of surviving endpoints', () => {
  const [a, b, c] = eps(3);
  const lb = createLoadBalancer({ simple: 'LEAST_REQUEST' }, [a, b, c]);
  lb.onStart(a);
  lb.onStart(c);
  lb.setEndpoints([a, b]);
  assert.equal(lb.inFlight('ep0'), 1);
  assert.equal(lb.inFlight('ep2'), 0);
});

// ---------------------------------------------------------------------------------------------
// Outlier detection

test('ejects after consecutive 5xx and returns after baseEjectionTime × ejections', () => {
  const clk = clock();
  const od = createOutlierDetector({ consecutive5xxErrors: 3, baseEjectionTime: '30s', maxEjectionPercent: 100 }, ['a', 'b'], clk);
  od.onResult('a', { status: 500 });
  od.onResult('a', { status: 500 });
  od.onResult('a', { status: 200 }); // breaks the run
  od.onResult('a', { status: 500 });
  od.onResult('a', { status: 503 });
  assert.equal(od.isEjected('a'), false);
  od.onResult('a', { connectFailure: true });
  assert.equal(od.isEjected('a'), true);
  assert.deepEqual(od.ejected(), ['a']);
  clk.advance(29_999);
  assert.equal(od.isEjected('a'), true);
  clk.advance(1);
  assert.equal(od.isEjected('a'), false);
  assert.deepEqual(od.ejected(), []);
  // The second ejection lasts twice as long.
  for (let i = 0; i < 3; i++) od.onResult('a', { status: 502 });
  assert.equal(od.isEjected('a'), true);
  clk.advance(59_999);
  assert.equal(od.isEjected('a'), true);
  clk.advance(1);
  assert.equal(od.isEjected('a'), false);
  assert.equal(od.isEjected('b'), false);
});

test('ejection multiplier decays on healthy interval ticks; ejection time is capped at 300s', () => {
  const clk = clock();
  const od = createOutlierDetector({ consecutive5xxErrors: 1, baseEjectionTime: '100s', maxEjectionPercent: 100 }, ['a'], clk);
  const ejectionLength = () => {
    od.onResult('a', { status: 500 });
    let t = 0;
    while (od.isEjected('a')) {
      clk.advance(1000);
      t += 1000;
    }
    return t;
  };
  assert.equal(ejectionLength(), 100_000);
  assert.equal(ejectionLength(), 200_000);
  assert.equal(ejectionLength(), 300_000);
  assert.equal(ejectionLength(), 300_000, 'capped at Envoy max_ejection_time');
  for (let i = 0; i < 10; i++) od.tick();
  assert.equal(ejectionLength(), 100_000);
});

const gatewayCases: Array<{ name: string; results: Array<{ status?: number; connectFailure?: boolean }>; ejected: boolean }> = [
  { name: '502 503 504', results: [{ status: 502 }, { status: 503 }, { status: 504 }], ejected: true },
  { name: 'connect failures', results: [{ connectFailure: true }, { connectFailure: true }, { connectFailure: true }], ejected: true },
  { name: '500 breaks the run', results: [{ status: 502 }, { status: 503 }, { status: 500 }, { status: 504 }], ejected: false },
  { name: '200 breaks the run', results: [{ status: 502 }, { status: 200 }, { status: 503 }, { status: 504 }], ejected: false },
  { name: 'plain 500s', results: [{ status: 500 }, { status: 500 }, { status: 500 }, { status: 500 }], ejected: false },
];
for (const gc of gatewayCases) {
  test(`consecutiveGatewayErrors: ${gc.name}`, () => {
    const od = createOutlierDetector({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, maxEjectionPercent: 100 }, ['a'], clock());
    for (const r of gc.results) od.onResult('a', r);
    assert.equal(od.isEjected('a'), gc.ejected);
  });
}

test('defaults: consecutive5xxErrors 5, baseEjectionTime 30s; no outlierDetection means never eject', () => {
  const clk = clock();
  const od = createOutlierDetector({}, ['a', 'b', 'c'], clk);
  for (let i = 0; i < 4; i++) od.onResult('a', { status: 500 });
  assert.equal(od.isEjected('a'), false);
  od.onResult('a', { status: 500 });
  assert.equal(od.isEjected('a'), true);
  assert.equal(od.intervalMs, 10_000);
  clk.advance(30_000);
  assert.equal(od.isEjected('a'), false);
  const off = createOutlierDetector(undefined, ['a'], clk);
  for (let i = 0; i < 100; i++) off.onResult('a', { status: 503 });
  assert.equal(off.isEjected('a'), false);
});

const percentCases: Array<{ hosts: number; percent: number | undefined; max: number }> = [
  { hosts: 10, percent: undefined, max: 1 }, // Istio default 10%
  { hosts: 3, percent: 10, max: 1 }, // at least one
  { hosts: 20, percent: 10, max: 2 },
  { hosts: 10, percent: 50, max: 5 },
  { hosts: 7, percent: 50, max: 3 },
  { hosts: 4, percent: 100, max: 4 },
  { hosts: 10, percent: 0, max: 1 }, // 0 is "unset" in Istio
];
for (const pc of percentCases) {
  test(`maxEjectionPercent ${pc.percent ?? 'unset'} of ${pc.hosts} hosts ejects at most ${pc.max}`, () => {
    const ids = Array.from({ length: pc.hosts }, (_, i) => `h${i}`);
    const od = createOutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: pc.percent }, ids, clock());
    for (const id of ids) od.onResult(id, { status: 503 });
    assert.equal(od.ejected().length, pc.max);
  });
}

test('a refused ejection can happen later, once another host returns', () => {
  const clk = clock();
  const od = createOutlierDetector({ consecutive5xxErrors: 2, maxEjectionPercent: 10, baseEjectionTime: '10s' }, ['a', 'b', 'c'], clk);
  od.onResult('a', { status: 500 });
  od.onResult('a', { status: 500 });
  od.onResult('b', { status: 500 });
  od.onResult('b', { status: 500 });
  assert.deepEqual(od.ejected(), ['a']);
  clk.advance(10_000);
  od.onResult('b', { status: 500 });
  assert.deepEqual(od.ejected(), ['b']);
});

test('minHealthPercent: below it, ejections are ignored', () => {
  const od = createOutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 100, minHealthPercent: 50 }, ['a', 'b', 'c', 'd'], clock());
  od.onResult('a', { status: 500 });
  od.onResult('b', { status: 500 });
  assert.deepEqual(od.ejected().sort(), ['a', 'b']);
  od.onResult('c', { status: 500 });
  assert.deepEqual(od.ejected(), []);
  assert.equal(od.isEjected('a'), false);
});

test('ejected endpoints are excluded from load balancing', () => {
  const endpoints = eps(4);
  const od = createOutlierDetector({ consecutive5xxErrors: 1, maxEjectionPercent: 50 }, endpoints.map((e) => e.id), clock());
  const lb = createLoadBalancer({ simple: 'ROUND_ROBIN' }, endpoints);
  od.onResult('ep1', { status: 500 });
  const c = counts(() => lb.pick({ headers: {}, excluded: new Set(od.ejected()) }), 30);
  assert.equal(c.get('ep1'), undefined);
  assert.equal(c.get('ep0'), 10);
});

// ---------------------------------------------------------------------------------------------
// Retry policy

const retryCases: Array<{ retryOn: string; outcome: AttemptOutcome; want: string | null }> = [
  { retryOn: '5xx', outcome: { status: 500 }, want: '5xx' },
  { retryOn: '5xx', outcome: { status: 404 }, want: null },
  { retryOn: '5xx', outcome: { reset: true }, want: '5xx' },
  { retryOn: '5xx', outcome: { connectFailure: true }, want: '5xx' },
  { retryOn: '5xx', outcome: { perTryTimeout: true }, want: '5xx' },
  { retryOn: 'gateway-error', outcome: { status: 502 }, want: 'gateway-error' },
  { retryOn: 'gateway-error', outcome: { status: 504 }, want: 'gateway-error' },
  { retryOn: 'gateway-error', outcome: { status: 500 }, want: null },
  { retryOn: 'reset', outcome: { reset: true }, want: 'reset' },
  { retryOn: 'reset', outcome: { status: 503 }, want: null },
  { retryOn: 'connect-failure', outcome: { connectFailure: true }, want: 'connect-failure' },
  { retryOn: 'connect-failure', outcome: { reset: true }, want: null },
  { retryOn: 'connect-failure', outcome: { status: 503 }, want: null },
  { retryOn: 'retriable-4xx', outcome: { status: 409 }, want: 'retriable-4xx' },
  { retryOn: 'retriable-4xx', outcome: { status: 429 }, want: null },
  { retryOn: 'refused-stream', outcome: { refusedStream: true }, want: 'refused-stream' },
  { retryOn: 'refused-stream', outcome: { reset: true }, want: null },
  { retryOn: 'retriable-status-codes,429', outcome: { status: 429 }, want: 'retriable-status-codes' },
  { retryOn: '429,418', outcome: { status: 418 }, want: 'retriable-status-codes' },
  { retryOn: 'retriable-status-codes', outcome: { status: 503 }, want: null },
  { retryOn: 'cancelled', outcome: { status: 200, grpcStatus: 1 }, want: 'cancelled' },
  { retryOn: 'deadline-exceeded', outcome: { status: 200, grpcStatus: 4 }, want: 'deadline-exceeded' },
  { retryOn: 'resource-exhausted', outcome: { status: 200, grpcStatus: 8 }, want: 'resource-exhausted' },
  { retryOn: 'internal', outcome: { status: 200, grpcStatus: 13 }, want: 'internal' },
  { retryOn: 'unavailable', outcome: { status: 200, grpcStatus: 14 }, want: 'unavailable' },
  { retryOn: 'unavailable', outcome: { status: 200, grpcStatus: 13 }, want: null },
  { retryOn: 'cancelled,unavailable', outcome: { status: 200, grpcStatus: 0 }, want: null },
  { retryOn: ISTIO_DEFAULT_RETRY_ON, outcome: { status: 503 }, want: 'retriable-status-codes' },
  { retryOn: ISTIO_DEFAULT_RETRY_ON, outcome: { status: 500 }, want: null },
  { retryOn: ISTIO_DEFAULT_RETRY_ON, outcome: { connectFailure: true }, want: 'connect-failure' },
  { retryOn: ISTIO_DEFAULT_RETRY_ON, outcome: { reset: true }, want: null },
];
test('retryOn classes (table)', () => {
  for (const c of retryCases) {
    assert.equal(matchRetryCondition(parseRetryOn(c.retryOn), c.outcome), c.want, `${c.retryOn} ${JSON.stringify(c.outcome)}`);
  }
});

test('shouldRetry needs a replayable body and retries left', () => {
  const conds = parseRetryOn('5xx');
  assert.deepEqual(shouldRetry(conds, { status: 503 }, { bodyReplayable: true, retriesSoFar: 0, maxRetries: 2 }), { retry: true, reason: '5xx' });
  assert.equal(shouldRetry(conds, { status: 503 }, { bodyReplayable: false, retriesSoFar: 0, maxRetries: 2 }).retry, false);
  assert.equal(shouldRetry(conds, { status: 503 }, { bodyReplayable: true, retriesSoFar: 2, maxRetries: 2 }).retry, false);
  assert.equal(shouldRetry(conds, { status: 200 }, { bodyReplayable: true, retriesSoFar: 0, maxRetries: 2 }).retry, false);
});

test('backoff: full jitter within [0, min(25ms × 2^(n-1), 250ms))', () => {
  const ceilings = [25, 50, 100, 200, 250, 250, 250];
  ceilings.forEach((ceiling, i) => {
    assert.equal(backoffMs(i + 1, () => 0), 0);
    assert.equal(backoffMs(i + 1, () => 0.999999999), ceiling - 1);
  });
  const rnd = seededRandom(9);
  for (let retry = 1; retry <= 8; retry++) {
    const ceiling = ceilings[Math.min(retry - 1, ceilings.length - 1)];
    let sum = 0;
    for (let i = 0; i < 2000; i++) {
      const b = backoffMs(retry, rnd);
      assert.ok(b >= 0 && b < ceiling && Number.isInteger(b));
      sum += b;
    }
    // Uniform jitter averages about half the ceiling.
    assert.ok(Math.abs(sum / 2000 - ceiling / 2) < ceiling * 0.06, `retry ${retry} mean ${sum / 2000}`);
  }
});

test('retry budget: min concurrency, percent of active requests, hard cap, per destination', () => {
  const budget = createRetryBudget();
  assert.ok(budget.tryAcquire('a') && budget.tryAcquire('a') && budget.tryAcquire('a'));
  assert.equal(budget.tryAcquire('a'), false);
  assert.equal(budget.tryAcquire('b'), true, 'budgets are per destination');
  for (let i = 0; i < 3; i++) budget.release('a');
  for (let i = 0; i < 100; i++) budget.onRequestStart('a');
  let granted = 0;
  while (budget.tryAcquire('a')) granted++;
  // 20% of the 100 - r requests not themselves retrying: r <= 0.2 (100 - r) → r = 16.
  assert.equal(granted, 16);
  budget.release('a');
  assert.equal(budget.tryAcquire('a'), true);
  const capped = createRetryBudget({ maxConcurrentRetries: 2 });
  assert.ok(capped.tryAcquire('x') && capped.tryAcquire('x'));
  assert.equal(capped.tryAcquire('x'), false);
});

test('retry budget: a backend failing 100% sees at most 20% extra load over 10,000 requests', () => {
  const budget = createRetryBudget();
  const conds = parseRetryOn('5xx');
  const TOTAL = 10_000;
  const PER_TICK = 50;
  const DURATION = 4;
  type Req = { retries: number };
  let inflight: Array<{ end: number; req: Req; isRetry: boolean }> = [];
  let started = 0;
  let done = 0;
  let retryAttempts = 0;
  let retriesWithoutBudget = 0;
  for (let tick = 0; done < TOTAL; tick++) {
    const ending = inflight.filter((a) => a.end === tick);
    inflight = inflight.filter((a) => a.end !== tick);
    for (const a of ending) {
      if (a.isRetry) budget.release('svc');
      const d = shouldRetry(conds, { status: 503 }, { bodyReplayable: true, retriesSoFar: a.req.retries, maxRetries: 2 });
      if (d.retry) retriesWithoutBudget++;
      if (d.retry && budget.tryAcquire('svc')) {
        a.req.retries++;
        retryAttempts++;
        inflight.push({ end: tick + DURATION, req: a.req, isRetry: true });
      } else {
        budget.onRequestEnd('svc');
        done++;
      }
    }
    for (let i = 0; i < PER_TICK && started < TOTAL; i++) {
      started++;
      budget.onRequestStart('svc');
      inflight.push({ end: tick + DURATION, req: { retries: 0 }, isRetry: false });
    }
    // Admitted retries can't be revoked, so only the steady state is held to 20% of first attempts in flight.
    if (started < TOTAL && tick >= DURATION) {
      const retrying = inflight.filter((a) => a.isRetry).length;
      const first = inflight.length - retrying;
      assert.ok(retrying <= Math.floor(first * 0.2), `tick ${tick}: ${retrying} retries for ${first} first attempts`);
    }
  }
  assert.ok(retriesWithoutBudget >= TOTAL, 'without the budget every request would retry');
  assert.ok(retryAttempts <= TOTAL * 0.2, `retries ${retryAttempts}`);
  assert.ok(retryAttempts >= TOTAL * 0.15, `the budget should still allow retries: ${retryAttempts}`);
  assert.deepEqual(budget.stats('svc'), { active: 0, retries: 0, limit: 3 });
});

// ---------------------------------------------------------------------------------------------
// Connection pool limits

test('http2MaxRequests caps concurrent requests; overflow answers UO; release is idempotent', () => {
  const pool = createConnectionPoolLimits({ http: { http2MaxRequests: 2 } }, { protocol: 'http2' });
  const a = pool.tryStart();
  const b = pool.tryStart();
  assert.ok(a.ok && b.ok);
  assert.deepEqual(pool.tryStart(), { ok: false, flag: 'UO' });
  if (a.ok) {
    a.release();
    a.release();
  }
  assert.equal(pool.stats().active, 1);
  assert.ok(pool.tryStart().ok);
  assert.deepEqual(pool.tryStart(), { ok: false, flag: 'UO' });
  assert.equal(pool.stats().overflows, 2);
});

test('HTTP/1: requests beyond maxConnections queue up to http1MaxPendingRequests', () => {
  const pool = createConnectionPoolLimits({ tcp: { maxConnections: 2 }, http: { http1MaxPendingRequests: 1 } }, { protocol: 'http1' });
  const admitted = [pool.tryStart(), pool.tryStart(), pool.tryStart()];
  assert.ok(admitted.every((x) => x.ok));
  assert.deepEqual(pool.stats(), { active: 3, pending: 1, overflows: 0 });
  assert.deepEqual(pool.tryStart(), { ok: false, flag: 'UO' });
  const first = admitted[0];
  if (first.ok) first.release();
  assert.equal(pool.stats().pending, 0);
  assert.ok(pool.tryStart().ok);
  // HTTP/2 multiplexes: maxConnections alone doesn't limit requests.
  const h2 = createConnectionPoolLimits({ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }, { protocol: 'http2' });
  for (let i = 0; i < 100; i++) assert.ok(h2.tryStart().ok);
});

const unlimitedCases: Array<{ name: string; settings: Parameters<typeof createConnectionPoolLimits>[0] }> = [
  { name: 'unset', settings: undefined },
  { name: 'zeros (Istio: unset)', settings: { tcp: { maxConnections: 0 }, http: { http1MaxPendingRequests: 0, http2MaxRequests: 0 } } },
];
for (const uc of unlimitedCases) {
  test(`connection pool without limits (${uc.name}) admits everything`, () => {
    for (const protocol of ['http1', 'http2'] as const) {
      const pool = createConnectionPoolLimits(uc.settings, { protocol });
      for (let i = 0; i < 10_000; i++) assert.ok(pool.tryStart().ok);
    }
  });
}

// Keeps the settings type in use so a schema change that drops a field breaks this file's build.
const _od: OutlierDetectionSettings = { consecutive5xxErrors: 5, interval: '10s', baseEjectionTime: '30s', maxEjectionPercent: 10, minHealthPercent: 0 };
void _od;

test('DestinationRules for one host merge as in Istio: all subsets, the first traffic policy; the service namespace first', async () => {
  const { DestinationRuleIndex } = await import('../../waypoint/upstream/cluster');
  const dr = (namespace: string, name: string, spec: object) => ({ namespace, name, spec: { host: 'ratings', ...spec } });
  const idx = new DestinationRuleIndex(
    [
      dr('shop', 'a-policy', { trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }),
      dr('shop', 'b-subsets', { subsets: [{ name: 'v1', labels: { version: 'v1' } }], trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }),
      dr('shop', 'c-more', { subsets: [{ name: 'v1', labels: { version: 'other' } }, { name: 'v2', labels: { version: 'v2' } }] }),
    ],
    'cluster.local',
  );
  const m = idx.find('ratings.shop.svc.cluster.local');
  assert.deepEqual(m?.subsets?.map((s) => [s.name, s.labels]), [['v1', { version: 'v1' }], ['v2', { version: 'v2' }]]);
  assert.deepEqual(m?.trafficPolicy, { loadBalancer: { simple: 'RANDOM' } });
  // A rule for shop's service written in another namespace comes after shop's own, whatever the names.
  const other = new DestinationRuleIndex(
    [
      { namespace: 'aaa', name: 'x', spec: { host: 'ratings.shop.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } } },
      dr('shop', 'z', { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }),
    ],
    'cluster.local',
  );
  assert.deepEqual(other.find('ratings.shop.svc.cluster.local')?.trafficPolicy, { loadBalancer: { simple: 'ROUND_ROBIN' } });
});
