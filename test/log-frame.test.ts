// The collector frames its log events without avsc's generic writer (schemas/log-frame.ts):
// the bytes must be exactly what `codec.encode('logs', …)` gives, with the event id of
// lib/event-id.ts, for any container, labels and line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type avro from 'avsc';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource, type SchemaSource } from '../schemas/registry.js';
import { LogFrameWriter, type LogFrameConstants, type LogFrameLine } from '../schemas/log-frame.js';
import { eventId } from '../lib/event-id.js';
import { LogmeterError } from '../lib/errors.js';
import type { LogLine } from '../schemas/events.js';

const codec = await AvroCodec.create(new ManifestSource());

/** What the collector sent before: the event built field by field, encoded by avsc. */
function expected(w: LogFrameWriter, c: LogFrameConstants, line: LogFrameLine, via = codec): Buffer {
  return via.encode('logs', w.event(line, eventId(c.containerId, line.stream, line.ts, line.seq)));
}

function outcome(f: () => Buffer): Buffer | string {
  try {
    return f();
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
}

const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 70 }));
const constants: fc.Arbitrary<LogFrameConstants> = fc.record({
  tenant: text,
  app: text,
  node: text,
  containerId: fc.oneof(fc.stringMatching(/^[0-9a-f]{64}$/), text),
  containerName: text,
  tty: fc.boolean(),
  logFormat: fc.option(text, { nil: null }),
});
const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
const line: fc.Arbitrary<LogFrameLine> = fc.record({
  stream: fc.constantFrom('stdout' as const, 'stderr' as const),
  ts: fc.oneof(text, fc.constant('2026-12-05T05:34:48.666123456Z')),
  tsMs: fc.oneof(fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), fc.maxSafeInteger(), fc.maxSafeNat().map((n) => -n), fc.constant(1_796_448_888_666)),
  tsNanos: fc.oneof(fc.integer({ min: 0, max: 999_999 }), int32),
  seq: fc.oneof(fc.nat(300), int32),
  bytes: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 8_000, maxLength: 20_000 })).map((a) => Buffer.from(a)),
  originalLength: fc.oneof(fc.nat(20_000), fc.maxSafeNat(), fc.maxSafeInteger()),
  truncated: fc.boolean(),
  invalidUtf8: fc.boolean(),
});

test('log frames: byte-identical to avsc for any container, labels and line (property)', () => {
  fc.assert(
    fc.property(constants, fc.array(line, { minLength: 1, maxLength: 8 }), (c, lines) => {
      const w = new LogFrameWriter(codec, c);
      // Either the same bytes, or the same refusal (a value out of avsc's ranges).
      for (const l of lines) assert.deepEqual(outcome(() => w.frame(l)), outcome(() => expected(w, c, l)));
    }),
    { numRuns: 1500 },
  );
});

test('log frames: frames already handed on stay intact while later ones, of two writers, are cut from the same slabs', () => {
  const c: LogFrameConstants = { tenant: 'acme', app: 'shop', node: 'n1', containerId: 'c'.repeat(64), containerName: 'shop-1', tty: false, logFormat: 'json' };
  const c2: LogFrameConstants = { ...c, tenant: 'other', containerId: 'd'.repeat(64), containerName: 'db-1', logFormat: null };
  const w = new LogFrameWriter(codec, c);
  const w2 = new LogFrameWriter(codec, c2);
  const lines: LogFrameLine[] = [];
  for (let i = 0; i < 3000; i++) {
    const bytes = Buffer.alloc(40 + (i % 200), 97 + (i % 26));
    lines.push({ stream: i % 3 === 0 ? 'stderr' : 'stdout', ts: `2026-12-05T05:34:${String(i % 60).padStart(2, '0')}.000000001Z`, tsMs: 1_796_448_888_000 + i, tsNanos: i, seq: i % 7, bytes, originalLength: bytes.length, truncated: false, invalidUtf8: false });
  }
  // Two containers' frames interleaved: 6000 frames of ~200-400 B, several 64 KiB slabs shared by both writers.
  const frames = lines.map((l) => [w.frame(l), w2.frame(l)] as const);
  frames.forEach(([f, f2], i) => {
    assert.deepEqual(f, expected(w, c, lines[i]!), `frame ${i}`);
    assert.deepEqual(f2, expected(w2, c2, lines[i]!), `frame ${i} of the second writer`);
  });
  const back = codec.decode('logs', frames[0]![0]);
  assert.equal(back.event_id, eventId(c.containerId, 'stderr', lines[0]!.ts, 0));
});

