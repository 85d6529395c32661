/**
 * Avro codec speed per event type: `AvroCodec.encode` / `decode` (Confluent framing,
 * checked-in manifest ids) of the sample events, next to `JSON.stringify` / `JSON.parse`
 * of the same objects in the same run.
 *
 *   node --import tsx bench/codec.ts [--rounds 3] [--seconds 0.5 (per measurement)]
 *
 * Each event type gets 64 variants (ids, timestamps and strings changed) so the JIT does
 * not see a single object. Every result is read (summed lengths / fields) so no work is
 * dropped as dead code. One core; the figure is records per second.
 */
import assert from 'node:assert/strict';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { TOPIC_NAMES, type EventMap, type TopicName } from '../schemas/events.js';
import { SAMPLE_EVENTS } from '../test/helpers/fixtures.js';
import { flags, fmt, header, median, out, ratio, table } from './lib/common.js';

const f = flags(['rounds', 'seconds']);
if (f.bool('help')) {
  out('node --import tsx bench/codec.ts [--rounds 3] [--seconds 0.5]');
  process.exit(0);
}
const rounds = f.num('rounds', 3);
const seconds = f.num('seconds', 0.5);
const VARIANTS = 64;

header('Avro codec: encode / decode per event type', { rounds, 'seconds per measurement': seconds, variants: VARIANTS, schemas: 'schemas/manifest.json (ManifestSource)' });

const codec = await AvroCodec.create(new ManifestSource());

function variants<T extends TopicName>(topic: T): EventMap[T][] {
  const base = SAMPLE_EVENTS[topic];
  return Array.from({ length: VARIANTS }, (_, i) => ({ ...base, event_id: `${base.event_id}-${i}`, ts: base.ts + i, tenant: base.tenant ? `${base.tenant}${i % 7}` : base.tenant }));
}

/** Runs `fn` over the inputs for `seconds`; returns calls per second. */
function rate(fn: (i: number) => number, budgetSeconds: number): number {
  for (let i = 0; i < 20_000; i++) fn(i % VARIANTS);
  let n = 0;
  let sink = 0;
  const budget = BigInt(Math.round(budgetSeconds * 1e9));
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < VARIANTS; i++) sink += fn(i);
    n += VARIANTS;
    elapsed = process.hrtime.bigint() - start;
  }
  if (sink === 0) throw new Error('nothing produced');
  return n / (Number(elapsed) / 1e9);
}

interface Row {
  topic: TopicName;
  avroBytes: number;
  jsonBytes: number;
  enc: number[];
  dec: number[];
  jsonEnc: number[];
  jsonDec: number[];
}
const results: Row[] = [];
for (const topic of TOPIC_NAMES) {
  const events = variants(topic);
  const encoded = events.map((e) => codec.encode(topic, e));
  const json = events.map((e) => JSON.stringify(e));
  // Round trip first: a benchmark of a codec that does not round-trip measures nothing.
  for (let i = 0; i < VARIANTS; i++) {
    const back = codec.decode(topic, encoded[i]!);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(back)), JSON.parse(json[i]!), `${topic}: Avro round trip changed variant ${i}`);
  }
  const row: Row = {
    topic,
    avroBytes: encoded.reduce((s, b) => s + b.length, 0) / VARIANTS,
    jsonBytes: json.reduce((s, j) => s + Buffer.byteLength(j), 0) / VARIANTS,
    enc: [],
    dec: [],
    jsonEnc: [],
    jsonDec: [],
  };
  for (let r = 0; r < rounds; r++) {
    row.enc.push(rate((i) => codec.encode(topic, events[i]!).length, seconds));
    row.jsonEnc.push(rate((i) => Buffer.from(JSON.stringify(events[i]!)).length, seconds));
    row.dec.push(rate((i) => codec.decode(topic, encoded[i]!).ts, seconds));
    row.jsonDec.push(rate((i) => (JSON.parse(json[i]!) as { ts: number }).ts, seconds));
  }
  results.push(row);
  process.stderr.write(`  ${topic}: encode ${fmt(median(row.enc))}/s, decode ${fmt(median(row.dec))}/s\n`);
}

out(`median of ${rounds} round(s) of ${seconds} s each; one core. JSON encode includes Buffer.from (the bytes a producer would send), JSON decode parses the string.`);
table(
  ['event', 'Avro B', 'JSON B', 'Avro encode/s', 'JSON.stringify/s', 'encode ratio', 'Avro decode/s', 'JSON.parse/s', 'decode ratio'],
  results.map((r) => [
    r.topic,
    fmt(r.avroBytes),
    fmt(r.jsonBytes),
    fmt(median(r.enc)),
    fmt(median(r.jsonEnc)),
    ratio(median(r.enc), median(r.jsonEnc)),
    fmt(median(r.dec)),
    fmt(median(r.jsonDec)),
    ratio(median(r.dec), median(r.jsonDec)),
  ]),
);
out('no DESIGN.md target; the codec sits on the collector and every processor path (see bench/collector.ts for what share of a line it costs).');
