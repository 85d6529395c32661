/**
 * A subscription's view of its consumer's group membership (kafkajs' GROUP_JOIN): which
 * partitions it holds, their replay positions (`replayFrom`) and the onAssigned/onRevoked
 * calls of SubscribeOptions. Used by kafkajs.ts for each consumer it builds; and a new
 * group's start by time (`fromTime`, seekToTime).
 */
import type { Admin, Consumer } from 'kafkajs';
import type { Logger } from '../logger.js';
import { errorMessage } from '../errors.js';
import { whenGroupEmpty } from './group-empty.js';
import { groupBusyState } from './kafkajs-errors.js';
import type { TopicName } from '../../schemas/events.js';
import type { AssignedPartition, SubscribeOptions, TopicPartition } from './bus.js';

/** What followMembership needs of the bus: admin requests and full topic names. */
export interface MembershipBus {
  admin<R>(fn: (admin: Admin) => Promise<R>): Promise<R>;
  topic(name: TopicName): string;
}

/** What a consumer's GROUP_JOIN events made of its assignment (see followMembership). */
export interface Membership {
  /** Whether a batch of `topic`/`partition` may be handled (with `replayFrom`: once its replay position is set). */
  started(topic: string, partition: number): boolean;
  /** The consumer is being torn down: its partitions are told as revoked. */
  leave(): void;
}

/**
 * Follows this member's assignment (GROUP_JOIN): tells revocations at once; with
 * `replayFrom`, pauses each partition new to it, seeks it to the first message at or
 * after `replayFrom()` and resumes it only then (so nothing of it is handled from the
 * group's committed position). A join that comes while a previous one's partitions are
 * still being positioned takes them over (they are still paused and not started).
 * `leave()`, when the consumer is torn down to be rebuilt, tells its whole assignment as
 * revoked; a consumer stopped or replaced tells nothing more (a replaced one that kafkajs
 * restarts and that joins again is not this subscription's member).
 */
export function followMembership<T extends TopicName>(consumer: Consumer, opts: Pick<SubscribeOptions<T>, 'replayFrom' | 'onAssigned' | 'onRevoked' | 'onRebalancing'>, byFullName: ReadonlyMap<string, T>, log: Logger, stopping: () => boolean, bus: MembershipBus): Membership {
  const key = (topic: string, partition: number) => `${partition}@${topic}`;
  let assigned = new Map<string, TopicPartition<T> & { full: string }>();
  const started = new Set<string>();
  let joins = 0;
  const tracking = opts.replayFrom !== undefined || opts.onAssigned !== undefined || opts.onRevoked !== undefined;
  if (opts.onRebalancing) consumer.on(consumer.events.REBALANCING, () => {
      if (!stopping()) opts.onRebalancing?.();
    });
  if (!tracking) return { started: () => true, leave: () => undefined };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    if (stopping()) return;
    const join = ++joins;
    const now = new Map<string, TopicPartition<T> & { full: string }>();
    for (const [full, partitions] of Object.entries(e.payload.memberAssignment)) {
      const topic = byFullName.get(full);
      if (topic) for (const partition of partitions) now.set(key(full, partition), { topic, partition, full });
    }
    const revoked = [...assigned].filter(([k]) => !now.has(k)).map(([, p]) => ({ topic: p.topic, partition: p.partition }));
    for (const k of started) if (!now.has(k)) started.delete(k);
    assigned = now;
    opts.onRevoked?.(revoked);
    const fresh = [...now].filter(([k]) => !started.has(k)).map(([, p]) => p);
    if (fresh.length === 0) {
      opts.onAssigned?.([]);
      return;
    }
    const byTopic = (ps: readonly { full: string; partition: number }[]) => [...new Set(ps.map((p) => p.full))].map((topic) => ({ topic, partitions: ps.filter((p) => p.full === topic).map((p) => p.partition) }));
    if (opts.replayFrom) consumer.pause(byTopic(fresh));
    const position = async (): Promise<void> => {
      const time = opts.replayFrom?.();
      const out: AssignedPartition<T>[] = [];
      for (const full of new Set(fresh.map((p) => p.full))) {
        const [bounds, byTime] = await bus.admin((a) => Promise.all([a.fetchTopicOffsets(full), time === undefined ? Promise.resolve(undefined) : a.fetchTopicOffsetsByTimestamp(full, time)]));
        for (const p of fresh.filter((f) => f.full === full)) {
          const end = BigInt(bounds.find((b) => b.partition === p.partition)?.high ?? '0');
          const at = byTime?.find((b) => b.partition === p.partition)?.offset;
          // Offsets-for-time answers -1 when no message is that recent: start at the end.
          const start = at === undefined ? -1n : BigInt(at) < 0n ? end : BigInt(at);
          out.push({ topic: p.topic, partition: p.partition, start, end });
        }
      }
      if (join !== joins || stopping()) return;
      for (const p of out) {
        const full = bus.topic(p.topic);
        if (opts.replayFrom) consumer.seek({ topic: full, partition: p.partition, offset: p.start.toString() });
        started.add(key(full, p.partition));
      }
      opts.onAssigned?.(out);
      if (opts.replayFrom) consumer.resume(byTopic(fresh));
    };
    const attempt = (n: number): void => {
      position().catch((err: unknown) => {
        if (join !== joins || stopping()) return;
        const delay = Math.min(5000, 200 * 2 ** n);
        log.warn({ err: errorMessage(err), retryInMs: delay }, 'positioning newly assigned partitions failed; retrying');
        setTimeout(() => attempt(n + 1), delay).unref();
      });
    };
    attempt(0);
  });
  return {
    started: (topic, partition) => !opts.replayFrom || started.has(key(topic, partition)),
    leave: () => {
      const gone = [...assigned.values()].map((p) => ({ topic: p.topic, partition: p.partition }));
      assigned = new Map();
      started.clear();
      // A positioning under way for the last join does not tell onAssigned any more.
      joins++;
      if (gone.length > 0) opts.onRevoked?.(gone);
    },
  };
}

/**
 * Sets a new group's offsets to the first message at or after `time` (offsets-for-time)
 * and says whether the group should rather start from the beginning: when `time` is
 * before every partition's first message, nothing is set (kafkajs' setOffsets joins the
 * group and waits for one fetch: a few seconds saved on every start of a young topic).
 * Setting offsets waits for the group to be empty (group-empty.ts), at most 45 s.
 */
export async function seekToTime(bus: MembershipBus, groupId: string, topics: readonly string[], time: number, log: Logger): Promise<boolean> {
  return bus.admin(async (a) => {
    const seeks = await Promise.all(
      topics.map(async (topic) => {
        const [byTime, bounds] = await Promise.all([a.fetchTopicOffsetsByTimestamp(topic, time), a.fetchTopicOffsets(topic)]);
        return { topic, byTime, atStart: byTime.every((p) => p.offset === bounds.find((b) => b.partition === p.partition)?.low) };
      }),
    );
    if (seeks.every((s) => s.atStart)) return true;
    // Every partition gets its offset here; one created later starts at its end. Only once
    // the group is empty: a member killed just before (a restart) holds it for its session.
    for (const s of seeks) await whenGroupEmpty(() => a.setOffsets({ groupId, topic: s.topic, partitions: s.byTime }), groupBusyState, { group: groupId, log });
    return false;
  });
}
