// Waypoints end to end on the local cluster (`ambit dev`): a real waypoint pod started by the
// cluster's waypoint controller for a Gateway applied with `ambit waypoint apply`, its identity
// from the node agent, its config from the control plane; client and backend pods on two
// hosts whose ztunnels tunnel to it. Root only; the cluster is always brought down in `finally`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { down, podExec, podList, podRun, up } from '../../deploy/local';
import { AmbitClient } from '../../lib/api/client';
import { dialFromConfig, loadClientConfig } from '../../lib/api/client-config';
import { eventually, haveTools, isRoot } from '../helpers/netns';
import { AMBIT_BIN } from '../helpers/controlplane';
import { exportJWK, generateKeyPair, KeyLike, SignJWT } from 'jose';

const skip = !isRoot()
  ? 'needs root (network namespaces)'
  : !haveTools('ip', 'iptables-save') || !fs.existsSync('/usr/lib/cni/bridge')
    ? 'needs iproute2, iptables and containernetworking-plugins (scripts/setup.sh installs them)'
    : false;

const TOOLS = path.join(__dirname, '..', 'helpers', 'pod-tools.js');
const NS = 'shop';

interface LoadResult { statuses: Record<string, number>; versions: Record<string, number>; errors: string[]; errorCount: number; ms: number }

