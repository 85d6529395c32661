import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deepEqual as looseDeepEqual } from 'node:assert';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { TOPIC_NAMES, type DeadLetter, type TopicName } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { LogmeterError } from '../lib/errors.js';
import { busConfig, type ConsumedMessage } from '../lib/bus/bus.js';
import { createBus } from '../lib/bus/create.js';
import { DLQ_REQUEST_BYTES, letterRequests } from '../lib/bus/delivery.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
let created: string[] = [];
before(async () => {
  created = await bus.ensureTopics();
});
after(async () => {
  await bus.close();
  ns.cleanup();
});

test('topics are created with their partitions and cleanup policy, idempotently', async () => {
  assert.equal(created.length, TOPIC_NAMES.length);
  assert.deepEqual(await bus.ensureTopics(), []);
  assert.equal((await bus.endOffsets(bus.topic('logs'))).length, ns.config.kafka.partitions);
  const policy = { [bus.topic('routes')]: (await bus.topicSettings(bus.topic('routes'), ['cleanup.policy']))['cleanup.policy'], [bus.topic('logs')]: (await bus.topicSettings(bus.topic('logs'), ['cleanup.policy']))['cleanup.policy'] };
  assert.equal(policy[bus.topic('routes')], 'compact');
  assert.equal(policy[bus.topic('logs')], 'delete');
});

test('every event type round-trips through Kafka with Avro framing, byte-exact', async () => {
  const received = new Map<TopicName, ConsumedMessage<TopicName>>();
  const sub = await bus.subscribe({
    group: 'roundtrip',
    topics: TOPIC_NAMES,
    handle: async (batch) => {
      for (const m of batch) received.set(m.topic, m);
    },
  });
  try {
    for (const name of TOPIC_NAMES) await bus.publish(name, [{ event: SAMPLE_EVENTS[name] }]);
    await eventually('all topics delivered', async () => (received.size === TOPIC_NAMES.length ? true : undefined), 60_000);
    for (const name of TOPIC_NAMES) {
      const m = received.get(name)!;
      looseDeepEqual(m.event, SAMPLE_EVENTS[name]);
      assert.deepEqual(codec.encode(name, m.event), codec.encode(name, SAMPLE_EVENTS[name]), name);
      assert.equal(m.size, codec.encode(name, SAMPLE_EVENTS[name]).length);
    }
    assert.equal(received.get('logs')!.key!.toString(), SAMPLE_EVENTS.logs.container_id);
    assert.equal(received.get('routes')!.key!.toString(), 'shop.acme.test');
    assert.equal(received.get('usage')!.key!.toString(), 'acme/shop');
  } finally {
    await sub.stop();
  }
});

/** Reads every dead letter on the dlq topic with a fresh group. */
async function deadLetters(expect: number): Promise<DeadLetter[]> {
  const got: DeadLetter[] = [];
  const sub = await bus.subscribe({ group: `dlq-reader-${Date.now()}`, topics: ['dlq'], handle: async (b) => void got.push(...b.map((m) => m.event)) });
  try {
    await eventually(`${expect} dead letters`, async () => (got.length >= expect ? true : undefined), 60_000);
    return got;
  } finally {
    await sub.stop();
  }
}

test('a garbage payload lands in dlq with its position and reason; the consumer keeps going', async () => {
  const key = 'garbage-test-container';
  const event = { ...SAMPLE_EVENTS.lifecycle, container_id: key };
  await bus.publish('lifecycle', [{ event: { ...event, event_id: 'before' } }]);
  await bus.publishRaw(bus.topic('lifecycle'), [{ key, value: Buffer.from('\x00\x00\x00\x00\x63not avro at all') }]);
  await bus.publishRaw(bus.topic('lifecycle'), [{ key, value: Buffer.from('{"json":"instead"}') }]);
  await bus.publish('lifecycle', [{ event: { ...event, event_id: 'after' } }]);

  const seen: string[] = [];
  const sub = await bus.subscribe({ group: 'garbage', topics: ['lifecycle'], handle: async (b) => void seen.push(...b.map((m) => m.event.event_id)) });
  try {
    await eventually('both good events', async () => (seen.includes('before') && seen.includes('after') ? true : undefined), 60_000);
  } finally {
    await sub.stop();
  }
  assert.deepEqual(seen.filter((id) => id === 'before' || id === 'after'), ['before', 'after']);
  const letters = (await deadLetters(2)).filter((d) => d.source_topic === bus.topic('lifecycle'));
  assert.equal(letters.length, 2);
  const partition = letters[0]!.source_partition;
  const offsets = await bus.endOffsets(bus.topic('lifecycle'));
  const high = Number(offsets.find((o) => o.partition === partition)!.high);
  // The four messages share a key, so a partition: the garbage sits 3rd and 2nd from the end.
  assert.deepEqual(letters.map((d) => [d.source_offset, d.error_code]), [
    [high - 3, 'unknown_schema_id'],
    [high - 2, 'bad_magic_byte'],
  ]);
  assert.equal(letters[1]!.source_partition, partition);
  assert.deepEqual(letters[1]!.payload, Buffer.from('{"json":"instead"}'));
  assert.equal(letters[1]!.key!.toString(), key);
  assert.equal(letters[0]!.consumer_group, `${ns.config.kafka.topicPrefix}garbage`);
  assert.match(letters[0]!.reason, /schema id 99 is not registered/);
});

