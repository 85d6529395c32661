/**
 * The produce request and request framing of lib/bus/kafkajs-encoding.ts against kafkajs 2.2.4's
 * own modules (compiled afresh from its sources: the module cache holds the replacements): the
 * same bytes for any messages, keys, values, timestamps, headers, partitions and codecs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Module, { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { createRequest, produceRequestV3, scratchHeld } from '../lib/bus/kafkajs-encoding.js';
import { gzipCompression } from '../lib/bus/kafkajs-gzip.js';
import { PackedFrames, packFrames, unpack } from '../lib/bus/pack.js';
import { CompressionTypes } from 'kafkajs';

const require = createRequire(import.meta.url);
const src = path.join(path.dirname(require.resolve('kafkajs')), 'src');

/** A kafkajs module compiled from its file, outside the module cache (its own requires resolve as usual). */
function original<T>(...p: string[]): T {
  const file = path.join(src, ...p);
  const m = new Module(file) as Module & { _compile(code: string, file: string): void };
  m.filename = file;
  m.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  m._compile(readFileSync(file, 'utf8'), file);
  return m.exports as T;
}

type Request = { apiKey: number; apiVersion: number; expectResponse(): boolean; encode(): Promise<{ buffer: Buffer }> };
const kafkajsProduceV3 = original<(args: unknown) => Request>('protocol', 'requests', 'produce', 'v3', 'request.js');
const kafkajsCreateRequest = original<(args: unknown) => Promise<{ buffer: Buffer }>>('protocol', 'request.js');
const Long = require(path.join(src, 'utils', 'long.js')) as { fromValue(v: unknown): unknown; fromInt(v: number): unknown };
const KafkajsEncoder = require(path.join(src, 'protocol', 'encoder.js')) as new () => { writeBuffer(b: Buffer): { buffer: Buffer } };

/** Runs `fn` with Date.now fixed (kafkajs stamps messages without a timestamp with it). */
async function frozen<T>(now: number, fn: () => Promise<T>): Promise<T> {
  const real = Date.now;
  Date.now = () => now;
  try {
    return await fn();
  } finally {
    Date.now = real;
  }
}

const NOW = 1_764_000_000_123;
const mineOnly = (args: Record<string, unknown>) => frozen(NOW, async () => (await produceRequestV3(args as unknown as Parameters<typeof produceRequestV3>[0]).encode()).buffer);

async function both(args: Record<string, unknown>): Promise<[Buffer, Buffer]> {
  return frozen(NOW, async () => {
    const mine = produceRequestV3(args as unknown as Parameters<typeof produceRequestV3>[0]);
    const theirs = kafkajsProduceV3(args);
    assert.equal(mine.apiKey, theirs.apiKey);
    assert.equal(mine.apiVersion, theirs.apiVersion);
    assert.equal(mine.expectResponse(), theirs.expectResponse());
    return [(await mine.encode()).buffer, (await theirs.encode()).buffer];
  });
}

const bytes = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const keyOrValue = fc.oneof(bytes, fc.string({ unit: 'grapheme', maxLength: 40 }), fc.constant(null), fc.constant(undefined));
const timestamp = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }),
  // Different digit counts: kafkajs sorts timestamps as strings.
  fc.integer({ min: 0, max: 5000 }),
  fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }).map(String),
);
const headers = fc.option(fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(bytes, fc.string({ maxLength: 20 }), fc.array(fc.oneof(bytes, fc.string({ maxLength: 5 })), { maxLength: 3 })), { maxKeys: 3 }), { nil: undefined });
const message = fc.record({ key: keyOrValue, value: keyOrValue, timestamp, headers }, { requiredKeys: [] });
const compression = fc.constantFrom(CompressionTypes.None, CompressionTypes.GZIP, gzipCompression(1), gzipCompression(6));
const topicData = fc.array(
  fc.record({
    topic: fc.string({ minLength: 1, maxLength: 30 }),
    partitions: fc.array(fc.record({ partition: fc.nat({ max: 50 }), messages: fc.array(message, { minLength: 1, maxLength: 40 }), firstSequence: fc.option(fc.nat(), { nil: undefined }) }, { requiredKeys: ['partition', 'messages'] }), { minLength: 1, maxLength: 3 }),
  }),
  { minLength: 1, maxLength: 3 },
);

test('produce request: the same bytes as kafkajs for any messages, partitions, codecs and producer settings', async () => {
  await fc.assert(
    fc.asyncProperty(
      topicData,
      compression,
      fc.constantFrom(-1, 0, 1),
      fc.nat({ max: 60_000 }),
      fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
      fc.option(fc.bigInt({ min: -1n, max: 2n ** 62n }), { nil: undefined }),
      fc.nat({ max: 32767 }),
      async (data, comp, acks, timeout, transactionalId, producerId, producerEpoch) => {
        const args: Record<string, unknown> = { acks, timeout, compression: comp, topicData: data, producerEpoch };
        if (transactionalId !== undefined) args.transactionalId = transactionalId;
        if (producerId !== undefined) args.producerId = Long.fromValue(producerId);
        const [mine, theirs] = await both(args);
        assert.ok(mine.equals(theirs), `bytes differ (${mine.length} against ${theirs.length})`);
      },
    ),
    { numRuns: 300 },
  );
});

