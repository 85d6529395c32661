/**
 * Packed records (issue 13, lib/bus/pack.ts): the messages of a key packed into shared
 * Kafka records by the producer and expanded by the bus's consumers, so handlers see every
 * message as before; parts and commits never cut a record; an undecodable frame is
 * dead-lettered alone. The format's functions are pure (fast-check properties); the rest
 * runs on the real broker, in this test's own topics and groups.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { DeadLetter, LogLine } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { LogmeterError } from '../lib/errors.js';
import type { RawMessage } from '../lib/bus/bus.js';
import { DELIVERY_CHUNK_MESSAGES, deliver, type DeliveryContext } from '../lib/bus/delivery.js';
import { sendsOf } from '../lib/bus/chunks.js';
import { PACK_MAGIC, PACK_MAX_BYTES, PACK_MAX_FRAMES, PackError, expandRecords, framesIn, isPacked, packFrames, packRecords, unpack } from '../lib/bus/pack.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
before(async () => {
  await bus.ensureTopics(['logs', 'dlq']);
});
after(async () => {
  await bus.close();
  ns.cleanup();
});

const logLine = (container: string, id: string, text = `line ${id}`): LogLine => ({ ...SAMPLE_EVENTS.logs, container_id: container, event_id: id, line: Buffer.from(text), original_length: Buffer.byteLength(text), invalid_utf8: false });

const frame = fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a));

test('pack/unpack: any frames round-trip byte for byte; a pack is never a frame; every cut, extension or count change is refused', () => {
  fc.assert(
    fc.property(fc.array(frame, { minLength: 1, maxLength: 60 }), (frames) => {
      const packed = packFrames(frames);
      assert.ok(isPacked(packed));
      assert.notEqual(packed[0], 0, 'a logmeter frame starts with 0x00');
      assert.equal(framesIn(packed), frames.length);
      assert.deepEqual(unpack(packed).map((f) => Buffer.from(f)), frames);
      // Any strict prefix (past the magic) and any trailing byte: refused, never a shorter list.
      for (const cut of [packed.length - 1, Math.floor(packed.length / 2), PACK_MAGIC.length]) {
        if (cut < packed.length) assert.throws(() => unpack(packed.subarray(0, cut)), PackError);
      }
      assert.throws(() => unpack(Buffer.concat([packed, Buffer.from([0])])), PackError);
    }),
    { numRuns: 300 },
  );
  assert.throws(() => unpack(Buffer.concat([PACK_MAGIC, Buffer.from([0])])), /no frames/);
  assert.throws(() => unpack(Buffer.concat([PACK_MAGIC, Buffer.from([5, 1, 0])])), /5 frames in 2 bytes/);
  assert.throws(() => unpack(Buffer.from([0, 0, 0, 0, 1])), PackError);
  assert.equal(isPacked(codec.encode('logs', SAMPLE_EVENTS.logs)), false);
  assert.equal(framesIn(codec.encode('logs', SAMPLE_EVENTS.logs)), 1);
  assert.equal(framesIn(null), 1);
});

test('unpack: frame lengths of one, two and three varint bytes (0, 127, 128, 16383, 16384, 70000 bytes), each cut inside a length refused', () => {
  const frames = [0, 127, 128, 16383, 16384, 70000, 1].map((n, i) => Buffer.alloc(n, i + 1));
  const packed = packFrames(frames);
  assert.deepEqual(unpack(packed).map((f) => Buffer.from(f)), frames);
  // Cut right after the first byte of each two- or three-byte length: a length running past the end.
  let pos = PACK_MAGIC.length + 1;
  for (const f of frames) {
    if (f.length >= 0x80) assert.throws(() => unpack(packed.subarray(0, pos + 1)), /a length runs past its end/, `frame of ${f.length}`);
    pos += (f.length < 0x80 ? 1 : f.length < 0x4000 ? 2 : 3) + f.length;
  }
  assert.equal(pos, packed.length);
  // Each frame's timestamp is the record's, as a number (read once for the record).
  const [m] = expandRecords([{ offset: '7', timestamp: '1764892800000', key: null, value: packed }]);
  assert.equal(m!.timestamp, 1764892800000);
});

test('packRecords then expandRecords: every message once, each key in order, records within the caps, one-key records', () => {
  const message = fc.record({ key: fc.constantFrom('a', 'b', 'c', 'd'), value: fc.uint8Array({ minLength: 1, maxLength: 400 }) }).map((m): RawMessage => ({ key: m.key, value: Buffer.from(m.value) }));
  fc.assert(
    fc.property(fc.array(message, { maxLength: 400 }), fc.integer({ min: 200, max: 4096 }), fc.integer({ min: 1, max: 40 }), (messages, maxBytes, maxFrames) => {
      const records = packRecords(messages, maxBytes, maxFrames);
      // Each record gets an offset, as Kafka gives; expanded, per key, the same values in order.
      const fetched = records.map((r, i) => ({ offset: String(i), timestamp: 0, key: r.key === null ? null : Buffer.from(r.key), value: r.value }));
      const expanded = expandRecords(fetched);
      assert.equal(expanded.length, messages.length);
      for (const k of ['a', 'b', 'c', 'd']) {
        assert.deepEqual(
          expanded.filter((m) => m.key!.toString() === k).map((m) => Buffer.from(m.value!)),
          messages.filter((m) => m.key === k).map((m) => m.value),
        );
      }
      for (const r of records) {
        if (!isPacked(r.value)) {
          assert.ok(messages.includes(r), 'an unpacked record is the message itself');
          continue;
        }
        const frames = unpack(r.value);
        assert.ok(frames.length >= 2 && frames.length <= maxFrames, `${frames.length} frames`);
        assert.ok(r.value.length - PACK_MAGIC.length - 3 <= maxBytes, `${r.value.length} bytes`);
      }
      // An offset per record: the expanded messages of one record share it, in one run.
      const offsets = expanded.map((m) => m.offset);
      assert.deepEqual([...new Set(offsets)], records.map((_, i) => String(i)));
    }),
    { numRuns: 300 },
  );
  // A tombstone and a keyless message stay where they are; a key's messages around a tombstone do not merge across it.
  const m = (key: string | null, v: string | null): RawMessage => ({ key, value: v === null ? null : Buffer.from(v) });
  const input = [m('a', '1'), m('a', '2'), m('a', null), m('a', '3'), m(null, 'x'), m('a', '4')];
  const out = packRecords(input);
  assert.equal(out.length, 4);
  assert.deepEqual(unpack(out[0]!.value!).map(String), ['1', '2']);
  assert.equal(out[1], input[2]);
  assert.deepEqual(unpack(out[2]!.value!).map(String), ['3', '4']);
  assert.equal(out[3], input[4]);
  // The default caps: 64 KiB of frames, 500 frames.
  const many = Array.from({ length: 2000 }, (_, i) => m('k', `${i}`.padStart(100, '.')));
  assert.deepEqual(packRecords(many).map((r) => unpack(r.value!).length), [500, 500, 500, 500]);
  const big = Array.from({ length: 10 }, () => ({ key: 'k', value: Buffer.alloc(20_000) }));
  assert.deepEqual(packRecords(big).map((r) => framesIn(r.value)), [3, 3, 3, 1]);
  assert.ok(PACK_MAX_BYTES === 64 * 1024 && PACK_MAX_FRAMES === 500);
});

test('deliver: parts never split a packed record, each commit at a record end; an undecodable frame is dead-lettered alone with its place', async () => {
  // 30 records of 7 frames (offsets 10..39), parts of at most 20 messages: 2 records (14) per part.
  const frames = (r: number) => Array.from({ length: 7 }, (_, j) => codec.encode('logs', logLine('c', `r${r}-f${j}`)));
  const records = Array.from({ length: 30 }, (_, r) => {
    const f = frames(r);
    if (r === 3) f[4] = Buffer.from('not avro');
    return { offset: String(10 + r), timestamp: 1000 + r, key: Buffer.from('c'), value: packFrames(f) };
  });
  const steps: string[] = [];
  const handled: string[] = [];
  const letters: DeadLetter[] = [];
  const context: DeliveryContext<'logs'> = {
    codec,
    node: 'node-1',
    group: 'g',
    log: ns.logger,
    handle: async (batch) => {
      steps.push(`handle ${batch.length}`);
      for (const m of batch) {
        assert.equal(m.offset, String(10 + Number(/^r(\d+)/.exec(m.event.event_id)![1])), 'a message has its record offset');
        assert.equal(m.timestamp, 1000 + Number(m.offset) - 10);
        assert.equal(m.frame?.count, 7, 'a message knows its place in its record');
        assert.equal(m.frame.index, Number(/-f(\d+)$/.exec(m.event.event_id)![1]));
      }
      handled.push(...batch.map((m) => m.event.event_id));
    },
    deadLetter: async (l) => void letters.push(...l),
    heartbeat: async () => undefined,
    signal: new AbortController().signal,
    initialMs: 10,
    maxMs: 100,
  };
  assert.equal(await deliver({ topic: 'logs', fullTopic: 't.logs', partition: 2, messages: records }, context, async (last) => (steps.push(`commit ${last}`), true), 20), true);
  assert.deepEqual(steps.slice(0, 4), ['handle 14', 'commit 11', 'handle 13', 'commit 13']);
  assert.equal(steps.filter((s) => s.startsWith('commit')).length, 15);
  assert.equal(handled.length, 30 * 7 - 1);
  assert.deepEqual(handled.slice(21, 28), ['r3-f0', 'r3-f1', 'r3-f2', 'r3-f3', 'r3-f5', 'r3-f6', 'r4-f0']);
  assert.equal(letters.length, 1);
  assert.equal(letters[0]!.source_offset, 13);
  assert.equal(letters[0]!.error_code, 'bad_magic_byte');
  assert.deepEqual(letters[0]!.payload, Buffer.from('not avro'));
  assert.match(letters[0]!.reason, /frame 5 of 7 of the packed record at offset 13/);
});

test('deliver with deferred commits: each deferred part ends at a record end (a deferred offset is never inside a packed record), counted in messages', async () => {
  // 9 records of 7 frames (offsets 50..58), parts of at most 20 messages: 2 records (14) per part, the last alone.
  const records = Array.from({ length: 9 }, (_, r) => ({ offset: String(50 + r), timestamp: 1000 + r, key: Buffer.from('c'), value: packFrames(Array.from({ length: 7 }, (_, j) => codec.encode('logs', logLine('c', `d${r}-f${j}`)))) }));
  const steps: string[] = [];
  const context: DeliveryContext<'logs'> = {
    codec,
    node: 'node-1',
    group: 'g',
    log: ns.logger,
    handle: async (batch, ctx) => {
      // Each message's record is whole in the part: its last frame is there.
      const last = batch[batch.length - 1]!;
      assert.equal(last.frame!.index, last.frame!.count - 1, 'a part ends with the last frame of its record');
      assert.equal(ctx.deferCommit(Promise.resolve()), true);
    },
    deadLetter: async () => undefined,
    heartbeat: async () => undefined,
    signal: new AbortController().signal,
    initialMs: 10,
    maxMs: 100,
    deferral: {
      accepts: (first) => (steps.push(`accepts ${first}`), true),
      later: async (last, count) => (steps.push(`later ${last} ${count}`), true),
    },
  };
  assert.equal(await deliver({ topic: 'logs', fullTopic: 't.logs', partition: 0, messages: records }, context, async (last) => (steps.push(`commit ${last}`), true), 20), true);
  assert.deepEqual(steps, ['accepts 50', 'later 51 14', 'accepts 52', 'later 53 14', 'accepts 54', 'later 55 14', 'accepts 56', 'later 57 14', 'accepts 58', 'later 58 7']);
});

/** Dead letters of `topic` (full name), read until `expect` are there. */
async function deadLetters(topic: string, expect: number): Promise<DeadLetter[]> {
  const got: DeadLetter[] = [];
  const sub = await bus.subscribe({ group: `dlq-reader-${Date.now()}`, topics: ['dlq'], handle: async (b) => void got.push(...b.map((m) => m.event).filter((d) => d.source_topic === topic)) });
  try {
    await eventually(`${expect} dead letters`, async () => (got.length >= expect ? true : undefined), 60_000);
    await new Promise((r) => setTimeout(r, 500));
    return got;
  } finally {
    await sub.stop();
  }
}

