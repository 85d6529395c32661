/**
 * Reading the compacted routes topic as a table: from the beginning, in a consumer
 * group of its own that lives as long as the reader (a group that resumed from a
 * committed offset would miss the hosts whose latest set is older than that offset),
 * with a signal once everything that was on the topic at start has been read.
 */
import { randomUUID } from 'node:crypto';
import type { EventBus, Subscription } from '../../lib/bus/kafka.js';
import type { Logger } from '../../lib/logger.js';
import { errorMessage, isRetriable } from '../../lib/errors.js';
import type { RouteSet } from '../../schemas/events.js';

export interface RoutesReader {
  /**
   * Resolves `true` once every set on the topic at start was handed over, or `false`
   * after `catchUpTimeoutMs` (or a stop) without getting there.
   */
  caughtUp: Promise<boolean>;
  /** Whether everything on the topic at start has been read by now. */
  complete(): boolean;
  stop(): Promise<void>;
}

export interface RoutesReaderOptions {
  bus: EventBus;
  logger: Logger;
  /** Group name stem; a random suffix makes the group this reader's own. */
  name: string;
  onSet(set: RouteSet): void;
  catchUpTimeoutMs: number;
  /** Keep following the topic after catching up (the applier) or only read it (a seed). Default true. */
  follow?: boolean;
}

export async function readRoutes(o: RoutesReaderOptions): Promise<RoutesReader> {
  const topic = o.bus.topic('routes');
  const ends = await endOffsets(o.bus, topic, o.logger);
  // Next offset to read per partition, against the end offset at start.
  const remaining = new Map<number, bigint>();
  for (const p of ends) if (BigInt(p.high) > BigInt(p.low)) remaining.set(p.partition, BigInt(p.high));
  let resolveCaughtUp!: (done: boolean) => void;
  const caughtUp = new Promise<boolean>((r) => (resolveCaughtUp = r));
  const check = () => {
    if (remaining.size === 0) resolveCaughtUp(true);
  };
  check();
  if (remaining.size === 0 && o.follow === false) return { caughtUp, complete: () => true, stop: () => Promise.resolve() };
  const timer = setTimeout(() => {
    if (remaining.size > 0) o.logger.warn({ partitions: [...remaining.keys()], timeoutMs: o.catchUpTimeoutMs }, 'routes topic not read to its end in time');
    resolveCaughtUp(remaining.size === 0);
  }, o.catchUpTimeoutMs);
  void caughtUp.then(() => clearTimeout(timer));

  let sub: Subscription;
  try {
    sub = await o.bus.subscribe({
      group: `${o.name}.${randomUUID()}`,
      topics: ['routes'],
      fromBeginning: true,
      handle: (batch, ctx) => {
        for (const m of batch) o.onSet(m.event);
        const last = batch[batch.length - 1];
        const end = remaining.get(ctx.partition);
        if (last && end !== undefined && BigInt(last.offset) + 1n >= end) {
          remaining.delete(ctx.partition);
          check();
        }
        return Promise.resolve();
      },
    });
  } catch (err) {
    clearTimeout(timer);
    throw err;
  }
  return {
    caughtUp,
    complete: () => remaining.size === 0,
    async stop() {
      clearTimeout(timer);
      resolveCaughtUp(remaining.size === 0);
      await sub.stop();
      // The group was this reader's alone: leave nothing behind in Kafka.
      await o.bus.admin((a) => a.deleteGroups([sub.group])).catch((err: unknown) => o.logger.debug({ group: sub.group, err: errorMessage(err) }, 'could not delete the reader group'));
    },
  };
}

/**
 * The topic's end offsets. Right after the topic is created a partition may not have
 * its leader known everywhere yet (NOT_LEADER_FOR_PARTITION, retriable): retried with
 * jittered backoff for about 10 s.
 */
async function endOffsets(bus: EventBus, topic: string, logger: Logger): Promise<Array<{ partition: number; high: string; low: string }>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await bus.admin((a) => a.fetchTopicOffsets(topic));
    } catch (err) {
      if (attempt >= 8 || !isRetriable(err)) throw err;
      const delay = Math.min(2000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);
      logger.warn({ topic, attempt, err: errorMessage(err), retryInMs: Math.round(delay) }, 'reading the end offsets failed; retrying');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
