/**
 * Per-container checkpoints: where to resume reading a container's logs. Written only
 * after Kafka acknowledged every line before that point, atomically (temporary file,
 * fsync, rename), so a crash leaves either the old or the new checkpoint, never half.
 * A write that fails (read-only directory, disk full) leaves the old one in force: the
 * store never reports a checkpoint that is not on disk, and the caller retries.
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
  /** What is on disk: where a restart resumes. */
  private readonly persisted = new Map<string, Checkpoint>();
  /** The newest checkpoint asked for, per container (written next). */
  private readonly wanted = new Map<string, Checkpoint>();
  private readonly writing = new Map<string, Promise<void>>();
  private lastWriteFailed = false;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const cp = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as Checkpoint;
        this.persisted.set(cp.containerId, cp);
      } catch {
        // A file that does not parse cannot come from our atomic writes; ignore it (resume from the start).
      }
    }
  }

  /** The checkpoint on disk. One that could not be written (read-only directory, disk full) is not it. */
  get(containerId: string): Checkpoint | undefined {
    return this.persisted.get(containerId);
  }

  all(): Checkpoint[] {
    return [...this.persisted.values()];
  }

  /** True while the last write failed (until one succeeds). */
  get failing(): boolean {
    return this.lastWriteFailed;
  }

  /** Writes the checkpoint; writes for one container are serialized, the newest wins. Rejects when it could not be written. */
  async put(cp: Checkpoint): Promise<void> {
    this.wanted.set(cp.containerId, cp);
    const prev = this.writing.get(cp.containerId) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => this.write(cp));
    this.writing.set(cp.containerId, next);
    try {
      await next;
      this.lastWriteFailed = false;
    } catch (err) {
      this.lastWriteFailed = true;
      throw err;
    } finally {
      if (this.writing.get(cp.containerId) === next) this.writing.delete(cp.containerId);
    }
  }

  async remove(containerId: string): Promise<void> {
    this.wanted.delete(containerId);
    this.persisted.delete(containerId);
    await (this.writing.get(containerId) ?? Promise.resolve()).catch(() => undefined);
    await rm(this.file(containerId), { force: true });
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  private async write(cp: Checkpoint): Promise<void> {
    // A newer one may have been asked for by now: write the newest.
    const newest = this.wanted.get(cp.containerId) ?? cp;
    const tmp = `${this.file(cp.containerId)}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(JSON.stringify(newest));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file(cp.containerId));
    this.persisted.set(cp.containerId, newest);
  }
}