test('waypoint on real pods: routing, weights, canary change, L7 authorization, gRPC, WebSocket, smuggling, telemetry', { skip, timeout: 900_000 }, async (t) => {
  const co = { dir: fs.mkdtempSync(path.join(os.tmpdir(), 'ambit-wp-')), name: `ambit-w${randomBytes(3).toString('hex')}` };
  let admin: AmbitClient | undefined;
  try {
    const u = await up({ ...co, nodes: 2 });
    assert.deepEqual(u.notReady, []);
    const env = { ...process.env, AMBIT_CONFIG: u.adminConfig };
    const ambit = (...args: string[]) => {
      const r = spawnSync(process.execPath, [AMBIT_BIN, ...args], { env, encoding: 'utf8', timeout: 120_000 });
      return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
    };
    const apply = (yaml: string) => {
      const f = path.join(co.dir, `m-${randomBytes(4).toString('hex')}.yaml`);
      fs.writeFileSync(f, yaml);
      const r = ambit('apply', '-f', f);
      assert.equal(r.code, 0, r.out);
    };
    admin = new AmbitClient(dialFromConfig(loadClientConfig(u.adminConfig)));
    apply(`
apiVersion: v1
kind: Namespace
metadata: {name: ${NS}, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: ${NS}}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: http2, port: 81, targetPort: 8081}
  - {name: grpc, port: 9090, targetPort: 9090}
`);
    const node = process.execPath;
    await podRun({ ...co, name: 'echo-v1', namespace: NS, node: 'node2', serviceAccount: 'echo', labels: { app: 'echo', version: 'v1' }, command: [node, TOOLS, 'serve', '--version', 'v1'] });
    await podRun({ ...co, name: 'echo-v2', namespace: NS, node: 'node1', serviceAccount: 'echo', labels: { app: 'echo', version: 'v2' }, command: [node, TOOLS, 'serve', '--version', 'v2'] });
    await podRun({ ...co, name: 'client', namespace: NS, node: 'node1', serviceAccount: 'client', command: ['sleep', 'infinity'] });
    await podRun({ ...co, name: 'intruder', namespace: NS, node: 'node2', serviceAccount: 'intruder', command: ['sleep', 'infinity'] });
    await eventually('pods enrolled', 30_000, async () => (await podList(co)).filter((p) => p.namespace === NS && p.enrolled).length === 4);

    const exec = async (pod: string, argv: string[], timeoutMs = 120_000) => {
      const r = await podExec({ ...co, name: pod, namespace: NS, command: [node, TOOLS, ...argv], timeoutMs });
      return { code: r.code, out: r.stdout.trim(), err: r.stderr };
    };
    const load = async (pod: string, url: string, n: number, extra: string[] = []): Promise<LoadResult> => {
      const r = await exec(pod, ['load', '--url', url, '--n', String(n), '--c', '8', ...extra]);
      assert.equal(r.code, 0, `load failed: ${r.out} ${r.err}`);
      return JSON.parse(r.out) as LoadResult;
    };
    const raw = async (pod: string, data: string): Promise<{ response: string; closed: boolean }> => {
      const r = await exec(pod, ['raw', '--host', 'echo', '--port', '80', '--data', data]);
      return JSON.parse(r.out) as { response: string; closed: boolean };
    };
    // Before any waypoint, the mesh answers at L4.
    await eventually('echo reachable at L4', 60_000, async () => (await load('client', 'http://echo/', 4)).statuses['200'] === 4);

    await t.test('ambit waypoint apply: the waypoint pod comes up with its own identity and reports Programmed', async () => {
      const r = ambit('waypoint', 'apply', '-n', NS, '--enroll-namespace');
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /waypoint shop\/waypoint (created|configured)/);
      assert.match(r.out, /labelled istio.io\/use-waypoint=waypoint/);
      const st = ambit('waypoint', 'status', '-n', NS, '--wait', '90s');
      assert.equal(st.code, 0, st.out);
      assert.match(st.out, /Programmed=True/);
      const list = ambit('waypoint', 'list', '-n', NS);
      assert.match(list.out, /waypoint\s+service\s+True\s+1/);
      const wpPod = (await podList(co)).find((p) => p.namespace === NS && p.name === 'waypoint-waypoint');
      assert.ok(wpPod, 'waypoint pod exists');
      assert.equal(wpPod.serviceAccount, 'waypoint');
      assert.equal(wpPod.enrolled, false, 'the waypoint pod is not captured');
    });

    await t.test('requests to the service now pass through the waypoint (metrics with reporter=waypoint and the caller principal)', async () => {
      const res = await eventually('a request through the waypoint', 30_000, async () => {
        const l = await load('client', 'http://echo/', 20);
        return l.statuses['200'] === 20 ? l : undefined;
      });
      assert.equal(res.errorCount, 0);
      const m = await podExec({ ...co, name: 'waypoint-waypoint', namespace: NS, command: [node, '-e', "fetch('http://127.0.0.1:15020/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))"], timeoutMs: 20_000 });
      const line = m.stdout.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="waypoint"') && l.includes(`source_principal="spiffe://cluster.local/ns/${NS}/sa/client"`) && l.includes('response_code="200"'));
      assert.ok(line, `istio_requests_total with the client's principal:\n${m.stdout.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n')}`);
      assert.match(line, /destination_service="echo\.shop\.svc\.cluster\.local"/);
    });

    await t.test('header match routes to v2, everything else to v1', async () => {
      apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: ${NS}}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: ${NS}}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{headers: [{name: x-canary, value: "yes"}]}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: ${NS}}
spec: {selector: {app: echo, version: v1}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: ${NS}}
spec: {selector: {app: echo, version: v2}, ports: [{port: 80, targetPort: 8080}]}
`);
      await eventually('the route applies', 20_000, async () => {
        const a = await load('client', 'http://echo/', 40, ['--header', 'x-canary: yes']);
        const b = await load('client', 'http://echo/', 40);
        return a.versions.v2 === 40 && b.versions.v1 === 40;
      });
    });

    await t.test('90/10 split over 2,000 requests; a weight change applies in under 2 s with no failed request', async () => {
      const route = (w1: number, w2: number) => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: ${NS}}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - backendRefs: [{name: echo-v1, port: 80, weight: ${w1}}, {name: echo-v2, port: 80, weight: ${w2}}]
`;
      apply(route(90, 10));
      await eventually('the weighted route applies', 20_000, async () => ((await load('client', 'http://echo/', 100)).versions.v2 ?? 0) > 0);
      const r = await load('client', 'http://echo/', 2000);
      assert.equal(r.statuses['200'], 2000, JSON.stringify(r));
      const share = (r.versions.v1 ?? 0) / 2000;
      // 90% of 2,000: sd = sqrt(2000*0.9*0.1) = 13.4 requests (0.67 points); 4 sd = 2.7 points.
      assert.ok(Math.abs(share - 0.9) < 0.03, `v1 share ${share}`);

      // Flip the weights while requests are running: none may fail.
      const running = load('client', 'http://echo/', 3000);
      await new Promise((res) => setTimeout(res, 1000));
      // Measured from when `ambit apply` returned (the change is stored), not from before the CLI started.
      apply(route(10, 90));
      const appliedAt = Date.now();
      let tookMs = -1;
      for (;;) {
        const p = await load('client', 'http://echo/', 20);
        if ((p.versions.v2 ?? 0) >= 12) {
          tookMs = Date.now() - appliedAt;
          break;
        }
        if (Date.now() - appliedAt > 20_000) break;
      }
      const during = await running;
      assert.equal(during.errorCount, 0, JSON.stringify(during));
      assert.deepEqual(Object.keys(during.statuses), ['200'], JSON.stringify(during));
      t.diagnostic(`weight change observed ${tookMs} ms after apply returned`);
      assert.ok(tookMs >= 0 && tookMs < 2000, `weight change took ${tookMs} ms`);
    });

    await t.test('L7 DENY on /admin holds against path tricks; ALLOW for one principal refuses another', async () => {
      apply(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: ${NS}}
spec:
  targetRefs: [{kind: Service, group: "", name: echo}]
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}]
`);
      const get = (p: string) => `GET ${p} HTTP/1.1\\r\\nHost: echo\\r\\nConnection: close\\r\\n\\r\\n`;
      await eventually('the DENY applies', 20_000, async () => /^HTTP\/1\.1 403/.test((await raw('client', get('/admin'))).response));
      for (const p of ['/admin', '//admin', '/%61dmin', '/x/../admin', '/admin#x', '/admin/', '/admin/x', '/./admin', '/%2Fadmin']) {
        const r = await raw('client', get(p));
        assert.match(r.response, /^HTTP\/1\.1 (403|400)/, `${p} must be refused: ${r.response.slice(0, 80)}`);
      }
      assert.match((await raw('client', get('/public'))).response, /^HTTP\/1\.1 200/);

      apply(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-client, namespace: ${NS}}
spec:
  targetRefs: [{kind: Service, group: "", name: echo}]
  action: ALLOW
  rules: [{from: [{source: {principals: ["cluster.local/ns/${NS}/sa/client"]}}]}]
`);
      await eventually('the ALLOW applies', 20_000, async () => /^HTTP\/1\.1 403/.test((await raw('intruder', get('/public'))).response));
      assert.match((await raw('client', get('/public'))).response, /^HTTP\/1\.1 200/);
      assert.equal((await raw('intruder', get('/public'))).response.includes('RBAC: access denied'), true);
      assert.equal(ambit('delete', 'authorizationpolicy', 'only-client', '-n', NS).code, 0);
    });

    await t.test('gRPC unary and bidirectional streaming, and a WebSocket upgrade, through the waypoint', async () => {
      const g = await eventually('gRPC through the waypoint', 30_000, async () => {
        const r = await exec('client', ['grpc', '--target', 'echo:9090'], 30_000);
        return r.code === 0 ? r.out : undefined;
      });
      assert.deepEqual(JSON.parse(g), { unary: 'hello', stream: ['A', 'B', 'C'] });
      const ws = await exec('client', ['websocket', '--host', 'echo', '--port', '80'], 30_000);
      assert.equal(ws.code, 0, ws.out);
      assert.deepEqual(JSON.parse(ws.out), { status: 101, echoed: true });
    });

    await t.test('request smuggling gets 400 and the connection is closed', async () => {
      const both = 'POST / HTTP/1.1\\r\\nHost: echo\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\nGET /admin HTTP/1.1\\r\\nHost: echo\\r\\n\\r\\n';
      const dupCl = 'POST / HTTP/1.1\\r\\nHost: echo\\r\\nContent-Length: 4\\r\\nContent-Length: 5\\r\\n\\r\\nabcde';
      const badChunk = 'POST / HTTP/1.1\\r\\nHost: echo\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\nzz\\r\\nabc\\r\\n0\\r\\n\\r\\n';
      for (const attempt of [both, dupCl, badChunk]) {
        const r = await raw('client', attempt);
        assert.match(r.response, /^HTTP\/1\.1 400/, r.response.slice(0, 100));
        assert.equal(r.closed, true);
        assert.equal(/HTTP\/1\.1 (200|403)/.test(r.response), false, 'nothing behind the 400 was answered');
      }
    });

    // Backends for the resilience checks: a flaky one (30 % 503), a broken one (always 503), and a healthy one.
    await podRun({ ...co, name: 'flaky', namespace: NS, node: 'node2', serviceAccount: 'flaky', labels: { app: 'flaky' }, command: [node, TOOLS, 'serve', '--version', 'flaky', '--fail-rate', '0.3'] });
    const broken = await podRun({ ...co, name: 'broken', namespace: NS, node: 'node2', serviceAccount: 'broken', labels: { app: 'broken', pair: 'yes' }, command: [node, TOOLS, 'serve', '--version', 'broken', '--fail-rate', '1'] });
    await podRun({ ...co, name: 'healthy', namespace: NS, node: 'node1', serviceAccount: 'healthy', labels: { app: 'healthy', pair: 'yes' }, command: [node, TOOLS, 'serve', '--version', 'healthy'] });
    const svc = (name: string, selector: string) => `
apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${NS}}
spec: {selector: {${selector}}, ports: [{name: http, port: 80, targetPort: 8080}]}
`;
    apply([svc('flaky', 'app: flaky'), svc('broken', 'app: broken'), svc('pair', 'pair: "yes"'), svc('slow', 'app: echo'), svc('faulty', 'app: echo'), svc('secure', 'app: echo'), svc('limited', 'app: echo')].join('---'));
    const brokenStats = async (): Promise<number> => {
      const r = await podExec({ ...co, name: 'client', namespace: NS, command: [node, '-e', `fetch('http://${broken.ip}:8080/stats').then(r=>r.json()).then(j=>process.stdout.write(String(j.requests)))`], timeoutMs: 20_000 });
      return Number(r.stdout);
    };

    await t.test('retries turn 30 % 503s into > 99 % success; against a backend failing every request the retry budget bounds the extra load', async () => {
      apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaky, namespace: ${NS}}
spec:
  hosts: [flaky]
  http:
  - route: [{destination: {host: flaky}}]
    retries: {attempts: 4, retryOn: "5xx"}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: ${NS}}
