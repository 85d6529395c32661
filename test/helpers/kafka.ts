/**
 * Reading what reached Kafka, for assertions: a fresh consumer group from the start of
 * the topic, until a condition holds.
 */
import type { BatchHandler, EventBus, RawMessage } from '../../lib/bus/bus.js';
import { busFor } from '../../lib/runtime.js';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import type { EventMap, LogLine, TopicName } from '../../schemas/events.js';
import { eventually, type TestNamespace } from './env.js';
import { SAMPLE_EVENTS } from './fixtures.js';

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

/**
 * Log events once per event id, in their order on the topic. A producer rebuilt after a stall
 * sends its batch again, so a line may be on the topic twice, with the same event id and
 * bytes; the log center merges such copies (DESIGN.md: deterministic event ids, duplicates
 * removed by event id). Throws when two copies of one id differ.
 */
export function byEventId<E extends { event_id: string; line: Buffer }>(events: readonly E[]): E[] {
  const first = new Map<string, E>();
  for (const e of events) {
    const seen = first.get(e.event_id);
    if (!seen) first.set(e.event_id, e);
    else if (!seen.line.equals(e.line)) throw new Error(`two copies of event ${e.event_id} differ`);
  }
  return [...first.values()];
}

/** The buses a test file opens (`open`, on a namespace's config) and closes together in its `after` (`closeAll`). */
export function busPool(): { open(ns: TestNamespace): Promise<EventBus>; closeAll(): Promise<void> } {
  const codecP = AvroCodec.create(new ManifestSource());
  const buses: EventBus[] = [];
  return {
    open: async (ns) => {
      const bus = busFor(ns.config, await codecP, ns.logger);
      buses.push(bus);
      return bus;
    },
    closeAll: async () => {
      for (const b of buses.splice(0)) await b.close();
    },
  };
}

/** Hands everything on `topic` now, in order per partition, to `handle` (a reader group of its own, deleted after). */
export async function readAll<T extends TopicName>(bus: EventBus, topic: T, handle: BatchHandler<T>): Promise<void> {
  const reader = await bus.readToEnd({ topic, group: `read-all-${topic}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`, follow: false, handle });
  try {
    if (!(await reader.caughtUp)) throw new Error(`reading ${topic} stopped before its end`);
  } finally {
    await reader.stop();
  }
}

/**
 * `n` log events as frames on `keys` containers (`${keyPrefix}0`…), event ids `${tag}-${i}`, lines
 * like an access log, timestamps `t0 + i % 1000`; each frame is also put in `frames` by event id.
 */
export function logFrameMessages(codec: AvroCodec, frames: Map<string, Buffer>, tag: string, n: number, keyPrefix: string, t0: number, keys = 3): RawMessage[] {
  return Array.from({ length: n }, (_, i) => {
    const c = `${keyPrefix}${i % keys}`;
    const text = `${tag} line ${i} GET /item/${(i * 7919) % 10007} 200 ${i % 97}ms`;
    const ev: LogLine = { ...SAMPLE_EVENTS.logs, container_id: c, event_id: `${tag}-${i}`, line: Buffer.from(text), original_length: text.length, invalid_utf8: false };
    const value = codec.encode('logs', ev);
    frames.set(ev.event_id, value);
    return { key: c, value, timestamp: t0 + (i % 1000) };
  });
}

/** Reads the logs topic with a group of its own until every event of `frames` came: how many came, and how many encode to exactly the frame sent. */
export async function readFramesBack(bus: EventBus, codec: AvroCodec, frames: ReadonlyMap<string, Buffer>, group: string): Promise<{ got: number; same: number }> {
  const got = new Set<string>();
  let same = 0;
  const sub = await bus.subscribe({
    group,
    topics: ['logs'],
    handle: async (b) => {
      for (const m of b) {
        got.add(m.event.event_id);
        if (codec.encode('logs', m.event).equals(frames.get(m.event.event_id)!)) same++;
      }
    },
  });
  try {
    await eventually('every message', async () => (got.size >= frames.size ? true : undefined), 60_000);
  } finally {
    await sub.stop();
  }
  return { got: got.size, same };
}
