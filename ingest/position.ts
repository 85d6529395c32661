/**
 * Where to resume a container's logs, in terms Docker's logs API understands.
 *
 * The API has no offsets, only `since` (a time). Docker stamps each stream's messages
 * in its own goroutine, so across stdout and stderr the file order can be slightly out
 * of time order; resuming at the last timestamp would lose a message written after it
 * with an earlier stamp. So a resume point is `since` = (newest timestamp − overlap)
 * plus `skip` = how many messages at or after `since` were already read: Docker returns
 * messages in file order, so skipping that many lands exactly after the last one read.
 * Per-millisecond counts of the recent messages make `skip` cheap to compute; consecutive
 * messages mostly share their millisecond (a busy container prints hundreds per ms), so a run
 * of them is counted in place and goes into the map when the millisecond changes (issue 13:
 * per-line work).
 */
import { LastStamp, type Message } from './logstream.js';

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
  /** Message count per millisecond, for the recent window (without the current run). */
  private readonly buckets = new Map<number, number>();
  /** The current run: `runCount` messages of millisecond `runMs` since it last went into `buckets`. */
  private runMs = Number.NaN;
  private runCount = 0;
  private maxMs = 0;
  /** The newest timestamp (of those of millisecond maxMs, the one that sorts last). */
  private readonly last: LastStamp;
  private skipLeft: number;
  private readonly floorMs: number;

  constructor(
    private readonly overlapMs: number,
    from: ResumePoint = START,
  ) {
    this.floorMs = from.sinceMs;
    this.skipLeft = from.skip;
    this.maxMs = from.lastTsMs;
    this.last = new LastStamp(from.lastTs);
  }

  /** Records a message in stream order; true when it was read before (replay: do not emit). */
  observe(m: Message): boolean {
    const ms = m.tsMs;
    if (ms === this.runMs) this.runCount++;
    else {
      this.endRun();
      this.runMs = ms;
      this.runCount = 1;
    }
    if (ms > this.maxMs || (ms === this.maxMs && this.last.before(m))) {
      this.maxMs = ms;
      this.last.set(m);
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
    let skip = this.runCount > 0 && this.runMs >= sinceMs ? this.runCount : 0;
    for (const [ms, n] of this.buckets) if (ms >= sinceMs) skip += n;
    return { sinceMs, skip, lastTs: this.last.ts, lastTsMs: this.maxMs };
  }

  /** The current run goes into the per-millisecond counts. */
  private endRun(): void {
    if (this.runCount === 0) return;
    this.buckets.set(this.runMs, (this.buckets.get(this.runMs) ?? 0) + this.runCount);
    this.runCount = 0;
    if (this.buckets.size > 4 * this.overlapMs) this.prune();
  }

  /**
   * Forgets the counts of milliseconds no snapshot can count again: a snapshot counts those
   * from maxMs − overlap on, and maxMs never goes back.
   */
  private prune(): void {
    const keepFrom = this.maxMs - 2 * this.overlapMs;
    for (const ms of this.buckets.keys()) if (ms < keepFrom) this.buckets.delete(ms);
  }
}
