/**
 * Commits that trail the handler (bus.ts `deferCommit`): a handler that has only queued
 * its work (the log sink's rows waiting for an insert) hands the bus a promise of that
 * work and returns, so the consumer fetches and decodes the next batch while the work is
 * done. The offset of such a part is committed only once its promise resolved, and per
 * partition in order: the commit is always the end of the longest run of done parts from
 * the oldest one still uncommitted, so an offset is never committed before the work of
 * every message below it is done.
 *
 * A promise that rejects commits nothing more of its partition: every part of the
 * subscription still waiting is forgotten (their commits, if their work is done later,
 * are not made) and the adapter re-reads from the committed offsets (kafkajs.ts rebuilds
 * its consumer). The parts that were waiting are then handled the synchronous way (the
 * handler awaits its work, delivery.ts retries it with backoff or isolates a poisoned
 * message into the dead-letter topic), up to the highest offset that had been queued;
 * after that, deferral resumes. The same when the consumer is rebuilt for another reason.
 *
 * At most `maxMessages` messages wait this way per subscription: beyond it, `room()`
 * holds the delivery (the consumer does not fetch on) until parts are done.
 *
 * A partition revoked from the member (`retain`, at each join) has its waiting parts
 * dropped: the group commits no offset of a partition's old owner after the new one has
 * it (a late commit would move the group's offset back, below what the new owner
 * committed), nor re-reads for it. A stop waits for the parts still waiting and their
 * commits (`settled`) before the consumer is disconnected.
 */
import type { Logger } from '../logger.js';
import { errorMessage } from '../errors.js';
import type { Deferral } from './delivery.js';

interface Part {
  /** The offset after the part's last message: what its commit sets. */
  next: bigint;
  messages: number;
  done: boolean;
}

interface PartitionQueue {
  parts: Part[];
  /** The commits of this partition, one after the other. */
  committing: Promise<void>;
  /** The partition was revoked (`retain`): its parts' completions commit nothing. */
  dropped: boolean;
}

export interface DeferredCommitsOptions {
  /** Commits `next` as the group's offset of `topic`/`partition` (nothing when the consumer is stopped or replaced). */
  commit(topic: string, partition: number, next: bigint): Promise<unknown>;
  /** Told once per failure: re-read everything uncommitted (the adapter rebuilds its consumer). */
  onFailure(reason: string): void;
  maxMessages: number;
  log: Logger;
}

/** The deferred commits of one subscription (all of its consumers, one after the other). */
export class DeferredCommits {
  private queues = new Map<string, PartitionQueue>();
  /** Bumped when the parts waiting are forgotten: completions of an older generation commit nothing. */
  private generation = 0;
  /** Per partition, the last offset that must be handled synchronously (after a failure). */
  private readonly syncUntil = new Map<string, bigint>();
  private waiting = 0;
  private readonly roomWaiters = new Set<() => void>();
  private readonly settleWaiters = new Set<() => void>();

  constructor(private readonly o: DeferredCommitsOptions) {}

  /** Whether a part was ever deferred (the handler uses `deferCommit`). */
  used = false;

  /** Messages whose commit waits for their work. */
  get pendingMessages(): number {
    return this.waiting;
  }

  /** Whether a part of `topic`/`partition` starting at offset `first` may be deferred (not while re-reading after a failure). */
  accepts(topic: string, partition: number, first: string): boolean {
    const until = this.syncUntil.get(key(topic, partition));
    if (until === undefined) return true;
    if (BigInt(first) <= until) return false;
    this.syncUntil.delete(key(topic, partition));
    return true;
  }

  /**
   * Registers a part whose work is `done`: its offset (`last` + 1) is committed once it and
   * every part of the partition before it are done. Call in offset order per partition.
   */
  add(topic: string, partition: number, last: string, messages: number, done: Promise<unknown>): void {
    const k = key(topic, partition);
    let q = this.queues.get(k);
    if (!q) this.queues.set(k, (q = { parts: [], committing: Promise.resolve(), dropped: false }));
    const part: Part = { next: BigInt(last) + 1n, messages, done: false };
    this.used = true;
    q.parts.push(part);
    this.waiting += messages;
    const generation = this.generation;
    done.then(
      () => {
        if (generation !== this.generation || q.dropped) return;
        part.done = true;
        this.flush(topic, partition, q);
      },
      (err: unknown) => {
        if (generation !== this.generation || q.dropped) return;
        this.fail(`the work of ${topic}/${partition} up to offset ${last} failed: ${errorMessage(err)}`);
      },
    );
  }

