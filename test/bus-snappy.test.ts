/**
 * Snappy (`kafka.compression: snappy`, lib/bus/kafkajs-snappy.ts): the setting; the codec's
 * raw blocks and xerial's framing read back to the input, broken ones refused; on Kafka, a bus
 * sending snappy is read by a bus that sends gzip (every consumer reads every codec),
 * packed and not, byte for byte, and by kcat (librdkafka), so the batches are Kafka's snappy.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { compressSync } from 'snappy';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { loadConfig } from '../app/config.js';
import { ConfigError } from '../lib/errors.js';
import { SnappyError, snappy, snappyTotals, unsnappy } from '../lib/bus/kafkajs-snappy.js';
import { namespace } from './helpers/env.js';
import { logFrameMessages, readFramesBack } from './helpers/kafka.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
/** The reader: its own producer sends gzip; it reads snappy as every consumer reads every codec. */
const reader = busFor({ ...ns.config, kafka: { ...ns.config.kafka, compression: 'gzip' } }, codec, ns.logger);
const writer = busFor({ ...ns.config, kafka: { ...ns.config.kafka, compression: 'snappy' } }, codec, ns.logger);
const brokers = ns.config.kafka.brokers.join(',');
before(async () => {
  await reader.ensureTopics(['logs', 'lifecycle']);
});
after(async () => {
  await Promise.all([reader.close(), writer.close()]);
  ns.cleanup();
});

const text = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag} ${i} GET /item/${(i * 7919) % 10007} 200 ${i % 97}ms ${'x'.repeat(i % 50)}`);

test('kafka.compression: snappy by default; gzip and none accepted from LOGMETER_KAFKA_COMPRESSION; anything else refused', () => {
  assert.equal(loadConfig({ env: {} }).kafka.compression, 'snappy');
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION: 'gzip' } }).kafka.compression, 'gzip');
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION: 'snappy' } }).kafka.compression, 'snappy');
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION: 'none' } }).kafka.compression, 'none');
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION: '' } }).kafka.compression, 'snappy', 'empty is unset');
  for (const bad of ['lz4', 'zstd', 'SNAPPY']) assert.throws(() => loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION: bad } }), ConfigError, bad);
});

test('the snappy codec: a raw block and xerial\'s framing read back to the input; broken batches refused with the reason', async () => {
  const input = Buffer.from(text(5000, 'codec').join('\n'));
  const before = { ...snappyTotals };
  const raw = await snappy(input);
  assert.deepEqual({ ...snappyTotals }, { batches: before.batches + 1, bytesIn: before.bytesIn + input.length, bytesOut: before.bytesOut + raw.length });
  assert.ok(raw.length < input.length / 2, `compressed ${input.length} → ${raw.length}`);
  assert.ok((await unsnappy(raw)).equals(input));
  assert.ok(compressSync(input).equals(raw), 'one raw Snappy block, as librdkafka writes');
  // xerial's framing (Java producers): magic, two versions, then (length, block) chunks of 32 KiB of input.
  const header = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00, 0, 0, 0, 1, 0, 0, 0, 1]);
  const chunks: Buffer[] = [header];
  for (let i = 0; i < input.length; i += 32 * 1024) {
    const block = compressSync(input.subarray(i, i + 32 * 1024));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(block.length);
    chunks.push(len, block);
  }
  const xerial = Buffer.concat(chunks);
  assert.ok(chunks.length > 5, 'several chunks');
  assert.ok((await unsnappy(xerial)).equals(input));
  assert.equal((await unsnappy(header)).length, 0, 'a header and no chunk: nothing');
  await assert.rejects(unsnappy(xerial.subarray(0, header.length + 2)), (e: unknown) => e instanceof SnappyError && /chunk length cut off/.test(e.message));
  await assert.rejects(unsnappy(xerial.subarray(0, xerial.length - 1)), (e: unknown) => e instanceof SnappyError && /runs past the end/.test(e.message));
  await assert.rejects(unsnappy(Buffer.from('not snappy at all, just text')), (e: unknown) => e instanceof SnappyError && e.code === 'snappy_invalid');
});

test('on Kafka: a bus sending snappy, packed and not, is read by a bus that sends gzip, every message as sent; kcat reads the same values', async () => {
  const topic = reader.topic('logs');
  const t0 = Date.now();
  const frames = new Map<string, Buffer>();
  const before = { ...snappyTotals };
  await writer.publishRaw(topic, logFrameMessages(codec, frames, 'u', 600, 'sn-', t0));
  await writer.publishRaw(topic, logFrameMessages(codec, frames, 'p', 2400, 'sn-', t0), { pack: true });
  assert.ok(snappyTotals.batches > before.batches, 'the batches went through snappy');

  const { got, same } = await readFramesBack(reader, codec, frames, 'snappy-reader');
  assert.equal(got, 3000);
  assert.equal(same, 3000, 'every message as sent');

  // librdkafka (kcat) reads the snappy batches: plain text values, one per line.
  const lines = text(2000, 'kcat');
  const lifecycle = reader.topic('lifecycle');
  await writer.publishRaw(lifecycle, lines.map((l, i) => ({ key: `k${i % 4}`, value: Buffer.from(l) })));
  const read = execFileSync('kcat', ['-b', brokers, '-t', lifecycle, '-C', '-e', '-q', '-f', '%s\n'], { maxBuffer: 64 * 1024 * 1024 }).toString().trimEnd().split('\n');
  assert.deepEqual(read.sort(), [...lines].sort());
});
