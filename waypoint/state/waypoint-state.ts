import type { WaypointServiceConfig } from '../../lib/api/waypoint-config';
import { ServiceMsg, TYPE_SERVICE, TYPE_WAYPOINT_SERVICE, TYPE_WORKLOAD, WorkloadMsg } from '../../lib/api/workload-types';
import { checkService, checkWorkload, Snapshot } from '../../lib/mesh/snapshot';
import type { DeltaUpdate } from '../../lib/xds/client';

export interface WaypointView {
  mesh: Snapshot;
  /** L7 configuration of each service bound to this waypoint, by resource name (l7/<ns>/<service>). */
  services: ReadonlyMap<string, WaypointServiceConfig>;
}

/**
 * The waypoint's configuration, written only by the discovery stream. An update is
 * checked whole before anything changes; `commit` then decides (through the engine)
 * whether it is taken: a refused update leaves the last good view serving.
 */
export class WaypointState {
  private workloads = new Map<string, WorkloadMsg>();
  private svcs = new Map<string, ServiceMsg>();
  private configs = new Map<string, WaypointServiceConfig>();
  private current: WaypointView = { mesh: Snapshot.empty(), services: new Map() };
  synced = false;

  get view(): WaypointView {
    return this.current;
  }

  /** The view an update would produce; throws (naming the resource) if it cannot be used. */
  prepare(u: DeltaUpdate): { view: WaypointView; commit: (refused?: ReadonlySet<string>) => void } {
    const w = new Map(this.workloads);
    const s = new Map(this.svcs);
    const c = new Map(this.configs);
    for (const name of u.removed) {
      w.delete(name);
      s.delete(name);
      c.delete(name);
    }
    for (const [name, r] of u.changed) {
      if (r.type === TYPE_WORKLOAD) w.set(name, checkWorkload(name, r.value as WorkloadMsg));
      else if (r.type === TYPE_SERVICE) s.set(name, checkService(name, r.value as ServiceMsg));
      else if (r.type === TYPE_WAYPOINT_SERVICE) c.set(name, checkConfig(name, r.value));
      else throw new Error(`${name}: unknown resource type ${r.type}`);
    }
    const view: WaypointView = { mesh: new Snapshot(w, s, new Map()), services: c };
    return {
      view,
      /** `refused`: service configs the engine would not take; they keep their previous version (or stay absent). */
      commit: (refused = new Set<string>()) => {
        for (const name of refused) {
          const prev = this.configs.get(name);
          if (prev) c.set(name, prev);
          else c.delete(name);
        }
        this.workloads = w;
        this.svcs = s;
        this.configs = c;
        this.current = { mesh: view.mesh, services: c };
        this.synced = true;
      },
    };
  }
}

function checkConfig(name: string, v: unknown): WaypointServiceConfig {
  const c = v as Partial<WaypointServiceConfig> | null;
  if (!c || typeof c !== 'object' || !c.service || !Array.isArray(c.service.ports) || typeof c.service.hostname !== 'string') {
    throw new Error(`${name}: not a waypoint service configuration`);
  }
  for (const k of ['httpRoutes', 'grpcRoutes', 'virtualServices', 'destinationRules', 'authorizationPolicies', 'requestAuthentications'] as const) {
    if (!Array.isArray(c[k])) throw new Error(`${name}: ${k} is missing`);
  }
  return c as WaypointServiceConfig;
}
