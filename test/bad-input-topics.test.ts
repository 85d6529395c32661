/**
 * Bad messages on a topic, read by the real processors (the log sink into ClickHouse and
 * the access-log parser): each lands in the dead-letter topic — and in the
 * `dead_letters` table — with its position and a reason naming the problem; the
 * processors keep consuming and every good message around it arrives. A message larger
 * than Kafka takes is refused to its producer with a clear, non-retriable error.
 * (test/bus.test.ts has a bad magic byte, an unknown id with a garbage body, and a handler
 * that fails for good.)
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { DeadLetter, LogLine } from '../schemas/events.js';
import { createRegistry } from '../lib/metrics.js';
import { LogmeterError } from '../lib/errors.js';
import { DLQ_MAX_PAYLOAD_BYTES } from '../lib/bus/bus.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { eventually } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { note, pipeline, type Pipeline } from './helpers/bad-input.js';

let p: Pipeline;
before(async () => {
  p = await pipeline();
});
after(() => p.close());

/** One container's key for everything: one partition, so offsets tell the order. */
const KEY = 'badtopics'.padEnd(64, '0');
const good = (n: number): LogLine => ({
  ...SAMPLE_EVENTS.logs,
  event_id: `good-${n}`,
  container_id: KEY,
  ts: Date.now(),
  ts_nanos: 0,
  seq: n,
  stream: 'stdout',
  line: Buffer.from(`203.0.113.7 - - [26/Nov/2026:08:45:57 +0000] "GET /n/${n} HTTP/1.1" 200 ${n} "-" "curl/8" 0.013`),
  original_length: 0,
  invalid_utf8: false,
  log_format: 'nginx-combined',
});
/** Confluent framing (magic byte 0, schema id) around any body. */
function withId(id: number, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(id, 1);
  body.copy(out, 5);
  return out;
}