  /**
   * delivery.ts's side of one fetched batch: `batch.ours()` whether the batch is still the
   * consumer's to commit (not stale, not stopped), `batch.resolve(last)` moves the
   * consumer's fetch position past a deferred part.
   */
  deferral(topic: string, partition: number, signal: AbortSignal, batch: { ours(): boolean; resolve(last: string): void }): Deferral {
    return {
      accepts: (first) => this.accepts(topic, partition, first),
      later: async (last, count, done) => {
        if (!batch.ours() || signal.aborted) return false;
        this.add(topic, partition, last, count, done);
        batch.resolve(last);
        await this.room(signal);
        return !signal.aborted;
      },
    };
  }

  /** Resolves when fewer than `maxMessages` messages wait (or `signal` aborts). */
  room(signal: AbortSignal): Promise<void> {
    if (this.waiting < this.o.maxMessages || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.roomWaiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.roomWaiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /**
   * Keeps the parts of the partitions in `assignment` (full topic name → partitions, as a
   * join gives them) and drops the others': revoked, their offsets are the new owner's to
   * commit. A commit already sent is not called back.
   */
  retain(assignment: Record<string, readonly number[]>): void {
    for (const [k, q] of this.queues) {
      const [p, ...rest] = k.split('@');
      if (assignment[rest.join('@')]?.includes(Number(p))) continue;
      q.dropped = true;
      this.queues.delete(k);
      this.syncUntil.delete(k);
      const dropped = q.parts.reduce((n, part) => n + part.messages, 0);
      this.waiting -= dropped;
      if (dropped > 0) this.o.log.info({ partition: k, messages: dropped }, 'partition revoked: its deferred commits are dropped');
    }
    this.wake();
  }

  /**
   * Resolves once no part waits (each done and committed, or forgotten by a failure or a
   * revoke) and the commits sent for them are answered. For a stop: bound it by a deadline.
   */
  async settled(): Promise<void> {
    while (this.waiting > 0) await new Promise<void>((r) => this.settleWaiters.add(r));
    await Promise.all([...this.queues.values()].map((q) => q.committing));
  }

  /**
   * Forgets every part waiting (the consumer that read them is gone: a rebuild, a stop);
   * their partitions are read again from the committed offsets, the parts up to the
   * highest offset queued synchronously.
   */
  reset(): void {
    for (const [k, q] of this.queues) {
      const last = q.parts.at(-1);
      if (!last) continue;
      const until = last.next - 1n;
      const before = this.syncUntil.get(k);
      if (before === undefined || until > before) this.syncUntil.set(k, until);
    }
    this.generation++;
    this.queues = new Map();
    this.waiting = 0;
    this.wake();
  }

  private fail(reason: string): void {
    this.o.log.warn({ reason, waiting: this.waiting }, 'deferred work failed: nothing more is committed; re-reading from the committed offsets');
    this.reset();
    this.o.onFailure(reason);
  }

  /** Commits the end of the run of done parts at the head of the partition's queue. */
  private flush(topic: string, partition: number, q: PartitionQueue): void {
    let next: bigint | undefined;
    while (q.parts.length > 0 && q.parts[0]!.done) {
      const p = q.parts.shift()!;
      this.waiting -= p.messages;
      next = p.next;
    }
    if (next === undefined) return;
    this.wake();
    const at = next;
    const generation = this.generation;
    q.committing = q.committing.then(async () => {
      if (generation !== this.generation || q.dropped) return;
      try {
        await this.o.commit(topic, partition, at);
      } catch (err) {
        // A refused commit (a rebalance) leaves the offset where it was: the messages come
        // again, with the same event ids. A later commit of the partition covers this one.
        this.o.log.info({ topic, partition, offset: at.toString(), err: errorMessage(err) }, 'deferred commit refused; a later one covers it');
      }
    });
  }

  private wake(): void {
    if (this.waiting === 0) {
      const waiters = [...this.settleWaiters];
      this.settleWaiters.clear();
      for (const w of waiters) w();
    }
    if (this.waiting >= this.o.maxMessages) return;
    for (const w of [...this.roomWaiters]) w();
  }
}

function key(topic: string, partition: number): string {
  return `${partition}@${topic}`;
}