async function records(topic: string): Promise<number> {
  return (await bus.endOffsets(topic)).reduce((s, p) => s + Number(p.high), 0);
}

test('on Kafka: a consumer stopped mid-part and restarted gets every message of the packed records once: commits never pass part of a record', async () => {
  // One key (one partition): 6,000 messages in ~18 records of ~330 (64 KiB each), one
  // fetch; the first part holds the whole records that fit in 5,000 messages, not 5,000
  // (which would end inside a record and commit past the rest of it).
  const topic = bus.topic('logs');
  const key = 'crash-container';
  const ids = Array.from({ length: 6000 }, (_, i) => `crash-${i}`);
  const msgs = ids.map((id) => ({ key, value: codec.encode('logs', logLine(key, id, `line ${id} `.padEnd(100, 'x'))) }));
  // The records the producer makes of them (the same pure functions: sends, then packs).
  const layout = sendsOf(msgs).flatMap((send) => packRecords(send)).map((r) => framesIn(r.value));
  let firstPart = 0;
  for (const n of layout) if (firstPart + n <= DELIVERY_CHUNK_MESSAGES) firstPart += n;
  else break;
  assert.notEqual(firstPart, DELIVERY_CHUNK_MESSAGES, 'the 5,000th message is inside a record');
  const recordsBefore = await records(topic);
  await bus.publishRaw(topic, msgs, { pack: true });
  assert.equal((await records(topic)) - recordsBefore, layout.length, `six thousand lines in ${layout.length} records`);

  const committedParts: string[][] = [];
  let calls = 0;
  let stopNow: (() => void) | undefined;
  const stopping = new Promise<void>((r) => (stopNow = r));
  const first = await bus.subscribe({
    group: 'pack-crash',
    topics: ['logs'],
    retry: { initialMs: 50, maxMs: 100 },
    handle: async (b) => {
      const mine = b.filter((m) => m.event.container_id === key).map((m) => m.event.event_id);
      if (mine.length === 0) return;
      if (++calls === 1) {
        committedParts.push(mine);
        return;
      }
      // The second part: "crash" before it is handled (the retry loop runs until the stop).
      stopNow?.();
      throw new LogmeterError('store_down', 'the store went away', { retriable: true });
    },
  });
  await stopping;
  await first.stop();
  const handledBefore = committedParts.flat();
  // Whole records (a fetch may also end earlier than the 5,000th message; then at a record too).
  const ends = layout.map((_, i) => layout.slice(0, i + 1).reduce((a, b) => a + b, 0));
  assert.ok(ends.includes(handledBefore.length), `the committed part holds whole records: ${handledBefore.length} messages (record ends ${ends.join(', ')}; first part expected ${firstPart})`);

  const after: string[] = [];
  const second = await bus.subscribe({ group: 'pack-crash', topics: ['logs'], handle: async (b) => void after.push(...b.filter((m) => m.event.container_id === key).map((m) => m.event.event_id)) });
  try {
    await eventually('the rest', async () => (handledBefore.length + after.length >= ids.length ? true : undefined), 60_000);
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    await second.stop();
  }
  assert.deepEqual([...handledBefore, ...after], ids, 'every message once, in order, across the stop');
});

