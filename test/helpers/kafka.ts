/**
 * Reading what reached Kafka, for assertions: a fresh consumer group from the start of
 * the topic, until a condition holds.
 */
import type { EventBus } from '../../lib/bus/bus.js';
import type { EventMap, TopicName } from '../../schemas/events.js';

export async function collect<T extends TopicName>(
  bus: EventBus,
  topic: T,
  done: (events: EventMap[T][]) => boolean,
  timeoutMs = 60_000,
): Promise<EventMap[T][]> {
  const got: EventMap[T][] = [];
  const sub = await bus.subscribe({ group: `reader-${topic}-${Date.now()}-${Math.random()}`, topics: [topic], handle: async (b) => void got.push(...b.map((m) => m.event)) });
  try {
    const end = Date.now() + timeoutMs;
    while (!done(got)) {
      if (Date.now() > end) throw new Error(`timed out reading ${topic}: ${got.length} events so far`);
      await new Promise((r) => setTimeout(r, 200));
    }
    return got;
  } finally {
    await sub.stop();
  }
}
