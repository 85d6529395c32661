/**
 * Issue 13, the bus under a large fetch (the 30-restart stress run): publishes go out in
 * sends the broker accepts, fetched batches reach the handler in parts committed one by one,
 * and a group's offsets wait for a former member's session to end. On the real broker, in
 * this test's own topics and groups; the splits themselves are pure and tested apart.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LogLine, LifecycleEvent, UsageRecord } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { byBytes, byCount, batchSendsOf, rawMessageBytes, sendsOf, RECORD_OVERHEAD_BYTES, SEND_MAX_BYTES } from '../lib/bus/chunks.js';
import { DELIVERY_CHUNK_MESSAGES, deliver, type DeliveryContext } from '../lib/bus/delivery.js';
import { GROUP_EMPTY_WAIT_MS, whenGroupEmpty } from '../lib/bus/group-empty.js';
import { groupBusyState } from '../lib/bus/kafkajs-errors.js';
import { LogmeterError } from '../lib/errors.js';
import type { RawMessage } from '../lib/bus/bus.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';
import { capturingLogger } from './helpers/logs.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
before(async () => {
  await bus.ensureTopics();
});
after(async () => {
  await bus.close();
  ns.cleanup();
});

test('byBytes: runs of at most the bound, in order, every item once; an item over the bound alone', () => {
  const sizes = [3, 4, 2, 9, 1, 1, 12, 5, 5];
  const runs = byBytes(sizes, (n) => n, 10);
  assert.deepEqual(runs, [[3, 4, 2], [9, 1], [1], [12], [5, 5]]);
  assert.deepEqual(byBytes([], (n: number) => n, 10), []);
  assert.deepEqual(byBytes([10, 10], (n) => n, 10), [[10], [10]]);
  // Many small items: full runs, each next item would not have fitted.
  const many = Array.from({ length: 10_001 }, (_, i) => (i % 7) + 1);
  const parts = byBytes(many, (n) => n, 1000);
  assert.deepEqual(parts.flat(), many);
  for (const [i, p] of parts.entries()) {
    const sum = p.reduce((a, b) => a + b, 0);
    assert.ok(sum <= 1000, `run ${i}: ${sum}`);
    if (i < parts.length - 1) assert.ok(sum + parts[i + 1]![0]! > 1000, `run ${i} not full`);
  }
});

test('byCount: runs of at most n, in order; n must be a positive integer', () => {
  assert.deepEqual(byCount([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(byCount([1, 2, 3, 4], 2), [[1, 2], [3, 4]]);
  assert.deepEqual(byCount([], 5), []);
  const parts = byCount(Array.from({ length: 27_000 }, (_, i) => i), DELIVERY_CHUNK_MESSAGES);
  assert.deepEqual(parts.map((p) => p.length), [5000, 5000, 5000, 5000, 5000, 2000]);
  assert.throws(() => byCount([1], 0), RangeError);
  assert.throws(() => byCount([1], 1.5), RangeError);
});

test('sends of a publish: keys, values and a record overhead counted; several topics split across sends with their order', () => {
  assert.equal(rawMessageBytes({ key: 'ab€', value: Buffer.alloc(10) }), 5 + 10 + RECORD_OVERHEAD_BYTES);
  assert.equal(rawMessageBytes({ key: null, value: null }), RECORD_OVERHEAD_BYTES);
  assert.equal(rawMessageBytes({ key: Buffer.alloc(7), value: null }), 7 + RECORD_OVERHEAD_BYTES);
  // 25,000 access-log lines as one publish, as in the stress run: 120 B values, 16 B keys.
  const lines: RawMessage[] = Array.from({ length: 25_000 }, (_, i) => ({ key: `tenant-${i % 3}/app-0`.padEnd(16, '.'), value: Buffer.alloc(120, i % 251) }));
  const sends = sendsOf(lines);
  assert.deepEqual(sends.flat(), lines);
  const bytes = (ms: readonly RawMessage[]) => ms.reduce((s, m) => s + rawMessageBytes(m), 0);
  for (const s of sends) assert.ok(bytes(s) <= SEND_MAX_BYTES, `a send of ${bytes(s)} bytes`);
  assert.equal(sends.length, Math.ceil(bytes(lines) / (Math.floor(SEND_MAX_BYTES / (120 + 16 + RECORD_OVERHEAD_BYTES)) * (120 + 16 + RECORD_OVERHEAD_BYTES))));

  // The collector's batch that fits goes as it is (the same objects, one send).
  const small = [{ topic: 'a', messages: lines.slice(0, 10) }, { topic: 'b', messages: lines.slice(10, 20) }];
  const one = batchSendsOf(small);
  assert.equal(one.length, 1);
  assert.equal(one[0]![0], small[0]);
  assert.deepEqual(batchSendsOf([]), []);
  assert.deepEqual(batchSendsOf([{ topic: 'a', messages: [] }]), []);
  // Two topics over the bound: every send within it, each topic's messages in order and once.
  const big = [{ topic: 'a', messages: lines.slice(0, 6000) }, { topic: 'b', messages: lines.slice(6000, 9000) }];
  const split = batchSendsOf(big);
  assert.ok(split.length > 1);
  for (const s of split) assert.ok(bytes(s.flatMap((b) => b.messages)) <= SEND_MAX_BYTES);
  for (const s of split) assert.equal(new Set(s.map((b) => b.topic)).size, s.length, 'a topic once per send');
  for (const t of ['a', 'b']) assert.deepEqual(split.flatMap((s) => s.filter((b) => b.topic === t).flatMap((b) => b.messages)), big.find((b) => b.topic === t)!.messages);
});

test('deliver: parts of at most 5,000, each committed after it was handled, the group told this member lives while a part is handled', async () => {
  const messages = Array.from({ length: 12_001 }, (_, i) => ({ offset: String(100 + i), timestamp: 0, key: null, value: codec.encode('lifecycle', { ...SAMPLE_EVENTS.lifecycle, event_id: `d-${i}` }) }));
  const steps: string[] = [];
  let beats = 0;
  let wake: (() => void) | undefined;
  const context = (signal: AbortSignal): DeliveryContext<'lifecycle'> => ({
    codec,
    node: 'node-1',
    group: 'g',
    log: ns.logger,
    handle: async (batch) => {
      steps.push(`handle ${batch[0]!.offset}-${batch[batch.length - 1]!.offset}`);
      // The first part ends only after two heartbeats: the ticker's, none other is due before its commit.
      if (steps.length === 1) await new Promise<void>((r) => (wake = r));
    },
    deadLetter: () => Promise.reject(new Error('no message is undecodable')),
    heartbeat: async () => {
      if (++beats === 2) wake?.();
    },
    signal,
    initialMs: 10,
    maxMs: 100,
  });
  const all = await deliver({ topic: 'lifecycle', fullTopic: 't.lifecycle', partition: 0, messages }, context(new AbortController().signal), async (last) => {
    steps.push(`commit ${last}`);
    return true;
  });
  assert.equal(all, true);
  assert.deepEqual(steps, ['handle 100-5099', 'commit 5099', 'handle 5100-10099', 'commit 10099', 'handle 10100-12100', 'commit 12100']);

  // A commit refused (the partition is no longer this member's): the rest is not handled.
  steps.length = 0;
  beats = 0;
  const rest = await deliver({ topic: 'lifecycle', fullTopic: 't.lifecycle', partition: 0, messages }, context(new AbortController().signal), async (last) => {
    steps.push(`commit ${last}`);
    return false;
  });
  assert.equal(rest, false);
  assert.deepEqual(steps, ['handle 100-5099', 'commit 5099']);
});

test('setting offsets waits while the group has members, says why, and gives up after its limit', async () => {
  const { logger, lines } = capturingLogger();
  let now = 0;
  const sleeps: number[] = [];
  const sleep = (ms: number) => {
    sleeps.push(ms);
    now += ms;
    return Promise.resolve();
  };
  const busy = new Error('The consumer group must have no running instances, current state: Stable');
  assert.equal(groupBusyState(busy), 'Stable');
  assert.equal(groupBusyState(Object.assign(new Error('wrapped'), { cause: busy })), 'Stable');
  assert.equal(groupBusyState(new Error('Connection error')), undefined);

  // Busy for 5 attempts, then empty: set on the 6th, after 250 + 500 + 1000 + 2000 + 4000 ms.
  let calls = 0;
  const set = await whenGroupEmpty(async () => (++calls <= 5 ? Promise.reject(busy) : 'set'), groupBusyState, { group: 'g1', log: logger, clock: () => now, sleep });
  assert.equal(set, 'set');
  assert.deepEqual(sleeps, [250, 500, 1000, 2000, 4000]);
  const waits = lines().filter((l) => l.msg.startsWith('waiting for the consumer group to be empty'));
  assert.equal(waits.length, 5);
  assert.deepEqual(waits.map((l) => [l.group, l.state, l.attempt]), [1, 2, 3, 4, 5].map((n) => ['g1', 'Stable', n]));
  assert.match(waits[0]!.msg, /former member's session has not timed out/);

  // Any other error: thrown at once, no wait.
  sleeps.length = 0;
  const other = new Error('Connection error');
  await assert.rejects(whenGroupEmpty(() => Promise.reject(other), groupBusyState, { group: 'g2', log: logger, clock: () => now, sleep }), (e) => e === other);
  assert.deepEqual(sleeps, []);

  // A member that lives: given up after the limit, never sleeping past it; retriable.
  now = 0;
  await assert.rejects(whenGroupEmpty(() => Promise.reject(busy), groupBusyState, { group: 'g3', log: logger, clock: () => now, sleep }), (e) => e instanceof LogmeterError && e.code === 'kafka_group_busy' && e.retriable && /g3/.test(e.message));
  assert.equal(now, GROUP_EMPTY_WAIT_MS);
  assert.equal(Math.max(...sleeps), 4000);
});

/** A log line of `bytes` random (incompressible) bytes, numbered `n` in publish order, on `key`. */
const line = (n: number, key: string, bytes: number): LogLine => ({ ...SAMPLE_EVENTS.logs, event_id: `big-${n}`, container_id: key, seq: n, line: randomBytes(bytes), original_length: bytes });

