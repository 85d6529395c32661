/**
 * Where to resume a container's logs, in terms Docker's logs API understands.
 *
 * The API has no offsets, only `since` (a time). Docker stamps each stream's messages
 * in its own goroutine, so across stdout and stderr the file order can be slightly out
 * of time order; resuming at the last timestamp would lose a message written after it
 * with an earlier stamp. So a resume point is `since` = (newest timestamp − overlap)
 * plus `skip` = how many messages at or after `since` were already read: Docker returns
 * messages in file order, so skipping that many lands exactly after the last one read.
 * Per-millisecond counts of the recent messages make `skip` cheap to compute.
 */
import type { Message } from './logstream.js';

export interface ResumePoint {
  /** Ask Docker for messages stamped at or after this instant (ms). */
  sinceMs: number;
  /** Then skip this many of them: they were read before. */
  skip: number;
  /** Newest timestamp read (for lag metrics and humans). */
  lastTs: string;
  lastTsMs: number;
}

export const START: ResumePoint = { sinceMs: 0, skip: 0, lastTs: '', lastTsMs: 0 };

export class PositionTracker {
  /** Message count per millisecond, for the recent window. */
  private readonly buckets = new Map<number, number>();
  private maxMs = 0;
  private lastTs = '';
  private skipLeft: number;
  private readonly floorMs: number;

  constructor(
    private readonly overlapMs: number,
    from: ResumePoint = START,
  ) {
    this.floorMs = from.sinceMs;
    this.skipLeft = from.skip;
    this.maxMs = from.lastTsMs;
    this.lastTs = from.lastTs;
  }

  /** Records a message in stream order; true when it was read before (replay: do not emit). */
  observe(m: Message): boolean {
    this.buckets.set(m.tsMs, (this.buckets.get(m.tsMs) ?? 0) + 1);
    if (m.tsMs > this.maxMs || (m.tsMs === this.maxMs && m.ts > this.lastTs)) {
      this.maxMs = m.tsMs;
      this.lastTs = m.ts;
      if (this.buckets.size > 4 * this.overlapMs) this.prune();
    }
    if (this.skipLeft > 0) {
      this.skipLeft--;
      return true;
    }
    return false;
  }

  /** True while messages read before are being skipped. */
  get replaying(): boolean {
    return this.skipLeft > 0;
  }

  /** The resume point just after every message observed so far. */
  snapshot(): ResumePoint {
    const sinceMs = Math.max(this.floorMs, this.maxMs - this.overlapMs);
    let skip = 0;
    for (const [ms, n] of this.buckets) if (ms >= sinceMs) skip += n;
    return { sinceMs, skip, lastTs: this.lastTs, lastTsMs: this.maxMs };
  }

  private prune(): void {
    const keepFrom = this.maxMs - 2 * this.overlapMs;
    for (const ms of this.buckets.keys()) if (ms < keepFrom) this.buckets.delete(ms);
  }
}
