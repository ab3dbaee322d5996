import fs from 'node:fs';

/**
 * Processes by PID, and only by PID. A PID is paired with its start time (field 22 of
 * /proc/PID/stat) wherever it was recorded, so that a PID the kernel has since given to an
 * unrelated process is never signalled.
 */
export interface ProcRef {
  pid: number;
  /** /proc/PID/stat starttime when recorded; checked before signalling. */
  startTime?: string;
}

export function startTimeOf(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: fields after the last ")".
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19]; // field 22 overall; rest starts at field 3
  } catch {
    return undefined;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** The recorded process still exists (same PID and start time) and is not a zombie. */
export function isAlive(ref: ProcRef): boolean {
  if (!Number.isInteger(ref.pid) || ref.pid <= 1) return false;
  const st = startTimeOf(ref.pid);
  if (st === undefined) return false;
  if (ref.startTime !== undefined && st !== ref.startTime) return false;
  return !isZombie(ref.pid);
}

/** Signals the process (and its process group when it leads one), if it is still the recorded one. */
export function signal(ref: ProcRef, sig: NodeJS.Signals, group = false): boolean {
  if (!isAlive(ref)) return false;
  try {
    if (group) {
      try {
        process.kill(-ref.pid, sig);
        return true;
      } catch {
        // not a group leader: fall through to the process itself
      }
    }
    process.kill(ref.pid, sig);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM, wait up to graceMs for all to exit, then SIGKILL what is left. */
export async function killAndWait(refs: ProcRef[], graceMs: number, group = false): Promise<void> {
  const live = refs.filter(isAlive);
  for (const r of live) signal(r, 'SIGTERM', group);
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && live.some(isAlive)) await sleep(50);
  for (const r of live) if (isAlive(r)) signal(r, 'SIGKILL', group);
  const hard = Date.now() + 2000;
  while (Date.now() < hard && live.some(isAlive)) await sleep(20);
}