test('one publish of 20,000 lines and publishes of more than 1 MiB are accepted; every message stored once, in order per partition', async () => {
  const topic = bus.topic('logs');
  assert.equal((await bus.topicSettings(topic, ['max.message.bytes']))['max.message.bytes'], String(1024 * 1024 + 12), 'the broker default: 1 MiB per record batch');
  // Two keys: ~1.3 MB of incompressible lines per partition, as one fetch's access-log lines for one app.
  const lines = Array.from({ length: 20_000 }, (_, i) => line(i, `hot-${i % 2}`, 120));
  await bus.publish('logs', lines.map((event) => ({ event })));
  // 48 framed messages of 32 KiB on one key, through publishRaw; then publishRawBatch with two runs of 24.
  let n = lines.length;
  const framed = (key: string) => {
    const e = line(n++, key, 32 * 1024);
    return { key, value: codec.encode('logs', e) };
  };
  const raw = Array.from({ length: 48 }, () => framed('wide'));
  await bus.publishRaw(topic, raw);
  const batchA = Array.from({ length: 24 }, () => framed('wide'));
  const batchB = Array.from({ length: 24 }, () => framed('wide-2'));
  await bus.publishRawBatch([{ topic, messages: batchA }, { topic, messages: batchB }]);
  const total = n;

  // Stored once: the partitions' ends add up to the messages published (an idempotent producer).
  const ends = await bus.endOffsets(topic);
  assert.equal(ends.reduce((s, p) => s + Number(p.high) - Number(p.low), 0), total);

  const byPartition = new Map<number, { offset: bigint; seq: number }[]>();
  let received = 0;
  const sub = await bus.subscribe({
    group: 'big-reader',
    topics: ['logs'],
    handle: async (batch) => {
      for (const m of batch) {
        const list = byPartition.get(m.partition) ?? [];
        list.push({ offset: BigInt(m.offset), seq: m.event.seq });
        byPartition.set(m.partition, list);
        received++;
      }
    },
  });
  try {
    await eventually(`${total} messages read`, async () => (received >= total ? true : undefined), 180_000);
  } finally {
    await sub.stop();
  }
  assert.equal(received, total);
  const seqs = [...byPartition.values()].flat().map((m) => m.seq);
  assert.equal(new Set(seqs).size, total, 'every message once');
  assert.deepEqual([...seqs].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i));
  for (const [partition, list] of byPartition) {
    for (let i = 1; i < list.length; i++) {
      assert.ok(list[i]!.offset > list[i - 1]!.offset, `partition ${partition}: offsets in order`);
      assert.ok(list[i]!.seq > list[i - 1]!.seq, `partition ${partition}: offset ${list[i]!.offset} has line ${list[i]!.seq} after ${list[i - 1]!.seq}`);
    }
  }
});

