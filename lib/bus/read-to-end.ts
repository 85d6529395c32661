/**
 * Reading a topic as a table, on any adapter: from the beginning, in a group of the
 * reader's own (a group that resumed from a committed offset would miss the keys whose
 * latest message is older than that offset), with a signal once every partition is
 * committed up to where it ended at the start. Progress is taken from the commits, not
 * from the handler, so a last message that went to the dead-letter topic still counts
 * as read.
 */
import type { Logger } from '../logger.js';
import { errorMessage } from '../errors.js';
import type { TopicName } from '../../schemas/events.js';
import type { EventBus, ReadToEndOptions, TopicReader } from './bus.js';

export async function readToEnd<T extends TopicName>(bus: EventBus, log: Logger, o: ReadToEndOptions<T>): Promise<TopicReader> {
  const ends = await bus.endOffsets(bus.topic(o.topic));
  // Per partition with messages: the offset it ended at, at start.
  const remaining = new Map<number, bigint>();
  for (const p of ends) if (BigInt(p.high) > BigInt(p.low)) remaining.set(p.partition, BigInt(p.high));
  let resolveCaughtUp!: (done: boolean) => void;
  const caughtUp = new Promise<boolean>((r) => (resolveCaughtUp = r));
  if (remaining.size === 0) {
    resolveCaughtUp(true);
    if (o.follow === false) return { caughtUp, complete: () => true, stop: () => Promise.resolve() };
  }
  const sub = await bus.subscribe({
    group: o.group,
    topics: [o.topic],
    fromBeginning: true,
    handle: o.handle,
    ...(o.onTombstone ? { onTombstone: o.onTombstone } : {}),
    onCommitted: (_topic, partition, next) => {
      const end = remaining.get(partition);
      if (end === undefined || next < end) return;
      remaining.delete(partition);
      if (remaining.size === 0) resolveCaughtUp(true);
    },
  });
  return {
    caughtUp,
    complete: () => remaining.size === 0,
    async stop() {
      resolveCaughtUp(remaining.size === 0);
      await sub.stop();
      // The group was this reader's alone: leave nothing behind in Kafka.
      await bus.deleteGroups([sub.group]).catch((err: unknown) => log.debug({ group: sub.group, err: errorMessage(err) }, 'could not delete the reader group'));
    },
  };
}
