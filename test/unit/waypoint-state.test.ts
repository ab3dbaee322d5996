import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TYPE_WAYPOINT_SERVICE } from '../../lib/api/workload-types';
import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { WaypointState } from '../../waypoint/state/waypoint-state';

const cfg = (name: string, marker: string): WaypointServiceConfig => ({
  service: { name, namespace: 'a', hostname: `${name}.a.svc.cluster.local`, vips: ['10.96.0.1'], ports: [{ servicePort: 80, targetPort: 8080 }] },
  waypoint: { namespace: 'a', name: 'wp' },
  httpRoutes: [{ namespace: 'a', name: marker, spec: {} }],
  grpcRoutes: [], virtualServices: [], destinationRules: [], authorizationPolicies: [], requestAuthentications: [],
});
const update = (changed: Record<string, WaypointServiceConfig | { bogus: true }>, removed: string[] = []) => ({
  nonce: 'n',
  changed: new Map(Object.entries(changed).map(([k, v]) => [k, { type: TYPE_WAYPOINT_SERVICE, version: 'v', value: v as unknown }])),
  removed,
});

test('waypoint state: a refused service config keeps its last good version (or stays absent); a malformed one refuses the update whole', () => {
  const st = new WaypointState();
  st.prepare(update({ 'l7/a/web': cfg('web', 'good') })).commit();
  assert.equal(st.view.services.get('l7/a/web')?.httpRoutes[0].name, 'good');

  const next = st.prepare(update({ 'l7/a/web': cfg('web', 'bad'), 'l7/a/new': cfg('new', 'bad-new'), 'l7/a/api': cfg('api', 'fine') }));
  next.commit(new Set(['l7/a/web', 'l7/a/new']));
  assert.equal(st.view.services.get('l7/a/web')?.httpRoutes[0].name, 'good', 'the refused config keeps its last good version');
  assert.equal(st.view.services.has('l7/a/new'), false, 'a refused new service is not served');
  assert.equal(st.view.services.get('l7/a/api')?.httpRoutes[0].name, 'fine', 'the rest of the update applies');

  assert.throws(() => st.prepare(update({ 'l7/a/x': { bogus: true } })), /l7\/a\/x: not a waypoint service configuration/);
  assert.equal(st.view.services.size, 2, 'nothing changed');
});