test('a fetch of more than 5,000 messages reaches the handler in parts of at most 5,000, each message once, all committed', async () => {
  const count = 12_345;
  // One key, so one partition; compressible, so one fetch (1 MiB per partition) holds them all.
  const base: LifecycleEvent = { ...SAMPLE_EVENTS.lifecycle, container_id: 'one-container' };
  await bus.publish('lifecycle', Array.from({ length: count }, (_, i) => ({ event: { ...base, event_id: `part-${i}` } })));
  const topic = bus.topic('lifecycle');
  const calls: number[] = [];
  const seen = new Map<string, number>();
  const sub = await bus.subscribe({
    group: 'parts',
    topics: ['lifecycle'],
    handle: async (batch) => {
      calls.push(batch.length);
      for (const m of batch) seen.set(m.event.event_id, (seen.get(m.event.event_id) ?? 0) + 1);
    },
  });
  try {
    await eventually(`${count} messages handled`, async () => (seen.size >= count ? true : undefined), 120_000);
    const ends = await bus.endOffsets(topic);
    // Committed at the end = the topic's end, for every partition (an empty one has no commit).
    const expected = ends.map((p) => ({ partition: p.partition, offset: Number(p.high) > 0 ? p.high : '-1' })).sort((a, b) => a.partition - b.partition);
    await eventually('every partition committed to its end', async () => {
      const committed = [...(await bus.committedOffsets(sub.group, topic))].sort((a, b) => a.partition - b.partition);
      return JSON.stringify(committed) === JSON.stringify(expected) ? true : undefined;
    });
  } finally {
    await sub.stop();
  }
  assert.ok(Math.max(...calls) <= DELIVERY_CHUNK_MESSAGES, `handler calls of ${calls.join(', ')} messages`);
  assert.equal(calls.reduce((a, b) => a + b, 0), count, 'no message handled twice');
  assert.equal(seen.size, count);
  assert.ok([...seen.values()].every((v) => v === 1));
});

