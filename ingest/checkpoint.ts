/**
 * Per-container checkpoints: where to resume reading a container's logs. Written only
 * after Kafka acknowledged every line before that point, atomically (temporary file,
 * fsync, rename), so a crash leaves either the old or the new checkpoint, never half.
 */
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ResumePoint } from './position.js';

export interface Checkpoint extends ResumePoint {
  containerId: string;
  /** The container's log stream ended (it stopped) and everything was acknowledged. */
  finished: boolean;
  updatedAt: number;
}

export class CheckpointStore {
  private readonly cache = new Map<string, Checkpoint>();
  private readonly writing = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const cp = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Checkpoint;
        this.cache.set(cp.containerId, cp);
      } catch {
        // A file that does not parse cannot come from our atomic writes; ignore it (resume from the start).
      }
    }
  }

  get(containerId: string): Checkpoint | undefined {
    return this.cache.get(containerId);
  }

  all(): Checkpoint[] {
    return [...this.cache.values()];
  }

  /** Writes the checkpoint; writes for one container are serialized, the newest wins. */
  async put(cp: Checkpoint): Promise<void> {
    this.cache.set(cp.containerId, cp);
    const prev = this.writing.get(cp.containerId) ?? Promise.resolve();
    const next = prev.then(() => this.write(cp));
    this.writing.set(cp.containerId, next);
    try {
      await next;
    } finally {
      if (this.writing.get(cp.containerId) === next) this.writing.delete(cp.containerId);
    }
  }

  async remove(containerId: string): Promise<void> {
    this.cache.delete(containerId);
    await (this.writing.get(containerId) ?? Promise.resolve());
    await rm(this.file(containerId), { force: true });
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  private async write(cp: Checkpoint): Promise<void> {
    // The cache may hold a newer one by now: write the newest.
    const newest = this.cache.get(cp.containerId) ?? cp;
    const tmp = `${this.file(cp.containerId)}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(newest));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file(cp.containerId));
  }
}
