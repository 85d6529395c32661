/**
 * The consumers' watchdog, the same for every bus adapter (issue 13: "no silent stall").
 * The collector's sender watches its producer; this watches each subscription:
 *
 * 1. A subscription is *idle* when no batch is in its handler and none was delivered for
 *    `stallMs`. A handler that is busy (e.g. retrying a ClickHouse that is down, a log
 *    line per attempt) is not idle: that is slow, and loud already.
 * 2. An idle subscription is asked for its lag (end offset − committed offset, over the
 *    partitions it was assigned). Idle with lag > 0 is a *stall*: messages wait and
 *    nothing reads them. It is logged as an error naming the group, topic, partitions
 *    and lag, counted (`logmeter_bus_consumer_stalls_total`), reported by `stalls()`
 *    (the process's `/healthz` says degraded with the reason) and the adapter rebuilds
 *    the consumer: a new member joins the group and reads from the committed offsets.
 * 3. The stall ends (logged, `/healthz` healthy again) when a batch has been handled
 *    again, or when the lag is found to be 0.
 * 4. A consumer that died on its own (a crash its client does not restart, a member the
 *    coordinator removed) is rebuilt by the adapter too (`restarted`, logged, counted).
 *
 * `judge` is the rule, a plain function; `ConsumerWatch` keeps one subscription's state.
 */
import type { Logger } from '../logger.js';
import { counter, createRegistry, type Registry } from '../metrics.js';
import { errorMessage } from '../errors.js';

/** One partition's lag: the group has committed `committed`, the partition ends at `end`. */
export interface PartitionLag {
  topic: string;
  partition: number;
  lag: number;
}

/** A stall the watchdog found. */
export interface ConsumerStall {
  group: string;
  /** Since when the subscription had been idle (epoch ms). */
  idleSince: number;
  /** The partitions with lag. */
  partitions: PartitionLag[];
  lag: number;
  reason: string;
}

/** What a look at a subscription shows: busy or recently fed (`active`), idle long enough to ask for its lag (`check`). */
export function judge(now: number, s: { busy: boolean; lastBatchAt: number }, stallMs: number): 'active' | 'check' {
  return s.busy || now - s.lastBatchAt < stallMs ? 'active' : 'check';
}

/** The stall an idle subscription's lags make, if any. */
export function stallOf(group: string, idleSince: number, lags: readonly PartitionLag[], now: number): ConsumerStall | undefined {
  const waiting = lags.filter((l) => l.lag > 0);
  if (waiting.length === 0) return undefined;
  const lag = waiting.reduce((s, l) => s + l.lag, 0);
  const byTopic = new Map<string, number[]>();
  for (const l of waiting) byTopic.set(l.topic, [...(byTopic.get(l.topic) ?? []), l.partition]);
  const where = [...byTopic].map(([t, ps]) => `${t} [${ps.sort((a, b) => a - b).join(', ')}]`).join(', ');
  return {
    group,
    idleSince,
    partitions: waiting,
    lag,
    reason: `consumer group ${group}: ${lag} message(s) waiting on ${where} and no batch delivered for ${Math.round((now - idleSince) / 1000)} s`,
  };
}

/** The bus's watchdog metrics, on the process's registry (a private one when none is given). */
export function watchdogMetrics(registry: Registry = createRegistry(false)) {
  return {
    stalls: counter(registry, 'logmeter_bus_consumer_stalls_total', 'Consumer stalls the watchdog found: lag > 0 and no batch delivered for kafka.consumerStallSeconds; each rebuilt the consumer', ['group']),
    restarts: counter(registry, 'logmeter_bus_consumer_restarts_total', 'Consumers torn down and rebuilt, by cause: stall (the watchdog), crash (the client gave up on it)', ['group', 'cause']),
  };
}

export type WatchdogMetrics = ReturnType<typeof watchdogMetrics>;

export interface WatchOptions {
  group: string;
  stallMs: number;
  log: Logger;
  metrics: WatchdogMetrics;
  /** The lag of the partitions this member reads (all of the topics' when it has no assignment). */
  lag(): Promise<PartitionLag[]>;
  /** Tears the consumer down and builds it again; resolves once the new one runs. */
  rebuild(reason: string): Promise<void>;
  clock?: () => number;
}

/** One subscription under watch. The adapter tells it of batches; the bus ticks it. */
export class ConsumerWatch {
  private busy = 0;
  private lastBatchAt: number;
  private current: ConsumerStall | undefined;
  private checking = false;
  private readonly clock: () => number;

  constructor(private readonly o: WatchOptions) {
    this.clock = o.clock ?? Date.now;
    this.lastBatchAt = this.clock();
  }

  /** The stall being recovered from, if any. */
  get stall(): ConsumerStall | undefined {
    return this.current;
  }

  batchStarted(): void {
    this.busy++;
    this.lastBatchAt = this.clock();
  }

  /** A batch left the handler (handled, or abandoned to be delivered again). */
  batchEnded(handled: boolean): void {
    this.busy = Math.max(0, this.busy - 1);
    this.lastBatchAt = this.clock();
    if (handled && this.current) {
      this.o.log.warn({ group: this.o.group, lag: this.current.lag, stalledForMs: this.clock() - this.current.idleSince }, 'consumer recovered: batches handled again');
      this.current = undefined;
    }
  }

  /** A new consumer starts idle: it is given `stallMs` to join and fetch before it is judged. */
  restarted(): void {
    this.busy = 0;
    this.lastBatchAt = this.clock();
  }

  /** One look (the bus calls it every few seconds); never throws. */
  async tick(): Promise<void> {
    if (this.checking || this.o.stallMs <= 0) return;
    const idleSince = this.lastBatchAt;
    if (judge(this.clock(), { busy: this.busy > 0, lastBatchAt: idleSince }, this.o.stallMs) === 'active') return;
    this.checking = true;
    try {
      const lags = await this.o.lag();
      // A batch came while the lag was read: not idle after all.
      if (this.busy > 0 || this.lastBatchAt !== idleSince) return;
      const stall = stallOf(this.o.group, idleSince, lags, this.clock());
      if (!stall) {
        if (this.current) this.o.log.warn({ group: this.o.group }, 'consumer recovered: nothing left to read');
        this.current = undefined;
        this.lastBatchAt = this.clock();
        return;
      }
      this.current = stall;
      this.o.metrics.stalls.inc({ group: this.o.group });
      this.o.log.error({ group: stall.group, topics: [...new Set(stall.partitions.map((p) => p.topic))], partitions: stall.partitions, lag: stall.lag, idleSeconds: Math.round((this.clock() - idleSince) / 1000) }, `consumer stalled: ${stall.reason}; rebuilding the consumer`);
      this.o.metrics.restarts.inc({ group: this.o.group, cause: 'stall' });
      await this.o.rebuild(stall.reason);
      this.restarted();
    } catch (err) {
      // Kafka away: the lag cannot be read, and kafkajs' own retries are logging already.
      this.o.log.debug({ group: this.o.group, err: errorMessage(err) }, 'consumer watchdog could not read the lag');
    } finally {
      this.checking = false;
    }
  }
}