test('offsets are committed only after the handler succeeded: a failing write is retried, not skipped', async () => {
  const stats = { ...SAMPLE_EVENTS.stats, container_id: 'retry-test-container' };
  const statsTopic = bus.topic('stats');
  const before = await bus.endOffsets(statsTopic);
  const already = before.reduce((s, p) => s + Number(p.high), 0);
  await bus.publish('stats', [1, 2, 3].map((n) => ({ event: { ...stats, event_id: `s${n}` } })));
  const durable: string[] = [];
  let failures = 0;
  const sub = await bus.subscribe({
    group: 'retry',
    topics: ['stats'],
    retry: { initialMs: 50, maxMs: 200 },
    handle: async (b) => {
      if (failures < 3 && b.some((m) => m.event.event_id.startsWith('s'))) {
        failures++;
        throw new LogmeterError('store_down', 'store unavailable', { retriable: true });
      }
      durable.push(...b.map((m) => m.event.event_id).filter((id) => id.startsWith('s')));
    },
  });
  await eventually('3 durable', async () => (durable.length >= 3 ? true : undefined), 60_000);
  await sub.stop();
  assert.equal(failures, 3);
  assert.deepEqual(durable, ['s1', 's2', 's3']);
  const committed = await bus.committedOffsets(`${ns.config.kafka.topicPrefix}retry`, bus.topic('stats'));
  const total = committed.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
  assert.equal(total, already + 3, 'committed exactly up to the end of the topic');

  // A consumer that dies before its handler finished leaves the offset where it was.
  await bus.publish('stats', [{ event: { ...stats, event_id: 's4' } }]);
  let entered = false;
  const stuck = await bus.subscribe({
    group: 'retry',
    topics: ['stats'],
    retry: { initialMs: 50, maxMs: 100 },
    handle: async () => {
      entered = true;
      throw new LogmeterError('store_down', 'store unavailable', { retriable: true });
    },
  });
  await eventually('handler entered', async () => (entered ? true : undefined), 60_000);
  await stuck.stop();
  const again: string[] = [];
  const resumed = await bus.subscribe({ group: 'retry', topics: ['stats'], handle: async (b) => void again.push(...b.map((m) => m.event.event_id)) });
  await eventually('s4 redelivered', async () => (again.includes('s4') ? true : undefined), 60_000);
  await resumed.stop();
  assert.deepEqual(again, ['s4']);
});

test('a handler error that cannot pass parks the batch in dlq and the group moves on', async () => {
  const http = { ...SAMPLE_EVENTS.http, container_id: 'permanent-test-container' };
  await bus.publish('http', [{ event: { ...http, event_id: 'h-bad' } }, { event: { ...http, event_id: 'h-good' } }]);
  const ok: string[] = [];
  const sub = await bus.subscribe({
    group: 'permanent',
    topics: ['http'],
    handle: async (b) => {
      if (b.some((m) => m.event.event_id === 'h-bad')) throw new TypeError('bug: cannot read property of undefined');
      ok.push(...b.map((m) => m.event.event_id));
    },
  });
  await eventually('h-good handled', async () => (ok.includes('h-good') ? true : undefined), 60_000);
  await sub.stop();
  const letters = await deadLetters(3).then((all) => all.filter((d) => d.source_topic === bus.topic('http')));
  assert.equal(letters.length, 1, 'only the poisoned message is parked');
  assert.equal(codec.decode('http', letters[0]!.payload).event_id, 'h-bad');
  assert.equal(letters[0]!.error_code, 'handler_failed');
  assert.match(letters[0]!.reason, /bug: cannot read property/);
});

test('readToEnd: a topic read up to where it ended at start, also when its last message went to dlq; the group is deleted on stop', async () => {
  const set = (host: string, version: number) => ({ event: { ...SAMPLE_EVENTS.routes, event_id: `rte-${host}-${version}`, host, version } });
  await bus.publish('routes', [set('a.rte.test', 1), set('b.rte.test', 1), set('a.rte.test', 2)]);
  // The last message of a.rte.test's partition cannot be decoded: reading still gets to the end.
  await bus.publishRaw(bus.topic('routes'), [{ key: 'a.rte.test', value: Buffer.from('not avro') }]);
  const seen: string[] = [];
  const reader = await bus.readToEnd({ topic: 'routes', group: 'read-to-end', follow: false, handle: async (b) => void seen.push(...b.map((m) => m.event.event_id)) });
  assert.equal(await reader.caughtUp, true);
  assert.ok(reader.complete());
  for (const id of ['rte-a.rte.test-1', 'rte-b.rte.test-1', 'rte-a.rte.test-2']) assert.ok(seen.includes(id), id);
  await reader.stop();
  const left = await bus.committedOffsets(`${ns.config.kafka.topicPrefix}read-to-end`, bus.topic('routes'));
  assert.ok(left.every((p) => p.offset === '-1'), `the group is gone: ${JSON.stringify(left)}`);
});