test('truncated Avro, a wrong or unknown schema id, another type’s body, a tombstone and a near-limit message: each dead-lettered with its reason; the processors keep going; every good message arrives', async () => {
  const { bus, codec, ch, ns } = p;
  const logsId = codec.writerId('logs');
  const encodedGood = codec.encode('logs', { ...good(0), event_id: 'template' });
  // As large as the broker takes, so its dead letter (the same bytes and ~300 more) would not fit whole.
  const big = randomBytes(1_048_100 - 5);
  const bad: Array<{ name: string; value: Buffer | null; code: string; reason: RegExp }> = [
    { name: 'truncated Avro', value: encodedGood.subarray(0, encodedGood.length - 20), code: 'avro_decode', reason: /^\d+-byte body is not a io\.logmeter\.LogLine written with schema id 1: truncated buffer$/ },
    { name: 'cut inside the header', value: encodedGood.subarray(0, 3), code: 'too_short', reason: /^payload of 3 bytes is shorter than the 5-byte header$/ },
    { name: 'schema id of another type', value: codec.encode('http', { ...SAMPLE_EVENTS.http, container_id: KEY }), code: 'schema_mismatch', reason: new RegExp(`^schema id ${codec.writerId('http')} is io\\.logmeter\\.HttpRequest, topic logs carries io\\.logmeter\\.LogLine$`) },
    { name: 'unknown schema id', value: withId(424242, encodedGood.subarray(5)), code: 'unknown_schema_id', reason: /^schema id 424242 is not registered$/ },
    { name: 'valid Avro of another type under the logs id', value: withId(logsId, codec.encode('stats', SAMPLE_EVENTS.stats).subarray(5)), code: 'avro_decode', reason: /is not a io\.logmeter\.LogLine written with schema id 1: invalid io\.logmeter\.Stream enum index/ },
    { name: 'tombstone', value: null, code: 'empty_payload', reason: /^empty payload \(tombstone or missing value\)$/ },
    { name: 'near the size limit, undecodable', value: withId(logsId, big), code: 'avro_decode', reason: new RegExp(`\\(payload cut to ${DLQ_MAX_PAYLOAD_BYTES} of ${big.length + 5} bytes\\)$`) },
  ];
  // The largest message that fits (a random, incompressible line of 1,000,000 bytes): a good one.
  const largest: LogLine = { ...good(1000), event_id: 'good-largest', line: randomBytes(1_000_000), log_format: null, invalid_utf8: true };

  const topic = bus.topic('logs');
  const before = await bus.endOffsets(topic);
  for (let n = 1; n <= 50; n++) await bus.publish('logs', [{ event: good(n) }]);
  for (const b of bad) await bus.publishRaw(topic, [{ key: KEY, value: b.value }]);
  await bus.publish('logs', [{ event: largest }]);
  for (let n = 51; n <= 100; n++) await bus.publish('logs', [{ event: good(n) }]);
  const afterOffsets = await bus.endOffsets(topic);
  const grown = afterOffsets.map((p) => ({ partition: p.partition, n: Number(p.high) - Number(before.find((b) => b.partition === p.partition)!.high) })).filter((g) => g.n > 0);
  assert.deepEqual(grown.map((g) => g.n), [108], 'all 108 messages in one partition');
  const partition = grown[0]!.partition;
  const first = Number(before.find((b) => b.partition === partition)!.high);

  const t0 = Date.now();
  p.subs.push(await startLogSink({ config: logSinkConfig(p.config), bus, ch, logger: ns.logger, registry: createRegistry(false) }));
  p.subs.push(await startAccessLogParser({ bus, logger: ns.logger, registry: createRegistry(false) }));

  const logs = await eventually('101 good log rows', async () => {
    const r = await p.q<{ event_id: string; n: string }>(`SELECT event_id, length(line) AS n FROM ${ch.table('logs')} FINAL WHERE container_id = {k:String} ORDER BY seq`, { k: KEY });
    return r.length >= 101 ? r : undefined;
  }, 120_000);
  assert.deepEqual(logs.map((r) => r.event_id), [...Array.from({ length: 100 }, (_, i) => `good-${i + 1}`), 'good-largest']);
  assert.equal(Number(logs.at(-1)!.n), 1_000_000, 'the largest message is stored whole');
  const http = await eventually('100 http requests', async () => {
    const r = await p.q<{ n: string; paths: string }>(`SELECT count() AS n, uniqExact(path) AS paths FROM ${ch.table('http_requests')} FINAL WHERE container_id = {k:String}`, { k: KEY });
    return Number(r[0]?.n) >= 100 ? r[0] : undefined;
  }, 120_000);
  assert.deepEqual([Number(http.n), Number(http.paths)], [100, 100]);

  // Two consumer groups read the topic (sink, parser): two dead letters per bad message on Kafka…
  const letters: DeadLetter[] = [];
  const reader = await bus.subscribe({ group: `dlq-reader-${Date.now()}`, topics: ['dlq'], handle: async (b) => void letters.push(...b.map((m) => m.event)) });
  p.subs.push(reader);
  await eventually('14 dead letters', async () => (letters.filter((l) => l.source_topic === topic).length >= 14 ? true : undefined), 120_000);
  await new Promise((r) => setTimeout(r, 2000));
  const mine = letters.filter((l) => l.source_topic === topic);
  note(`topics: 108 messages (100 good, 1 of 1,000,000 bytes, 7 bad) → ${logs.length} rows, ${http.n} http requests, ${mine.length} dead letters in ${Date.now() - t0} ms`);
  assert.equal(mine.length, 14);
  assert.deepEqual(new Set(mine.map((l) => l.consumer_group)), new Set([`${ns.id}.log-sink.logs`, `${ns.id}.access-log`]));
  for (const [i, b] of bad.entries()) {
    const offset = first + 50 + i;
    const pair = mine.filter((l) => l.source_offset === offset);
    assert.equal(pair.length, 2, `${b.name}: one letter per group`);
    for (const l of pair) {
      assert.equal(l.source_partition, partition);
      assert.equal(l.error_code, b.code, b.name);
      assert.match(l.reason, b.reason, b.name);
      assert.equal(l.key!.toString(), KEY);
      if (b.value === null) assert.equal(l.payload, null);
      else assert.deepEqual(l.payload, b.value.length > DLQ_MAX_PAYLOAD_BYTES ? b.value.subarray(0, DLQ_MAX_PAYLOAD_BYTES) : b.value, b.name);
    }
  }
  // …and one row each in ClickHouse (the letters share their id: topic, partition, offset, reason).
  const rows = await eventually('7 dead-letter rows', async () => {
    const r = await p.q<{ source_offset: string; error_code: string; payload_bytes: string }>(
      `SELECT source_offset, error_code, length(base64Decode(ifNull(payload, ''))) AS payload_bytes FROM ${ch.table('dead_letters')} FINAL WHERE source_topic = {t:String} ORDER BY source_offset`,
      { t: topic },
    );
    return r.length >= 7 ? r : undefined;
  }, 120_000);
  assert.deepEqual(
    rows.map((r) => [Number(r.source_offset), r.error_code, Number(r.payload_bytes)]),
    bad.map((b, i) => [first + 50 + i, b.code, Math.min(b.value?.length ?? 0, DLQ_MAX_PAYLOAD_BYTES)]),
  );
});

test('a message larger than the broker takes: its producer gets a clear, non-retriable error; nothing half-written; the producer goes on', async () => {
  const { bus, codec } = p;
  const topic = bus.topic('logs');
  const before = await bus.endOffsets(topic);
  const huge: LogLine = { ...good(1), event_id: 'too-large', line: randomBytes(2 * 1024 * 1024) };
  let err: unknown;
  const t0 = Date.now();
  try {
    await bus.publish('logs', [{ event: huge }]);
  } catch (e) {
    err = e;
  }
  note(`oversized: refused after ${Date.now() - t0} ms: ${(err as Error | undefined)?.message ?? 'not refused'}`);
  assert.ok(err instanceof LogmeterError);
  assert.equal(err.code, 'kafka_message_too_large');
  assert.equal(err.retriable, false);
  assert.match(err.message, new RegExp(`1 message\\(s\\) refused as too large; the largest is ${codec.encode('logs', huge).length + KEY.length} bytes, for ${topic.replace(/\./g, '\\.')} \\(over the broker's message\\.max\\.bytes or the topic's max\\.message\\.bytes\\)`));
  await bus.publish('logs', [{ event: good(2000) }]);
  const afterOffsets = await bus.endOffsets(topic);
  const added = afterOffsets.reduce((n, p) => n + Number(p.high) - Number(before.find((b) => b.partition === p.partition)!.high), 0);
  assert.equal(added, 1, 'only the good message after it');
});
