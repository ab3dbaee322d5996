import fs from 'node:fs';
import path from 'node:path';

/**
 * Where a cluster keeps things: everything lives under one state dir (default
 * /var/run/ambit-dev, env AMBIT_DEV_DIR), except the netns bind mounts (/var/run/netns)
 * and the pods' /etc/netns/<netns>/ files, which `ip netns exec` requires there.
 */
export const DEFAULT_DEV_DIR = '/var/run/ambit-dev';
/** sun_path holds 108 bytes with the NUL. */
export const MAX_SOCKET_PATH = 107;

export function resolveDevDir(dir?: string): string {
  return path.resolve(dir || process.env.AMBIT_DEV_DIR || DEFAULT_DEV_DIR);
}

export class ClusterPaths {
  constructor(readonly dir: string) {}

  get clusterFile(): string {
    return path.join(this.dir, 'cluster.json');
  }
  /** Written by the supervisor only. */
  get processesFile(): string {
    return path.join(this.dir, 'processes.json');
  }
  get supervisorSocket(): string {
    return path.join(this.dir, 'supervisor.sock');
  }
  get supervisorLog(): string {
    return path.join(this.logsDir, 'supervisor.log');
  }
  get logsDir(): string {
    return path.join(this.dir, 'logs');
  }
  componentLog(id: string): string {
    return path.join(this.logsDir, `${id}.log`);
  }
  podLog(namespace: string, name: string): string {
    return path.join(this.logsDir, `pod-${namespace}_${name}.log`);
  }
  get controlPlaneDir(): string {
    return path.join(this.dir, 'controlplane');
  }
  /** The credential the control plane writes (server 127.0.0.1, valid inside its netns only). */
  get controlPlaneAdminFile(): string {
    return path.join(this.controlPlaneDir, 'admin.yaml');
  }
  /** The same credential with the server set to the unix socket below: usable from anywhere on the machine. */
  get adminConfigFile(): string {
    return path.join(this.dir, 'admin.yaml');
  }
  /** A unix socket forwarded to the control plane's gRPC port inside its netns. */
  get controlPlaneSocket(): string {
    return path.join(this.dir, 'cp.sock');
  }
  get rootCertFile(): string {
    return path.join(this.dir, 'root-cert.pem');
  }
  hostDir(host: string): string {
    return path.join(this.dir, 'hosts', host);
  }
  /** The cni agent's --state-dir: node.yaml (the node credential) and pods.json. */
  hostStateDir(host: string): string {
    return path.join(this.hostDir(host), 'state');
  }
  hostCredential(host: string): string {
    return path.join(this.hostStateDir(host), 'node.yaml');
  }
  hostAgentPods(host: string): string {
    return path.join(this.hostStateDir(host), 'pods.json');
  }
  cniSocket(host: string): string {
    return path.join(this.hostDir(host), 'cni.sock');
  }
  ztunnelSocket(host: string): string {
    return path.join(this.hostDir(host), 'ztunnel.sock');
  }
  get cniDir(): string {
    return path.join(this.dir, 'cni');
  }
  /** CNI_PATH: symlinks to the reference plugins and to bin/ambit-cni. */
  get cniBinDir(): string {
    return path.join(this.cniDir, 'bin');
  }
  /** host-local's dataDir for one host (IP reservations). */
  cniIpamDir(host: string): string {
    return path.join(this.cniDir, 'ipam', host);
  }
  /** The network configuration list the runtime executes for pods on this host. */
  cniConflist(host: string): string {
    return path.join(this.cniDir, 'net.d', `${host}.conflist`);
  }
  get podsDir(): string {
    return path.join(this.dir, 'pods');
  }
  podRecord(namespace: string, name: string): string {
    return path.join(this.podsDir, `${namespace}_${name}.json`);
  }

  /** Everything this module creates directly under the state dir (what `down` removes). */
  get ownedEntries(): string[] {
    return ['cluster.json', 'processes.json', 'supervisor.sock', 'logs', 'controlplane', 'admin.yaml', 'cp.sock', 'root-cert.pem', 'hosts', 'cni', 'pods']
      .map((e) => path.join(this.dir, e));
  }

  socketPaths(hosts: string[]): string[] {
    return [this.supervisorSocket, this.controlPlaneSocket, ...hosts.flatMap((h) => [this.cniSocket(h), this.ztunnelSocket(h)])];
  }
}

/** /etc/netns/<netns>/: `ip netns exec` bind-mounts its files over /etc (resolv.conf, hosts). */
export function etcNetnsDir(netns: string): string {
  return path.join('/etc/netns', netns);
}

let root: string | undefined;

/** The package root (holds package.json and bin/ambit), found from this compiled file's location. */
export function repoRoot(): string {
  if (root) return root;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'bin', 'ambit'))) {
      root = dir;
      return dir;
    }
    if (path.dirname(dir) === dir) throw new Error(`no package root with bin/ambit above ${__dirname}`);
  }
}

export function ambitBin(): string {
  return path.join(repoRoot(), 'bin', 'ambit');
}

export function ambitCniBin(): string {
  return path.join(repoRoot(), 'bin', 'ambit-cni');
}

/** The reference CNI plugins (Debian: containernetworking-plugins). */
export function referencePluginDir(): string {
  return process.env.AMBIT_CNI_PLUGIN_DIR || '/usr/lib/cni';
}
