/**
 * The commits of one kafkajs subscription: a handled part's at once (`commitNow`), and
 * those that trail their handlers (bus.ts `deferCommit`, deferred-commit.ts):
 * - the commits go through the consumer of the moment (none while it is rebuilt or once it
 *   is stopped); a failed work rebuilds the consumer (not while stopping);
 * - each fetched batch gets its Deferral (delivery.ts), which resolves the consumer's fetch
 *   position past a deferred part;
 * - at each join, the parts of partitions no longer assigned are dropped (`retain`): a late
 *   commit by the partition's old owner would move the group's offset back;
 * - a stop first drains: fetching is paused, the batches being delivered end, and the work
 *   waiting (the sink's queued inserts) is done and committed, within `deadlineMs`, before
 *   the consumer is disconnected, so a clean stop leaves nothing to read again and no work
 *   of the subscription runs after its stop returned (the sink's ClickHouse is closed then).
 */
import type { Consumer, EachBatchPayload } from 'kafkajs';
import type { Logger } from '../logger.js';
import type { TopicName } from '../../schemas/events.js';
import type { Deferral } from './delivery.js';
import { DeferredCommits } from './deferred-commit.js';

export interface KafkajsDeferralsOptions<T extends TopicName> {
  /** The consumer running now (undefined while it is rebuilt or once stopped). */
  current(): { consumer: Consumer; abort: AbortController } | undefined;
  stopping(): boolean;
  rebuild(reason: string): void;
  byFullName: ReadonlyMap<string, T>;
  onCommitted?: ((topic: T, partition: number, next: bigint) => void) | undefined;
  maxMessages: number;
  log: Logger;
}

export class KafkajsDeferrals<T extends TopicName> {
  readonly commits: DeferredCommits;
  /** The batches being delivered now. */
  private readonly active = new Set<Promise<unknown>>();

  constructor(private readonly o: KafkajsDeferralsOptions<T>) {
    this.commits = new DeferredCommits({
      commit: async (topic, partition, next) => {
        const c = o.current();
        if (!c || c.abort.signal.aborted) return false;
        await c.consumer.commitOffsets([{ topic, partition, offset: `${next}` }]);
        o.onCommitted?.(o.byFullName.get(topic)!, partition, next);
        return true;
      },
      onFailure: (reason) => {
        // A stop disconnects anyway; what was not committed is read again at the next start.
        if (!o.stopping()) o.rebuild(`deferred work failed: ${reason}`);
      },
      maxMessages: o.maxMessages,
      log: o.log,
    });
  }

  /** Commits a handled part: the offset after `lastOffset`, unless the batch is no longer this consumer's to commit. */
  async commitNow(consumer: Consumer, payload: EachBatchPayload, signal: AbortSignal, lastOffset: string): Promise<boolean> {
    const { topic, partition } = payload.batch;
    if (!payload.isRunning() || payload.isStale() || signal.aborted) return false;
    const next = BigInt(lastOffset) + 1n;
    await consumer.commitOffsets([{ topic, partition, offset: next.toString() }]);
    // resolveOffset keeps kafkajs' in-memory position in step with the commit.
    payload.resolveOffset(lastOffset);
    this.o.onCommitted?.(this.o.byFullName.get(topic)!, partition, next);
    return true;
  }

  /** The Deferral of one fetched batch of `consumer` (stopped by `signal`). */
  forBatch(payload: EachBatchPayload, signal: AbortSignal): Deferral {
    return this.commits.deferral(payload.batch.topic, payload.batch.partition, signal, {
      ours: () => payload.isRunning() && !payload.isStale(),
      resolve: (last) => payload.resolveOffset(last),
    });
  }

  /** Follows a batch's delivery, for `drain`. */
  track<R>(delivery: Promise<R>): Promise<R> {
    this.active.add(delivery);
    const forget = () => void this.active.delete(delivery);
    delivery.then(forget, forget);
    return delivery;
  }

  /**
   * Pauses `consumer`'s fetching and waits until no batch is delivered and no deferred part
   * waits (done and committed, or forgotten after a failure), at most `deadlineMs`. False
   * when the deadline came first (what still waits is then read again at the next start).
   * A subscription that never deferred does not wait: its stop aborts the batch being
   * handled at once, as before (its retries end, the batch stays uncommitted).
   */
  async drain(consumer: Consumer, topics: readonly string[], deadlineMs: number): Promise<boolean> {
    if (!this.commits.used) return true;
    try {
      consumer.pause(topics.map((topic) => ({ topic })));
    } catch {
      // Not running (any more): nothing is fetched either way.
    }
    const idle = (async () => {
      while (this.active.size > 0 || this.commits.pendingMessages > 0) {
        await Promise.allSettled([...this.active]);
        await this.commits.settled();
      }
      return true;
    })();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([idle, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs)))]);
    clearTimeout(timer);
    if (!drained) this.o.log.warn({ waiting: this.commits.pendingMessages, deadlineMs }, 'stop: deferred work not done in time; its messages are read again at the next start');
    return drained;
  }
}