test("a group's offsets set by time wait until its running member has left, then start there", async () => {
  const topic = bus.topic('usage');
  const now = Date.now();
  const usage = (i: number): UsageRecord => ({ ...SAMPLE_EVENTS.usage, event_id: `u-${i}` });
  // Three records a minute, half a minute and none ago, on one key (one partition).
  await bus.publishRaw(topic, [0, 1, 2].map((i) => ({ key: 'acme/shop', value: codec.encode('usage', usage(i)), timestamp: now - 60_000 + i * 30_000 })));
  const first: string[] = [];
  const member = await bus.subscribe({ group: 'by-time', topics: ['usage'], handle: async (b) => void first.push(...b.map((m) => m.event.event_id)) });
  const { logger, lines } = capturingLogger();
  const other = busFor(ns.config, codec, logger);
  try {
    await eventually('the member read the topic', async () => (first.length === 3 ? true : undefined), 60_000);
    const second: string[] = [];
    const pending = other.subscribe({ group: 'by-time', topics: ['usage'], fromTime: now - 45_000, handle: async (b) => void second.push(...b.map((m) => m.event.event_id)) });
    // It waits while the member runs (its log says so) and does not give up.
    await eventually('a wait logged', async () => (lines().some((l) => l.msg.startsWith('waiting for the consumer group to be empty') && l.group === member.group && l.state === 'Stable') ? true : undefined), 40_000);
    await member.stop();
    const sub = await pending;
    try {
      await eventually('the second member read from the time', async () => (second.length >= 2 ? true : undefined), 60_000);
    } finally {
      await sub.stop();
    }
    assert.deepEqual(second, ['u-1', 'u-2']);
    assert.deepEqual(first, ['u-0', 'u-1', 'u-2']);
  } finally {
    await member.stop();
    await other.close();
  }
});