test('log frames: the event id is the stored vector of lib/event-id.ts', () => {
  const c: LogFrameConstants = { tenant: 't', app: 'a', node: 'n', containerId: 'c0ffee', containerName: 'x', tty: true, logFormat: null };
  const frame = new LogFrameWriter(codec, c).frame({ stream: 'stdout', ts: '1733350000123456789', tsMs: 1_733_350_000_123, tsNanos: 456_789, seq: 42, bytes: Buffer.from('hello'), originalLength: 5, truncated: false, invalidUtf8: false });
  const ev = codec.decode('logs', frame);
  assert.equal(ev.event_id, 'd97a721079d77ceafa4548e9f55d493e');
  assert.equal(ev.seq, 42);
  assert.equal(ev.ts_nanos, 456_789);
  assert.deepEqual(Buffer.from(ev.line), Buffer.from('hello'));
});

test('log frames: values avsc refuses are refused the same way (not written wrongly)', () => {
  const c: LogFrameConstants = { tenant: 't', app: 'a', node: 'n', containerId: 'c', containerName: 'x', tty: false, logFormat: null };
  const w = new LogFrameWriter(codec, c);
  const ok: LogFrameLine = { stream: 'stdout', ts: 'ts', tsMs: 1, tsNanos: 0, seq: 0, bytes: Buffer.from('x'), originalLength: 1, truncated: false, invalidUtf8: false };
  const refused = (l: LogFrameLine, field: string) =>
    assert.throws(
      () => w.frame(l),
      (e: unknown) => e instanceof LogmeterError && e.code === 'encode_failed' && e.message.includes(`invalid ${field} = `),
    );
  refused({ ...ok, seq: 2 ** 31 }, 'seq');
  refused({ ...ok, tsNanos: 1.5 }, 'ts_nanos');
  refused({ ...ok, tsMs: 2 ** 53 }, 'ts');
  refused({ ...ok, originalLength: Number.NaN }, 'original_length');
});

test('log frames: a logs schema of another shape is written by avsc, byte for byte', async () => {
  const manifest = new ManifestSource();
  // A later version with one more field: the writer does not know this layout.
  const source: SchemaSource = {
    kind: 'manifest',
    writerSchema: async (name) => {
      const s = await manifest.writerSchema(name);
      if (name !== 'logs') return s;
      const schema = s.schema as avro.schema.RecordType;
      return { ...s, schema: { ...schema, fields: [...schema.fields, { name: 'extra', type: 'int', default: 0 }] } };
    },
    schemaById: (id) => manifest.schemaById(id),
  };
  const other = await AvroCodec.create(source);
  const c: LogFrameConstants = { tenant: 'acme', app: 'shop', node: 'n1', containerId: 'c0ffee', containerName: 'shop-1', tty: false, logFormat: 'json' };
  const w = new LogFrameWriter(other, c);
  const l: LogFrameLine = { stream: 'stderr', ts: '2026-12-05T05:34:48.666123456Z', tsMs: 1_796_448_888_666, tsNanos: 123_456, seq: 3, bytes: Buffer.from('GET / 200'), originalLength: 9, truncated: false, invalidUtf8: false };
  const frame = w.frame(l);
  assert.deepEqual(frame, expected(w, c, l, other));
  // The extra field (its default, 0) is written: the layout of the known schema would have left it out.
  assert.equal(frame.length, new LogFrameWriter(codec, c).frame(l).length + 1);
  assert.equal((other.decode('logs', frame) as LogLine & { extra: number }).extra, 0);
});

test('log frames: a line carrying its timestamp as bytes gets the event id of its string, any bytes (property)', () => {
  fc.assert(
    fc.property(constants, line, fc.uint8Array({ maxLength: 60 }), fc.nat(20), fc.nat(20), (c, l, ts, before, after) => {
      // The timestamp's bytes inside a bigger buffer, as in a chunk; its string is their latin1.
      const src = Buffer.concat([Buffer.alloc(before, 0x20), Buffer.from(ts), Buffer.alloc(after, 0x41)]);
      const withBytes: LogFrameLine = { ...l, ts: Buffer.from(ts).toString('latin1'), tsSource: src, tsStart: before, tsEnd: before + ts.length };
      const w = new LogFrameWriter(codec, c);
      assert.deepEqual(outcome(() => w.frame(withBytes)), outcome(() => expected(w, c, withBytes)));
    }),
    { numRuns: 3000 },
  );
});