test('on Kafka: a packed publish, unpacked publishes and a bad frame on one topic: every message once, in order per key, same bytes; one dead letter', async () => {
  const topic = bus.topic('logs');
  const containers = ['pack-a', 'pack-b', 'pack-c'];
  const frames = new Map<string, Buffer>();
  const raw = (c: string, id: string): RawMessage => {
    const value = codec.encode('logs', logLine(c, id));
    frames.set(id, value);
    return { key: c, value };
  };
  const expected: Record<string, string[]> = Object.fromEntries(containers.map((c) => [c, []]));
  const batch = (tag: string, n: number) =>
    Array.from({ length: n }, (_, i) => {
      const c = containers[i % containers.length]!;
      const id = `${tag}-${c}-${i}`;
      expected[c]!.push(id);
      return raw(c, id);
    });
  const before = await records(topic);
  const unpacked1 = batch('u1', 30);
  await bus.publishRaw(topic, unpacked1);
  const packed = batch('p', 3000);
  await bus.publishRawBatch([{ topic, messages: packed, pack: true }]);
  const unpacked2 = batch('u2', 30);
  await bus.publishRaw(topic, unpacked2);
  // A packed record with one frame that is not Avro, between good ones.
  const withBad = [raw('pack-a', 'bad-0'), { key: 'pack-a', value: Buffer.from('garbage inside a pack') }, raw('pack-a', 'bad-2')];
  expected['pack-a']!.push('bad-0', 'bad-2');
  await bus.publishRaw(topic, withBad, { pack: true });
  const stored = (await records(topic)) - before;
  // 60 unpacked records, the 3,000 lines in 3 × ceil(1,000 / 330-ish) records, one record of 3.
  assert.ok(stored >= 61 && stored <= 61 + 3 * 4, `${stored} records for ${3000 + 60 + 3} messages`);

  const got: Record<string, string[]> = Object.fromEntries(containers.map((c) => [c, []]));
  let sizesOk = true;
  const sub = await bus.subscribe({
    group: 'packed-reader',
    topics: ['logs'],
    handle: async (b) => {
      for (const m of b) {
        const c = m.event.container_id;
        if (!got[c]) continue;
        got[c].push(m.event.event_id);
        // The same bytes: the frame re-encodes to what was sent, and its size is the frame's.
        const sent = frames.get(m.event.event_id)!;
        if (m.size !== sent.length || !codec.encode('logs', m.event).equals(sent) || m.key?.toString() !== c) sizesOk = false;
      }
    },
  });
  try {
    await eventually('every message', async () => (Object.values(got).reduce((a, l) => a + l.length, 0) >= 3000 + 60 + 2 ? true : undefined), 60_000);
  } finally {
    await sub.stop();
  }
  assert.deepEqual(got, expected);
  assert.ok(sizesOk, 'sizes, keys and bytes as sent');
  const letters = await deadLetters(topic, 1);
  assert.equal(letters.length, 1);
  assert.equal(letters[0]!.error_code, 'bad_magic_byte');
  assert.deepEqual(letters[0]!.payload, Buffer.from('garbage inside a pack'));
  assert.match(letters[0]!.reason, /frame 2 of 3 of the packed record/);
  assert.equal(letters[0]!.key!.toString(), 'pack-a');
});
