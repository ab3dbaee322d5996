import fs from 'node:fs';
import type { PodInfo } from '../../lib/api/node-protocol';
import { writeFileAtomic } from '../../lib/util/fs-atomic';

export interface PodRecord extends PodInfo {
  containerId: string;
  labels: Record<string, string>;
  enrolled: boolean;
}

/** The agent's pods, on disk so that a restarted agent knows what it had set up. */
export class PodStore {
  private readonly pods = new Map<string, PodRecord>();

  constructor(private readonly file: string) {
    try {
      for (const p of JSON.parse(fs.readFileSync(file, 'utf8')) as PodRecord[]) this.pods.set(p.containerId, p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file}: ${(err as Error).message}`);
    }
  }

  get(containerId: string): PodRecord | undefined {
    return this.pods.get(containerId);
  }

  all(): PodRecord[] {
    return [...this.pods.values()];
  }

  put(p: PodRecord): void {
    this.pods.set(p.containerId, p);
    this.flush();
  }

  delete(containerId: string): void {
    if (this.pods.delete(containerId)) this.flush();
  }

  private flush(): void {
    writeFileAtomic(this.file, JSON.stringify(this.all(), null, 2), 0o600);
  }
}
