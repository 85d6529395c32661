/**
 * The producer's gzip level (`kafka.compressionLevel`, lib/bus/kafkajs-gzip.ts): the setting
 * and its bounds; the codec of a level gives zlib's bytes at that level, which gunzip back to
 * the input; on the wire the batches still say gzip, so a bus at the default level (as the
 * sink and every processor read) reads what a bus at level 1 or 9 wrote, byte for byte.
 * The readers' gzip codec inflates a batch in one chunk of the size its trailer gives, and
 * gives zlib's bytes whatever the trailer says.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import zlib from 'node:zlib';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { loadConfig } from '../app/config.js';
import { ConfigError } from '../lib/errors.js';
import { GZIP_LEVEL_DEFAULT } from '../lib/config.js';
import { busConfig } from '../lib/bus/bus.js';
import { GUNZIP_CHUNK, gunzipBatch, gunzipChunkSize, gzipCompression, gzipTotals, wireCodec } from '../lib/bus/kafkajs-gzip.js';

/** kafkajs' CompressionTypes (not imported here: lib/bus/kafkajs-fixes.ts must load before kafkajs). */
const CompressionTypes = { GZIP: 1 } as const;
import { namespace } from './helpers/env.js';
import { logFrameMessages, readFramesBack } from './helpers/kafka.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
/** The reader: the namespace's config, so the default level (what every consumer runs with). */
const reader = busFor(ns.config, codec, ns.logger);
const writerAt = (level: number) => busFor({ ...ns.config, kafka: { ...ns.config.kafka, compression: 'gzip', compressionLevel: level } }, codec, ns.logger);
const fast = writerAt(1);
const small = writerAt(9);
before(async () => {
  await reader.ensureTopics(['logs']);
});
after(async () => {
  await Promise.all([reader.close(), fast.close(), small.close()]);
  ns.cleanup();
});

test('kafka.compressionLevel: default GZIP_LEVEL_DEFAULT, LOGMETER_KAFKA_COMPRESSION_LEVEL read exactly, 1–9 only; it reaches the bus config', () => {
  assert.equal(loadConfig({ env: {} }).kafka.compressionLevel, GZIP_LEVEL_DEFAULT);
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION_LEVEL: '1' } }).kafka.compressionLevel, 1);
  assert.equal(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION_LEVEL: '9' } }).kafka.compressionLevel, 9);
  assert.equal(busConfig(loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION_LEVEL: '3' } })).compressionLevel, 3);
  for (const bad of ['0', '10', '2.5', 'fast']) {
    assert.throws(() => loadConfig({ env: { LOGMETER_KAFKA_COMPRESSION_LEVEL: bad } }), (err: unknown) => err instanceof ConfigError && /LOGMETER_KAFKA_COMPRESSION_LEVEL/.test(err.message), bad);
  }
});

test('gzipCompression: one value per level, gzip on the wire; its codec gives zlib bytes at that level, which gunzip to the input', async () => {
  const codecs = (createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: Record<number, () => { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> }> }).CompressionCodecs;
  // Compressible, not trivially: log-like lines.
  const input = Buffer.from(Array.from({ length: 3000 }, (_, i) => `2026-12-05T09:00:${String(i % 60).padStart(2, '0')}Z GET /item/${(i * 7919) % 10007} 200 ${i % 97}ms\n`).join(''));
  const outputs = new Map<number, Buffer>();
  for (let level = 1; level <= 9; level++) {
    const type = gzipCompression(level);
    assert.equal(type, CompressionTypes.GZIP | (level << 3));
    assert.equal(gzipCompression(level), type, 'the same value again');
    assert.equal(wireCodec(type), CompressionTypes.GZIP, 'the batch attributes say gzip');
    const before = { ...gzipTotals };
    const out = await codecs[type]!().compress({ buffer: input });
    assert.deepEqual(out, zlib.gzipSync(input, { level }), `level ${level}: zlib's bytes`);
    assert.deepEqual(zlib.gunzipSync(out), input);
    // kafkajs' own gzip codec (the one readers use) takes it back too.
    assert.deepEqual(await codecs[CompressionTypes.GZIP]!().decompress(out), input);
    assert.deepEqual({ ...gzipTotals }, { batches: before.batches + 1, bytesIn: before.bytesIn + input.length, bytesOut: before.bytesOut + out.length });
    outputs.set(level, out);
  }
  assert.ok(outputs.get(1)!.length > outputs.get(9)!.length, `level 1 ${outputs.get(1)!.length} B, level 9 ${outputs.get(9)!.length} B`);
  for (const bad of [0, 10, 1.5, -1]) assert.throws(() => gzipCompression(bad), /gzip level/);
});