test('produce request: packed 64 KiB records and 2,000 small ones, gzip at level 1 — the same bytes, the scratch reused', async () => {
  const big = Buffer.alloc(64 * 1024 + 7, 0x61);
  for (let i = 0; i < big.length; i += 97) big[i] = i & 0xff;
  const small = Array.from({ length: 2000 }, (_, i) => ({ key: `c${i % 3}`, value: Buffer.from(`line ${i} ${'x'.repeat(i % 120)}`), timestamp: 1_764_000_000_000 + (i % 50) }));
  const args = {
    acks: -1,
    timeout: 30000,
    compression: gzipCompression(1),
    producerId: Long.fromValue(42n),
    producerEpoch: 3,
    topicData: [
      { topic: 'logmeter.logs', partitions: [{ partition: 0, firstSequence: 17, messages: [{ key: 'c1', value: big, timestamp: 1_764_000_000_001 }, { key: 'c1', value: big, timestamp: 1_764_000_000_002 }] }] },
      { topic: 'logmeter.stats', partitions: [{ partition: 1, messages: small.slice(0, 1000) }, { partition: 0, messages: small.slice(1000) }] },
    ],
  };
  const [mine, theirs] = await both(args);
  assert.ok(mine.equals(theirs));
  const held = scratchHeld();
  assert.ok(held >= 2 * big.length, `scratch kept for the next batch (${held} bytes)`);
  const [again] = await both(args);
  assert.ok(again.equals(mine));
  assert.equal(scratchHeld(), held, 'the same scratch served the second request');
});

test('produce request: a packed value given as its frames (PackedFrames) goes out as the same bytes as the packed Buffer', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(fc.uint8Array({ minLength: 0, maxLength: 20_000 }).map((a) => Buffer.from(a)), { minLength: 1, maxLength: 30 }), { minLength: 1, maxLength: 6 }), compression, async (records, comp) => {
      const topicData = (lazy: boolean) => [{ topic: 'logs', partitions: [{ partition: 0, messages: records.map((frames, i) => ({ key: `c${i % 2}`, value: lazy ? new PackedFrames(frames) : packFrames(frames), timestamp: 1_764_000_000_000 + i })) }] }];
      const lazily = await mineOnly({ acks: -1, timeout: 1000, compression: comp, topicData: topicData(true) });
      const [, kafkajs] = await both({ acks: -1, timeout: 1000, compression: comp, topicData: topicData(false) });
      assert.ok(lazily.equals(kafkajs));
      const p = new PackedFrames(records[0]!);
      assert.equal(p.length, packFrames(records[0]!).length);
      assert.deepEqual(unpack(p.toBuffer()), records[0]);
    }),
    { numRuns: 60 },
  );
  // Read as a string (as an older request version's encoder would): refused, not sent as text;
  // kafkajs' own record encoder cannot size it either.
  assert.throws(() => String(new PackedFrames([Buffer.from('x')])), /produce request encoder only/);
  await assert.rejects(both({ acks: -1, timeout: 1000, topicData: [{ topic: 'logs', partitions: [{ partition: 0, messages: [{ key: 'k', value: new PackedFrames([Buffer.from('x')]) }] }] }] }), TypeError);
});

test('produce request: a value kafkajs cannot size fails as in kafkajs (a header value that is a number)', async () => {
  const args = { acks: -1, timeout: 1000, compression: CompressionTypes.None, topicData: [{ topic: 't', partitions: [{ partition: 0, messages: [{ key: 'k', value: 'v', headers: { n: 5 } }] }] }] };
  await assert.rejects(frozen(1, () => kafkajsProduceV3(args).encode()), TypeError);
  await assert.rejects(frozen(1, () => produceRequestV3(args as unknown as Parameters<typeof produceRequestV3>[0]).encode()), TypeError);
});

test('request framing: the same bytes as kafkajs for produce and other requests, any client id', async () => {
  await fc.assert(
    fc.asyncProperty(fc.nat({ max: 2 ** 31 - 1 }), fc.option(fc.string({ maxLength: 40 }), { nil: null }), bytes, fc.nat({ max: 60 }), fc.nat({ max: 12 }), async (correlationId, clientId, payload, apiKey, apiVersion) => {
        const request = { apiKey, apiVersion, encode: async () => ({ buf: payload, buffer: payload }) };
        const mine = (await createRequest({ correlationId, clientId, request })).buffer;
        const theirs = (await kafkajsCreateRequest({ correlationId, clientId, request: { ...request, encode: async () => new KafkajsEncoder().writeBuffer(payload) } })).buffer;
        assert.ok(mine.equals(theirs));
      }),
    { numRuns: 200 },
  );
});

test('kafkajs loads these encoders in place of its own', () => {
  assert.equal(require('kafkajs/src/protocol/requests/produce/v3/request.js'), produceRequestV3);
  assert.equal(require('kafkajs/src/protocol/request.js'), createRequest);
  // v4–v7 are v3 with another version number.
  const v7 = require('kafkajs/src/protocol/requests/produce/v7/request.js') as (a: unknown) => { apiVersion: number; encode: unknown };
  assert.equal(v7({ acks: -1, timeout: 1, topicData: [] }).apiVersion, 7);
});
