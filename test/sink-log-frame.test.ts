/**
 * The sink's precompiled reader of the Avro log schema (processors/log-sink/log-frame.ts):
 * for every frame it gives exactly the columns that `codec.decode` then
 * `LOG_COLUMNAR.write` give (property test over arbitrary events, and over frames broken at
 * random); a frame it does not read goes through the codec, so an undecodable one is
 * refused with the codec's own DecodeError (code and reason) and dead-lettered by the bus.
 * Pure: no Kafka, no ClickHouse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AvroCodec, DecodeError } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { ColumnarWriter } from '../lib/clickhouse/columnar.js';
import { LOG_COLUMNAR } from '../processors/log-sink/rows.js';
import { LOG_FRAME_FIELDS, SINK_LOG_COLUMNAR, checkLogFrame, fieldSignature, frameOf, logFrameDecoder, type SinkLog } from '../processors/log-sink/log-frame.js';
import { packFrames, unpack } from '../lib/bus/pack.js';
import { ACCESS_LOG_FORMATS } from '../processors/access-log/parse.js';
import { HOSTILE, hostileEvents } from './helpers/hostile-lines.js';
import type { LogLine } from '../schemas/events.js';

const codec = await AvroCodec.create(new ManifestSource());
const decode = logFrameDecoder(codec);

const NGINX = '203.0.113.9 - - [26/Nov/2026:08:01:57 +0000] "GET /products/7?color=red HTTP/1.1" 200 1234 "https://shop.acme.test/" "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0" 0.120';

/** The columns of `rows` written by `write`, as bytes (every buffer of every column). */
function columns<R>(rows: readonly R[], write: (r: R, w: ColumnarWriter) => void): string[] {
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (const r of rows) write(r, w);
  return w.arrow().map((c) => `${c.name} ${c.format} ${c.length} ${c.buffers.map((b) => (b ? b.toString('hex') : '-')).join('/')}`);
}

/** What the sink inserted before: codec.decode then LOG_COLUMNAR. */
const viaCodec = (payloads: readonly Buffer[]) => columns(payloads, (p, w) => LOG_COLUMNAR.write(codec.decode('logs', p), w));
/** The sink now: the logs subscription's decoder, then SINK_LOG_COLUMNAR. */
const viaFrames = (payloads: readonly Buffer[]) => columns(payloads, (p, w) => SINK_LOG_COLUMNAR.write(decode('logs', p), w));

const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', 'acme', 'tenant0', 'Grüße 日本語 😀'));
const logLine: fc.Arbitrary<LogLine> = fc.record({
  event_id: text,
  tenant: text,
  app: text,
  node: text,
  container_id: text,
  container_name: text,
  ts: fc.oneof(fc.integer({ min: -(2 ** 45), max: 2 ** 45 }), fc.constantFrom(2 ** 53 - 2, -(2 ** 53 - 2), 0, Date.parse('2026-12-05T00:00:00Z'))),
  ts_nanos: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  seq: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  stream: fc.constantFrom('stdout' as const, 'stderr' as const),
  tty: fc.boolean(),
  line: fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.constantFrom(...HOSTILE.map(([, l]) => l).filter((l) => l.length < 4096), Buffer.from(NGINX)),
  ),
  original_length: fc.oneof(fc.nat(), fc.constantFrom(2 ** 53 - 2, -1, -(2 ** 53 - 2))),
  truncated: fc.boolean(),
  invalid_utf8: fc.boolean(),
  log_format: fc.oneof(fc.constant(null), fc.constantFrom(...ACCESS_LOG_FORMATS, 'json', ''), text),
});

test('the reader is compiled for the logs schema this process reads (its fast path is on)', () => {
  assert.equal(fieldSignature(codec.readerType('logs') as unknown as Parameters<typeof fieldSignature>[0]), LOG_FRAME_FIELDS);
  const [e] = hostileEvents('x');
  const row = decode('logs', codec.encode('logs', e!));
  assert.ok(row.memory !== undefined, 'a frame of the current schema is kept as a frame');
  assert.equal(row.tenant, 'acme');
});

test('property: every event gives the same columns through the frame reader as through codec.decode + LOG_COLUMNAR, and the same tenant', () => {
  fc.assert(
    fc.property(fc.array(logLine, { minLength: 1, maxLength: 40 }), (events) => {
      const payloads = events.map((e) => codec.encode('logs', e));
      const rows = payloads.map((p) => decode('logs', p));
      rows.forEach((r, i) => {
        assert.ok(r.memory !== undefined, 'read by the frame reader (valid UTF-8 strings, safe longs)');
        assert.equal(r.tenant, codec.decode('logs', payloads[i]!).tenant);
      });
      assert.deepEqual(viaFrames(payloads), viaCodec(payloads));
    }),
    { numRuns: 400 },
  );
});