test('publish and the admin calls reject with errors that say whether retrying can help: a broker away is retriable', async () => {
  const away = createBus({ ...busConfig(ns.config), brokers: ['127.0.0.1:1'], retries: 0, connectionTimeoutMs: 500 }, codec, ns.logger);
  try {
    await assert.rejects(away.publish('stats', [{ event: SAMPLE_EVENTS.stats }]), (e) => e instanceof LogmeterError && e.code === 'kafka_unreachable' && e.retriable);
    await assert.rejects(away.ping(), (e) => e instanceof LogmeterError && e.code === 'kafka_unreachable' && e.retriable);
  } finally {
    await away.close();
  }
});

test("a send error is retriable when its cause chain is a broker away or a refusal of the producer's state", async () => {
  const { kafkaError, producerStateError } = await import('../lib/bus/kafkajs.js');
  // Shaped as kafkajs 2.2.4 wraps them: a name, `retriable`, the wrapped error as `cause`, a protocol error's `type`.
  const err = (name: string, message: string, fields: { retriable: boolean; cause?: Error; type?: string }) => Object.assign(new Error(message), { name, ...fields });
  const refused = err('KafkaJSConnectionError', 'Connection error: connect ECONNREFUSED 127.0.0.1:9', { retriable: true });
  const gaveUp = err('KafkaJSNonRetriableError', refused.message, { retriable: false, cause: err('KafkaJSNumberOfRetriesExceeded', refused.message, { retriable: false, cause: refused }) });
  const away = kafkaError(gaveUp, ['127.0.0.1:9']);
  assert.equal(away.code, 'kafka_unreachable');
  assert.equal(away.retriable, true);
  const outOfOrder = err('KafkaJSNonRetriableError', 'The broker received an out of order sequence number', { retriable: false, cause: err('KafkaJSProtocolError', 'The broker received an out of order sequence number', { retriable: false, type: 'OUT_OF_ORDER_SEQUENCE_NUMBER' }) });
  assert.equal(producerStateError(outOfOrder), 'OUT_OF_ORDER_SEQUENCE_NUMBER');
  assert.equal(producerStateError(gaveUp), undefined);
  const invalid = err('KafkaJSNonRetriableError', 'bad', { retriable: false, cause: err('KafkaJSProtocolError', 'bad', { retriable: false, type: 'INVALID_RECORD' }) });
  assert.equal(producerStateError(invalid), undefined);
  assert.equal(kafkaError(invalid, ['127.0.0.1:9']).retriable, false);
});

test('dead letters go out in publishes of bounded size, in order, every letter once', () => {
  const letter = (i: number, payloadBytes: number): DeadLetter => ({ ...SAMPLE_EVENTS.dlq, event_id: `dl-${i}`, key: Buffer.from(`k${i}`), payload: Buffer.alloc(payloadBytes, 7), reason: `reason ${i}` });
  // As many as one fetch of undecodable messages gave in the stress run, 1 KiB each.
  const many = Array.from({ length: 16_321 }, (_, i) => letter(i, 1024));
  const parts = letterRequests(many);
  assert.deepEqual(parts.flat().map((l) => l.event_id), many.map((l) => l.event_id));
  const size = (ls: DeadLetter[]) => ls.reduce((n, l) => n + l.key!.length + l.payload!.length + Buffer.byteLength(l.reason) + 256, 0);
  for (const p of parts) assert.ok(size(p) <= DLQ_REQUEST_BYTES, `a publish of ${size(p)} bytes`);
  // Full parts: each next letter would not have fitted.
  for (const p of parts.slice(0, -1)) assert.ok(size(p) + 1024 + 256 + 20 > DLQ_REQUEST_BYTES);
  assert.ok(parts.length > 20, `${parts.length} publishes for ${size(many)} bytes`);
  // A letter over the bound on its own is a publish of its own; an empty list is no publish.
  const big = [letter(1, 10), letter(2, DLQ_REQUEST_BYTES + 5), letter(3, 10)];
  assert.deepEqual(letterRequests(big).map((p) => p.map((l) => l.event_id)), [['dl-1'], ['dl-2'], ['dl-3']]);
  assert.deepEqual(letterRequests([]), []);
});
