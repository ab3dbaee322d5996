/**
 * The CLI <-> supervisor protocol: one JSON request per connection on
 * <state dir>/supervisor.sock, terminated by "\n"; one JSON response the same way.
 * The supervisor writes what it runs to <state dir>/processes.json (it is the only writer).
 */
export type RestartPolicy = 'always' | 'on-failure' | 'never';

export interface ProcSpec {
  /** Unique within the cluster: "controlplane", "node1/ztunnel", "pod/default/web", ... */
  id: string;
  argv: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** stdout and stderr are appended here. */
  log: string;
  restart: RestartPolicy;
  /** Grace period between SIGTERM and SIGKILL when stopping. */
  stopGraceMs?: number;
  /** Write a "--- start" line to the log before each start (default true; pods' logs hold only their own output). */
  logHeader?: boolean;
}

export type ProcState = 'running' | 'backoff' | 'exited' | 'failed' | 'stopped';

export interface ProcStatus {
  id: string;
  argv: string[];
  log: string;
  restart: RestartPolicy;
  state: ProcState;
  pid?: number;
  /** /proc/PID/stat starttime, to recognise the process later. */
  startTime?: string;
  startedAt?: string;
  /** How many times the supervisor started it again after it ended. */
  restarts: number;
  lastExit?: { code: number | null; signal: string | null; at: string };
  /** When state is backoff: when the next start is due. */
  nextStartAt?: string;
  /** Order of first start; stopping goes the other way. */
  seq: number;
}

export interface ProcessesFile {
  supervisor: { pid: number; startTime?: string; startedAt: string; socket: string };
  procs: Record<string, ProcStatus>;
}

export type SupervisorRequest =
  | { op: 'ping' }
  | { op: 'start'; spec: ProcSpec }
  | { op: 'stop'; id: string; forget?: boolean }
  | { op: 'status' }
  | { op: 'shutdown' };

export type SupervisorResponse =
  | { ok: true; status?: ProcStatus; procs?: ProcStatus[]; pid?: number }
  | { ok: false; error: string };