test('frames of one packed record (views at their offsets in its memory); tenants and log formats in a row alike but for one byte, or of another length, each read as its own (the reader keeps the last one\'s string)', () => {
  const tenants = ['acme', 'acme', 'acmf', 'acm', 'acme', 'Grüße', 'Grüße', 'Grüßf', '', 'acme'];
  const formats = ['nginx-combined', 'nginx-combined', 'nginx-combinee', null, 'nginx-combined', ''];
  const events: LogLine[] = tenants.flatMap((tenant, i) => formats.map((log_format, j) => ({ ...hostileEvents('t')[0]!, event_id: `${i}-${j}`, tenant, line: Buffer.from(NGINX), log_format })));
  // As the bus hands them over: views into one packed record's memory, each at its own offset.
  const payloads = unpack(packFrames(events.map((e) => codec.encode('logs', e))));
  const rows = payloads.map((p) => decode('logs', p));
  assert.deepEqual(rows.map((r) => frameOf(r)), payloads.map((p) => Buffer.from(p)), 'each row\'s place is its frame\'s bytes');
  assert.deepEqual(rows.map((r) => r.tenant), events.map((e) => e.tenant));
  assert.ok(rows.every((r) => r.memory !== undefined));
  assert.deepEqual(viaFrames(payloads), viaCodec(payloads));
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (const r of rows) SINK_LOG_COLUMNAR.write(r, w);
  assert.deepEqual(
    events.map((_, i) => w.bytesAt(16, i).toString()),
    events.map((e) => (e.log_format === 'nginx-combined' ? 'access' : 'debug')),
  );
});

test('the hostile lines (every byte value, invalid UTF-8, a 512 KiB line) and access lines classify and write the same', () => {
  const events: LogLine[] = [...hostileEvents('h'), ...hostileEvents('n').map((e) => ({ ...e, log_format: 'nginx-combined' }))];
  events.push({ ...events[0]!, event_id: 'access', line: Buffer.from(NGINX), log_format: 'nginx-combined' });
  const payloads = events.map((e) => codec.encode('logs', e));
  assert.deepEqual(viaFrames(payloads), viaCodec(payloads));
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (const p of payloads) SINK_LOG_COLUMNAR.write(decode('logs', p), w);
  assert.equal(w.bytesAt(16, events.length - 1).toString(), 'access');
  assert.equal(w.bytesAt(16, 0).toString(), 'debug');
  assert.equal(w.bytesAt(11, HOSTILE.length - 1).length, 512 * 1024);
});

/** The codec's verdict on a payload: its columns, or its DecodeError's code and message. */
function outcome(p: Buffer, via: (ps: Buffer[]) => string[]): string[] | { code: string; message: string } {
  try {
    return via([p]);
  } catch (err) {
    assert.ok(err instanceof DecodeError, `a DecodeError, not ${String(err)}`);
    return { code: err.reasonCode, message: err.message };
  }
}

test('property: a frame broken at random (bytes changed, cut, appended) is read the same as the codec reads it, or refused with the same DecodeError', () => {
  let refused = 0;
  let viaCodecPath = 0;
  fc.assert(
    fc.property(
      logLine,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      fc.oneof(fc.constant(0), fc.nat({ max: 40 })),
      fc.uint8Array({ maxLength: 3 }),
      (e, edits, cut, tail) => {
        const p = Buffer.from(codec.encode('logs', e));
        for (const [at, v] of edits) p[5 + (at % (p.length - 5))] = v;
        const broken = Buffer.concat([p.subarray(0, Math.max(5, p.length - cut)), tail]);
        const before = outcome(broken, viaCodec);
        assert.deepEqual(outcome(broken, viaFrames), before);
        if (!Array.isArray(before)) refused++;
        if (checkLogFrame(broken) === undefined) viaCodecPath++;
      },
    ),
    { numRuns: 1500 },
  );
  assert.ok(refused > 100, `broken frames were refused (${refused})`);
  assert.ok(viaCodecPath > refused, 'the reader left every refused frame and some readable ones to the codec');
});

test('frames the reader leaves to the codec: the codec reads them or refuses them with its reason', () => {
  const [e] = hostileEvents('c');
  const good = codec.encode('logs', { ...e!, tenant: 'acme' });
  const cases: Array<[string, Buffer | null, string]> = [
    ['a tombstone', null, 'empty_payload'],
    ['shorter than the header', Buffer.from([0, 0, 0]), 'too_short'],
    ['not Confluent framing', Buffer.from([0x4c, 0x4d, 0x50, 0x4b, 0x01, 0x00]), 'bad_magic_byte'],
    ['an unregistered schema id', Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xfe]), good.subarray(5)]), 'unknown_schema_id'],
    ['a cut body', good.subarray(0, good.length - 3), 'avro_decode'],
    ['a byte after the body', Buffer.concat([good, Buffer.from([0])]), 'avro_decode'],
  ];
  for (const [what, payload, code] of cases) {
    let codecError: DecodeError | undefined;
    try {
      codec.decode('logs', payload);
    } catch (err) {
      codecError = err as DecodeError;
    }
    assert.equal(codecError?.reasonCode, code, `${what}: the codec's code`);
    assert.throws(
      () => decode('logs', payload),
      (err: unknown) => err instanceof DecodeError && err.reasonCode === code && err.message === codecError.message,
      what,
    );
  }
  // A string field that is not UTF-8 (the collector never writes one): the codec's reading of it.
  const bad = Buffer.from(good);
  const tenantAt = bad.indexOf(Buffer.from('acme'));
  bad[tenantAt] = 0xff;
  const row: SinkLog = decode('logs', bad);
  assert.equal(row.memory, undefined, 'left to the codec');
  assert.equal(row.tenant, '\ufffdcme');
  assert.deepEqual(viaFrames([bad]), viaCodec([bad]));
});