test('the readers\' gzip codec: one chunk of the trailer\'s size; the same bytes as zlib.unzip for gzip at any level, the zlib format, several members, a trailer that lies', async () => {
  const codecs = (createRequire(import.meta.url)('kafkajs') as { CompressionCodecs: Record<number, () => { compress(e: { buffer: Buffer }): Promise<Buffer>; decompress(b: Buffer): Promise<Buffer> }> }).CompressionCodecs;
  const input = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `2026-12-05T09:00:${String(i % 60).padStart(2, '0')}Z GET /item/${(i * 7919) % 10007} 200 ${i % 97}ms\n`).join(''));
  const gz = zlib.gzipSync(input, { level: 1 });
  assert.ok(input.length > GUNZIP_CHUNK.min, 'more than one chunk of zlib\'s default');
  assert.equal(gunzipChunkSize(gz), input.length + 1);
  assert.equal(gunzipChunkSize(zlib.deflateSync(input)), GUNZIP_CHUNK.min, 'zlib format: no trailer size');
  assert.equal(gunzipChunkSize(zlib.gzipSync(Buffer.alloc(0))), GUNZIP_CHUNK.min);
  assert.equal(await codecs[CompressionTypes.GZIP]!().decompress(gz).then((b) => b.equals(input)), true, 'kafkajs\' codec for gzip batches is this one');
  /** A copy of `b` whose last 4 bytes (ISIZE) say `size`. */
  const claiming = (b: Buffer, size: number) => {
    const c = Buffer.from(b);
    c.writeUInt32LE(size >>> 0, c.length - 4);
    return c;
  };
  const cases: Array<[string, Buffer]> = [
    ['gzip level 1', gz],
    ['gzip level 9', zlib.gzipSync(input, { level: 9 })],
    ['zlib format', zlib.deflateSync(input)],
    ['two gzip members', Buffer.concat([zlib.gzipSync(input.subarray(0, 1000)), zlib.gzipSync(input.subarray(1000))])],
    ['empty', zlib.gzipSync(Buffer.alloc(0))],
    ['a few bytes', zlib.gzipSync(Buffer.from('x'))],
    ['above the cap', zlib.gzipSync(Buffer.concat([input, Buffer.alloc(GUNZIP_CHUNK.max, 'a')]), { level: 1 })],
  ];
  for (const [what, c] of cases) assert.deepEqual(await gunzipBatch(c), zlib.unzipSync(c), what);
  // A trailer that lies is refused by zlib (its size check) as kafkajs' own codec refuses it; the chunk it asked for is capped.
  for (const size of [0, 10, input.length - 1, 2 ** 32 - 1]) {
    await assert.rejects(gunzipBatch(claiming(gz, size)), /incorrect length check/, `ISIZE ${size}`);
    assert.ok(gunzipChunkSize(claiming(gz, size)) <= GUNZIP_CHUNK.max);
  }
});

test('on Kafka: buses at levels 1 and 9 send the same records, packed and not; the reader at the default level gets every message, same bytes; level 1 sends more bytes', async () => {
  const topic = reader.topic('logs');
  const t0 = Date.now();
  const frames = new Map<string, Buffer>();
  // The same timestamps for both levels: the same record bytes go into gzip.
  const messages = (tag: string, n: number) => logFrameMessages(codec, frames, tag, n, 'gz-', t0);
  const sent: Record<number, { bytesIn: number; bytesOut: number }> = {};
  for (const [level, bus] of [[1, fast], [9, small]] as const) {
    const before = { ...gzipTotals };
    await bus.publishRaw(topic, messages(`l${level}u`, 600).map((m) => ({ ...m })));
    await bus.publishRaw(topic, messages(`l${level}p`, 2400).map((m) => ({ ...m })), { pack: true });
    sent[level] = { bytesIn: gzipTotals.bytesIn - before.bytesIn, bytesOut: gzipTotals.bytesOut - before.bytesOut };
  }
  assert.ok(sent[1]!.bytesIn > 0 && sent[9]!.bytesIn > 0, 'both went through the level codecs');
  // Tags differ by one character per line ("l1" / "l9"): the same length, so the same record bytes in.
  assert.equal(sent[1]!.bytesIn, sent[9]!.bytesIn, 'the same bytes into gzip at both levels');
  assert.ok(sent[1]!.bytesOut > sent[9]!.bytesOut, `level 1 ${sent[1]!.bytesOut} B on the wire, level 9 ${sent[9]!.bytesOut} B`);

  const { got, same } = await readFramesBack(reader, codec, frames, 'gzip-reader');
  assert.equal(got, 6000);
  assert.equal(same, 6000, 'every message as sent');
});