spec:
  hosts: [broken]
  http:
  - route: [{destination: {host: broken}}]
    retries: {attempts: 4, retryOn: "5xx"}
`);
      await eventually('the retry policy applies', 20_000, async () => {
        const r = await exec('client', ['load', '--url', 'http://flaky/', '--n', '100', '--c', '2']);
        return (JSON.parse(r.out) as LoadResult).statuses['200'] === 100;
      });
      const ok = JSON.parse((await exec('client', ['load', '--url', 'http://flaky/', '--n', '600', '--c', '1'])).out) as LoadResult;
      const success = (ok.statuses['200'] ?? 0) / 600;
      t.diagnostic(`flaky backend with retries: ${JSON.stringify(ok.statuses)}`);
      assert.ok(success > 0.99, `success ${success}`);

      const before = await brokenStats();
      const failing = await load('client', 'http://broken/', 400);
      const seen = (await brokenStats()) - before - 1; // minus the /stats call itself
      t.diagnostic(`broken backend: 400 requests, ${seen} reached it (${(seen / 400).toFixed(2)}x)`);
      assert.equal(failing.statuses['503'], 400);
      // Unbounded, 4 retries would have sent 5x; the budget (20 % of active requests, a floor of 3) keeps it near 1x.
      assert.ok(seen <= 400 * 1.5, `retries amplified the load to ${seen}`);
    });

    await t.test('timeouts give 504 on time; fault abort and delay apply at their percentages', async () => {
      apply(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: slow, namespace: ${NS}}
spec:
  hosts: [slow]
  http:
  - match: [{uri: {prefix: /per-try}}]
    rewrite: {uri: /delay/1500}
    route: [{destination: {host: slow}}]
    timeout: 10s
    retries: {attempts: 1, perTryTimeout: 300ms, retryOn: "5xx,reset"}
  - route: [{destination: {host: slow}}]
    timeout: 1s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: faulty, namespace: ${NS}}
spec:
  hosts: [faulty]
  http:
  - match: [{uri: {prefix: /abort}}]
    route: [{destination: {host: faulty}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 50}}}
  - route: [{destination: {host: faulty}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
`);
      const timed = async (url: string) => {
        const t0 = Date.now();
        const r = JSON.parse((await exec('client', ['load', '--url', url, '--n', '1', '--c', '1'])).out) as LoadResult;
        return { status: Object.keys(r.statuses)[0], ms: r.ms, wall: Date.now() - t0 };
      };
      await eventually('the timeout applies', 20_000, async () => (await timed('http://slow/delay/3000')).status === '504');
      const total = await timed('http://slow/delay/3000');
      assert.equal(total.status, '504');
      assert.ok(total.ms >= 900 && total.ms < 2900, `route timeout answered after ${total.ms} ms`);
      const perTry = await timed('http://slow/per-try');
      assert.equal(perTry.status, '504');
      assert.ok(perTry.ms < 1400, `per-try timeout answered after ${perTry.ms} ms (the backend takes 1500)`);
      assert.equal((await timed('http://slow/delay/10')).status, '200');

      await eventually('the fault applies', 20_000, async () => ((await load('client', 'http://faulty/abort', 40)).statuses['418'] ?? 0) > 0);
      const ab = await load('client', 'http://faulty/abort', 600);
      const share = (ab.statuses['418'] ?? 0) / 600;
      // sd of a 50 % share over 600 = 2 points; 5 sd = 10 points.
      assert.ok(Math.abs(share - 0.5) < 0.1, `abort share ${share} (${JSON.stringify(ab.statuses)})`);
      assert.equal((ab.statuses['418'] ?? 0) + (ab.statuses['200'] ?? 0), 600);
      const delayed = await load('client', 'http://faulty/', 10, ['--c', '1']);
      assert.equal(delayed.statuses['200'], 10);
      assert.ok(delayed.ms >= 10 * 300, `10 sequential delayed requests took ${delayed.ms} ms`);
    });

    await t.test('outlier detection ejects the endpoint returning 5xx and brings it back after the ejection time', async () => {
      apply(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pair, namespace: ${NS}}
spec:
  host: pair
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 4s, maxEjectionPercent: 100}
`);
      // Once ejected, every request lands on the healthy endpoint.
      const ejected = await eventually('ejection', 30_000, async () => {
        await load('client', 'http://pair/', 20, ['--c', '1']);
        const r = await load('client', 'http://pair/', 30, ['--c', '1']);
        return r.statuses['200'] === 30 ? Date.now() : undefined;
      });
      const during = await brokenStats();
      await new Promise((r) => setTimeout(r, 5000));
      await load('client', 'http://pair/', 30, ['--c', '1']);
      const after = await brokenStats();
      t.diagnostic(`ejected at ${new Date(ejected).toISOString()}; broken endpoint saw ${after - during - 1} requests after the ejection time`);
      assert.ok(after - during - 1 > 0, 'the ejected endpoint receives traffic again after baseEjectionTime');
    });

    await t.test('JWT: no token, a bad signature, an expired token and the wrong audience are refused', async () => {
      const { publicKey, privateKey } = await generateKeyPair('ES256');
      const other = await generateKeyPair('ES256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
      const token = async (o: { key?: KeyLike; aud?: string; exp?: number }) =>
        new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://issuer.example').setAudience(o.aud ?? 'shop')
          .setIssuedAt(Math.floor(Date.now() / 1000) - 60).setExpirationTime(o.exp ?? Math.floor(Date.now() / 1000) + 600).sign(o.key ?? privateKey);
      apply(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ${NS}}
spec:
  targetRefs: [{kind: Service, group: "", name: secure}]
  jwtRules:
  - issuer: https://issuer.example
    audiences: [shop]
    jwks: '${JSON.stringify({ keys: [jwk] })}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: need-jwt, namespace: ${NS}}
spec:
  targetRefs: [{kind: Service, group: "", name: secure}]
  action: ALLOW
  rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]}]
`);
      const status = async (auth?: string) => Object.keys((await load('client', 'http://secure/', 1, auth ? ['--header', `authorization: Bearer ${auth}`] : [])).statuses)[0];
      const good = await token({});
      await eventually('the JWT policy applies', 20_000, async () => (await status()) === '403' && (await status(good)) === '200');
      assert.equal(await status(await token({ key: other.privateKey })), '401', 'bad signature');
      assert.equal(await status(await token({ exp: Math.floor(Date.now() / 1000) - 3600 })), '401', 'expired');
      assert.equal(await status(await token({ aud: 'someone-else' })), '401', 'wrong audience');
      assert.equal(await status(), '403', 'no token where a request principal is required');
      assert.equal(await status(good), '200');
    });

    await t.test('local rate limit answers 429 beyond the bucket', async () => {
      apply(`
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: limited
  namespace: ${NS}
  annotations: {ambit.io/local-rate-limit: "5/m burst 5"}
spec:
  parentRefs: [{group: "", kind: Service, name: limited, port: 80}]
  rules: [{backendRefs: [{name: limited, port: 80}]}]
`);
      await eventually('the limit applies', 20_000, async () => ((await load('client', 'http://limited/', 10, ['--c', '1'])).statuses['429'] ?? 0) > 0);
      const r = await load('client', 'http://limited/', 20, ['--c', '1']);
      assert.equal(r.statuses['429'], 20, JSON.stringify(r.statuses));
    });

    await t.test('an HTTP/2 rapid-reset flood does not take the waypoint down', async () => {
      const wpBefore = (await podList(co)).find((p) => p.name === 'waypoint-waypoint')!;
      const r = await exec('client', ['rapid-reset', '--url', 'http://echo:81', '--n', '5000'], 120_000);
      t.diagnostic(`rapid reset: ${r.out}`);
      const res = JSON.parse(r.out) as { sent: number; after: number | string };
      assert.equal(res.after, 200, 'a new connection is served after the flood');
      const wpAfter = (await podList(co)).find((p) => p.name === 'waypoint-waypoint')!;
      assert.equal(wpAfter.pid, wpBefore.pid, 'the waypoint process survived');
      assert.equal(wpAfter.restarts, wpBefore.restarts);
      assert.equal((await load('client', 'http://echo/', 20)).statuses['200'], 20);
    });

    await t.test('a trace of one request shows the waypoint span with the caller\'s trace id', async () => {
      const collector = await podRun({ ...co, name: 'otel', namespace: 'default', node: 'node2', command: [node, TOOLS, 'otlp', '--port', '4318'] });
      const gw = await admin!.get('Gateway', NS, 'waypoint');
      await admin!.apply([{ ...gw, metadata: { ...gw.metadata, annotations: { ...(gw.metadata.annotations ?? {}), 'ambit.io/otlp-endpoint': `http://${collector.ip}:4318/v1/traces` } }, status: undefined }]);
      const traceId = randomBytes(16).toString('hex');
      const parent = randomBytes(8).toString('hex');
      const spans = await eventually('the span at the collector', 90_000, async () => {
        await load('client', 'http://echo/traced', 1, ['--header', `traceparent: 00-${traceId}-${parent}-01`]);
        const got = await podExec({ ...co, name: 'otel', namespace: 'default', command: [node, '-e', "fetch('http://127.0.0.1:4318/spans').then(r=>r.text()).then(t=>process.stdout.write(t))"], timeoutMs: 20_000 });
        const list = JSON.parse(got.stdout || '[]') as Array<{ traceId: string; parentSpanId?: string; name: string; url?: string }>;
        const mine = list.filter((x) => x.traceId === traceId);
        return mine.length > 0 ? mine : undefined;
      });
      assert.equal(spans[0].parentSpanId, parent);
      // Named as Istio's route decorator names it; the request's path is in the span's http.url.
      assert.equal(spans[0].name, 'echo.shop.svc.cluster.local:80/*');
      assert.match(spans[0].url ?? '', /\/traced/);
    });
  } finally {
    admin?.close();
    await down(co).catch(() => undefined);
    fs.rmSync(co.dir, { recursive: true, force: true });
  }
});
