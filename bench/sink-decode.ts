/**
 * The log sink's per-row decode costs alone, on the main thread, with no Kafka and no
 * ClickHouse: gunzip of the logs records as the collector's producer sends them, Avro
 * decode + binary columns (`codec.decode`, `LOG_COLUMNAR`: the sink before
 * processors/log-sink/log-frame.ts) and the frame reader (the check on consume, then the
 * columns from the frame's bytes: the sink now).
 *
 *   node --import tsx bench/sink-decode.ts [--rows 200000] [--reps 12] [--access-share 0.3]
 *
 * Method: `--rows` events as bench/lib/events.ts makes them, encoded; their records packed as
 * the producer packs them (lib/bus/pack.ts, 10,000 events per publish) and gzipped in members of
 * ~768 KiB of record values (a send's record batch, chunks.ts). Each step runs `--reps` times,
 * the steps interleaved, and its fastest pass counts (µs per row): on a shared machine the
 * minimum is the least disturbed.
 */
import zlib from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { packRecords } from '../lib/bus/pack.js';
import { ColumnarWriter } from '../lib/clickhouse/columnar.js';
import { LOG_COLUMNAR } from '../processors/log-sink/rows.js';
import { SINK_LOG_COLUMNAR, logFrameDecoder } from '../processors/log-sink/log-frame.js';
import { makeLogEvents } from './lib/events.js';
import { flags, fmt, header, out, table } from './lib/common.js';

const f = flags(['rows', 'reps', 'access-share']);
if (f.bool('help')) {
  out('node --import tsx bench/sink-decode.ts [--rows 200000] [--reps 12] [--access-share 0.3]');
  process.exit(0);
}
const N = f.num('rows', 200_000);
const reps = f.num('reps', 12);
const accessShare = f.num('access-share', 0.3);
header('log sink: decode costs per row (main thread, no Kafka, no ClickHouse)', { rows: N, reps, 'access-share': accessShare });

const codec = await AvroCodec.create(new ManifestSource());
const events = makeLogEvents(N, { accessShare });
const payloads = events.map((e) => codec.encode('logs', e));
const records: Buffer[] = [];
for (let i = 0; i < N; i += 10_000) {
  for (const r of packRecords(events.slice(i, i + 10_000).map((e, k) => ({ key: e.container_id, value: payloads[i + k]! })))) records.push(r.value!);
}
const members: Buffer[] = [];
let run: Buffer[] = [];
let size = 0;
for (const r of records) {
  run.push(r);
  size += r.length;
  if (size > 768 * 1024) {
    members.push(Buffer.concat(run));
    run = [];
    size = 0;
  }
}
if (run.length > 0) members.push(Buffer.concat(run));
const gz = members.map((m) => zlib.gzipSync(m));
const rawBytes = members.reduce((s, m) => s + m.length, 0);
const gzBytes = gz.reduce((s, m) => s + m.length, 0);

const BATCH = 50_000;
const decodeFrames = logFrameDecoder(codec);
const steps: Array<[string, () => void]> = [
  ['gunzip of the packed records (zlib.gunzipSync)', () => void gz.forEach((m) => zlib.gunzipSync(m))],
  ['Avro decode + binary columns (codec.decode, LOG_COLUMNAR: before)', () => columns((p, w) => LOG_COLUMNAR.write(codec.decode('logs', p), w))],
  ['frame reader (log-frame.ts: check, then columns from the bytes: now)', () => columns((p, w) => SINK_LOG_COLUMNAR.write(decodeFrames('logs', p), w))],
];
function columns(write: (p: Buffer, w: ColumnarWriter) => void): void {
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (let i = 0; i < N; i += BATCH) {
    w.reset();
    for (let k = i; k < Math.min(N, i + BATCH); k++) write(payloads[k]!, w);
  }
}
const best = steps.map(() => Infinity);
for (let r = 0; r < reps; r++) {
  steps.forEach(([, fn], i) => {
    const t = performance.now();
    fn();
    best[i] = Math.min(best[i]!, ((performance.now() - t) * 1000) / N);
  });
}
out(`${fmt(records.length)} records (${(N / records.length).toFixed(0)} events each) in ${gz.length} gzip members: ${(rawBytes / N).toFixed(0)} B per event raw, ${(gzBytes / N).toFixed(0)} B gzip (${(rawBytes / gzBytes).toFixed(2)} ×)`);
table(['step', 'µs / row (min)', 'rows/s on one core'], steps.map(([what], i) => [what, fmt(best[i]!, 3), fmt(1e6 / best[i]!)]));
out(`frame reader against decode + columns: ${(best[1]! / best[2]!).toFixed(2)} × faster`);
