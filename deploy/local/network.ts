import { addNetns, sysctl } from './netns';
import { run } from './sh';
import { ControlPlaneSpec, FABRIC_BRIDGE, FABRIC_SUBNET_PREFIX, HOST_FABRIC_IF, HostSpec } from './topology';

/**
 * The cluster's L2/L3 plumbing, all of it inside namespaces created here: the fabric
 * (a bridge in its own netns), the control plane's netns and the host netns, each joined
 * to the fabric by a veth pair that is created inside the fabric netns with its peer
 * placed straight into the other netns (never in the machine's own netns).
 */
export function createFabric(netns: string): void {
  addNetns(netns);
  run(['ip', '-n', netns, 'link', 'add', FABRIC_BRIDGE, 'type', 'bridge']);
  run(['ip', '-n', netns, 'link', 'set', FABRIC_BRIDGE, 'up']);
}

/** A veth pair: `port` on the fabric's bridge, eth0 with `ip` inside `netns`. */
function attach(fabric: string, port: string, netns: string, ip: string): void {
  run(['ip', '-n', fabric, 'link', 'add', port, 'type', 'veth', 'peer', 'name', HOST_FABRIC_IF, 'netns', netns]);
  run(['ip', '-n', fabric, 'link', 'set', port, 'master', FABRIC_BRIDGE, 'up']);
  run(['ip', '-n', netns, 'addr', 'add', `${ip}/${FABRIC_SUBNET_PREFIX}`, 'dev', HOST_FABRIC_IF]);
  run(['ip', '-n', netns, 'link', 'set', HOST_FABRIC_IF, 'up']);
}

export function createControlPlaneNetns(fabric: string, cp: ControlPlaneSpec, hosts: HostSpec[]): void {
  addNetns(cp.netns);
  attach(fabric, cp.fabricPort, cp.netns, cp.ip);
  // Pods are reachable from the control plane too (e.g. for a future webhook or probe).
  for (const h of hosts) run(['ip', '-n', cp.netns, 'route', 'replace', h.podCidr, 'via', h.fabricIp, 'dev', HOST_FABRIC_IF]);
}

export function createHostNetns(fabric: string, host: HostSpec, all: HostSpec[]): void {
  addNetns(host.netns);
  attach(fabric, host.fabricPort, host.netns, host.fabricIp);
  sysctl(host.netns, 'net.ipv4.ip_forward', '1');
  for (const other of all) {
    if (other.name === host.name) continue;
    run(['ip', '-n', host.netns, 'route', 'replace', other.podCidr, 'via', other.fabricIp, 'dev', HOST_FABRIC_IF]);
  }
}

/** Creates the whole topology; the caller has made sure none of these namespaces exists. */
export function createTopology(fabric: string, cp: ControlPlaneSpec, hosts: HostSpec[], progress: (s: string) => void): void {
  createFabric(fabric);
  createControlPlaneNetns(fabric, cp, hosts);
  for (const h of hosts) {
    createHostNetns(fabric, h, hosts);
    progress(`host ${h.name}: netns ${h.netns}, ${h.fabricIp}/${FABRIC_SUBNET_PREFIX} on the fabric, pods ${h.podCidr}`);
  }
}
