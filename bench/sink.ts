/**
 * Log sink throughput: rows/s from the logs topic into embedded ClickHouse (chDB in this
 * process) through the real sink (`startLogSink`), against raw inserts of the same rows
 * in the same run.
 *
 *   node --import tsx bench/sink.ts [--rounds 3] [--rows 200000] [--batch 50000 (sinkBatchRows)]
 *        [--batch-ms 500 (sinkBatchMs)] [--access-share 0.3] [--only sink,consume-only,…] [--unpacked] [--no-steps]
 *
 * Method: the logs topic of a fresh namespace is filled first with M log events as the
 * collector publishes them (`EventBus.publishRaw` with `pack`, 10,000 per call: each
 * container's events packed into shared records, lib/bus/pack.ts; `--unpacked`: one record
 * per event). `--only` runs the methods named (below) and no others. Each round then gets a new database (migrated)
 * and a new consumer group, so the sink reads all M events from offset 0:
 *   - sink: `startLogSink` as it runs (embedded: binary columns, lib/clickhouse/columnar.ts,
 *     and commits that trail the insert, `deferCommit`), from the `startLogSink` call
 *     (consumer group joins included) until `SELECT count() FROM logs FINAL` is M; also
 *     the rate from the first completed insert on (the steady rate, without the join);
 *   - the same logs path alone (one consumer; startLogSink also starts the other four
 *     topics' consumers), same consumer settings and batcher (FairBatcher, as startLogSink
 *     builds it), each lever on or off: binary columns (frames read straight into them,
 *     processors/log-sink/log-frame.ts, as startLogSink does) with trailing commits
 *     (`sink-cols-defer`, what startLogSink does for logs), awaiting the insert (`sink-cols-sync`); TabSeparated with trailing commits (`sink-tsv-defer`);
 *     TabSeparated awaiting the insert (`sink-tsv-sync`: the sink before this change);
 *   - baseline, raw inserts of the same events, batches of the sink's size, one after the
 *     other, encoding included, until the FINAL count is M: binary columns
 *     (`ch.insertEncoded` columns), TabSeparated (`ch.insertEncoded` bytes), and RowBinary
 *     through chDB's native raw insert (bench/lib/rowbinary.ts; not a product path:
 *     chDB cuts inline binary data at some byte sequences — reported when it fails);
 *   - baseline, engine only: rows of the same shape generated inside ClickHouse
 *     (`INSERT … SELECT … FROM numbers()`, same batch size): the MergeTree write alone;
 *   - baseline, consume only: a consumer group on the same topic through the same bus
 *     (fetch, Avro decode, offset commit) with a handler that only counts — the Kafka
 *     side's ceiling.
 * The events (and the timed steps' rows and frames) are released before the rounds unless a raw
 * insert reads them, so the rounds run in a heap like the sink's own process (held, a million
 * events made GC the larger part of the sink's measured CPU: BENCHMARKS.md "Log sink: CPU per row").
 * CPU seconds are this process's: they include chDB's engine threads (embedded mode).
 * Before the rounds, the main thread's cost per row of each step is timed on its own
 * (Avro decode, `logRow`, JSON serialisation, TabSeparated encoding).
 */
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Counter } from 'prom-client';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse, withDatabase, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { LOG_COLUMNAR, LOG_COLUMNS, LOG_TSV, logRow } from '../processors/log-sink/rows.js';
import { FairBatcher } from '../processors/log-sink/fair-batcher.js';
import { SINK_LOG_COLUMNAR, logFrameDecoder, type SinkLog } from '../processors/log-sink/log-frame.js';
import { TsvWriter, type RowEncoder } from '../lib/clickhouse/tsv.js';
import { ColumnarWriter, type ColumnarEncoder } from '../lib/clickhouse/columnar.js';
import type { LogLine } from '../schemas/events.js';
import { RowBinaryWriter, rowBinaryInserter } from './lib/rowbinary.js';
import { benchNamespace, cpuWindow, flags, fmt, header, median, onInterrupt, out, ratio, table, until } from './lib/common.js';
import { makeLogEvents } from './lib/events.js';

const f = flags(['rounds', 'rows', 'batch', 'batch-ms', 'access-share', 'only'], ['unpacked', 'no-steps']);
if (f.bool('help')) {
  out('node --import tsx bench/sink.ts [--rounds 3] [--rows 200000] [--batch 50000] [--batch-ms 500] [--access-share 0.3] [--only sink,consume-only,…] [--unpacked] [--no-steps]');
  process.exit(0);
}
const rounds = f.num('rounds', 3);
const M = f.num('rows', 200_000);
const accessShare = f.num('access-share', 0.3);
const unpacked = f.bool('unpacked');

type Method = 'sink' | 'sink-cols-defer' | 'sink-cols-sync' | 'sink-tsv-defer' | 'sink-tsv-sync' | 'raw-cols' | 'raw-tsv' | 'raw-rowbinary' | 'engine-only' | 'consume-only';
const METHODS: readonly Method[] = ['sink', 'sink-cols-defer', 'sink-cols-sync', 'sink-tsv-defer', 'sink-tsv-sync', 'raw-cols', 'raw-tsv', 'raw-rowbinary', 'engine-only', 'consume-only'];
const only = f.str('only', '');
const methods = only === '' ? METHODS : METHODS.filter((m) => only.split(',').includes(m));
if (methods.length === 0) throw new Error(`--only ${only}: none of ${METHODS.join(', ')}`);

const ns = benchNamespace('sink');
const config = {
  ...ns.config,
  processors: { ...ns.config.processors, sinkBatchRows: f.num('batch', ns.config.processors.sinkBatchRows), sinkBatchMs: f.num('batch-ms', ns.config.processors.sinkBatchMs) },
};
const batchRows = config.processors.sinkBatchRows;
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(config, codec, ns.logger);
const base = openClickHouse({ database: ns.database, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const cleanup = async () => {
  await bus.close();
  await base.close();
  ns.cleanup();
};
onInterrupt(cleanup);

header('log sink: logs topic → ClickHouse (embedded chDB)', { rounds, rows: M, sinkBatchRows: batchRows, sinkBatchMs: config.processors.sinkBatchMs, partitions: config.kafka.partitions, 'access-share': accessShare, clickhouse: 'embedded chDB (in this process)' });

const inDatabase = (db: string): ClickHouse => withDatabase(base, db);
async function finalCount(ch: ClickHouse): Promise<number> {
  const rs = await ch.client.query({ query: `SELECT count() AS n FROM ${ch.table('logs')} FINAL`, format: 'JSONEachRow' });
  return Number((await rs.json<{ n: number | string }>())[0]?.n ?? 0);
}

// Fill the topic.
await bus.ensureTopics();
// Released before the rounds (with the rows and frames of the timed steps) unless a raw insert
// reads them (see `methods`), so the rounds run in a heap like the sink's own process: a
// million events and their rows held here made every full GC of a round mark ~1 GB, the
// larger part of the CPU measured for the sink (BENCHMARKS.md, "Log sink: CPU per row").
let events = makeLogEvents(M, { accessShare });
const tFill = performance.now();
// As the collector publishes the logs topic (ingest/collector.ts, `packLogs` on by default):
// framed events keyed by container, each container's lines packed into shared records
// (lib/bus/pack.ts); `--unpacked` sends one record per event (the collector with packLogs off).
const logsTopic = bus.topic('logs');
for (let i = 0; i < M; i += 10_000) {
  const raw = events.slice(i, i + 10_000).map((e) => ({ key: e.container_id, value: codec.encode('logs', e) }));
  await bus.publishRaw(logsTopic, raw, { pack: !unpacked });
}
const fillSeconds = (performance.now() - tFill) / 1000;
process.stderr.write(`topic filled: ${fmt(M)} events in ${fillSeconds.toFixed(1)} s (${fmt(M / fillSeconds)} events/s through EventBus.publishRaw, ${unpacked ? 'one record per event' : 'packed records'})\n`);
const noSteps = f.bool('no-steps');
let rows = noSteps ? [] : events.map(logRow);
const avgLine = events.reduce((s, e) => s + e.line.length, 0) / events.length;

// The main thread's cost per row of each step, alone (µs per row, best of 3 passes).
function perRow(fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    fn();
    best = Math.min(best, performance.now() - t);
  }
  return (best * 1000) / M;
}
let payloads = noSteps ? [] : events.map((e) => codec.encode('logs', e));
// `--no-steps`: straight to the rounds (e.g. under --cpu-prof, so the profile is the rounds').
const steps: Array<[string, number]> = noSteps ? [] : [
  ['Avro decode (codec.decode)', perRow(() => void payloads.forEach((p) => codec.decode('logs', p)))],
  ['logRow() objects (incl. access-line parse for kind)', perRow(() => void events.map(logRow))],
  ['JSON serialisation of the rows (JSON.stringify)', perRow(() => void rows.forEach((r) => JSON.stringify(r)))],
  [`TabSeparated encoding (LOG_TSV into a reused buffer, incl. kind), ${fmt(batchRows)} per buffer`, perRow(() => void encodeBatches())],
  [`binary columns (LOG_COLUMNAR into reused columns, incl. kind), ${fmt(batchRows)} per batch`, perRow(() => void encodeColumns())],
  [`RowBinary (bench/lib/rowbinary.ts, incl. kind), ${fmt(batchRows)} per buffer`, perRow(() => void encodeRowBinary())],
  ['Avro decode + binary columns (codec.decode, LOG_COLUMNAR: the sink before log-frame.ts)', perRow(() => void encodeDecoded())],
  ['frame reader instead (log-frame.ts: the check on consume, then columns from the bytes)', perRow(() => void encodeFrames())],
];
function encodeDecoded(): void {
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (let i = 0; i < payloads.length; i += batchRows) {
    w.reset();
    for (const p of payloads.slice(i, i + batchRows)) LOG_COLUMNAR.write(codec.decode('logs', p), w);
  }
}
function encodeFrames(): void {
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  const decode = logFrameDecoder(codec);
  for (let i = 0; i < payloads.length; i += batchRows) {
    w.reset();
    for (const p of payloads.slice(i, i + batchRows)) SINK_LOG_COLUMNAR.write(decode('logs', p), w);
  }
}
function encodeColumns(): void {
  const w = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (let i = 0; i < events.length; i += batchRows) {
    w.reset();
    for (const e of events.slice(i, i + batchRows)) LOG_COLUMNAR.write(e, w);
  }
}
function encodeRowBinary(): void {
  const w = new RowBinaryWriter();
  for (let i = 0; i < events.length; i += batchRows) {
    w.reset();
    for (const e of events.slice(i, i + batchRows)) w.write(e);
  }
}
function encodeBatches(): Buffer[] {
  const out: Buffer[] = [];
  const w = new TsvWriter();
  for (let i = 0; i < events.length; i += batchRows) {
    w.reset();
    for (const e of events.slice(i, i + batchRows)) LOG_TSV.write(e, w);
    out.push(Buffer.from(w.bytes()));
  }
  return out;
}

// The steps are timed: in the rounds only the raw inserts read the events.
rows = [];
payloads = [];
if (!methods.some((m) => m.startsWith('raw-'))) events = [];

interface Sample {
  seconds: number;
  steadySeconds?: number;
  steadyRows?: number;
  cpu: number;
}
const samples = new Map<Method, Sample[]>(METHODS.map((m) => [m, []]));
/** Why a method failed in a round (the RowBinary baseline may: see bench/lib/rowbinary.ts). */
const failures: string[] = [];

async function runSink(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_sink${round}`);
  await migrate(ch, ns.logger);
  const registry = createRegistry(false);
  const w = cpuWindow();
  const t0 = performance.now();
  const sub = await startLogSink({ config: logSinkConfig(config), bus, ch, logger: ns.logger, registry, group: `bench-sink-${round}` });
  const written = registry.getSingleMetric('logmeter_sink_rows_written_total') as Counter<'table'>;
  const logsWritten = async () => (await written.get()).values.find((v) => v.labels.table === 'logs')?.value ?? 0;
  let tFirst = 0;
  let firstRows = 0;
  try {
    await until(
      'sink wrote every row',
      async () => {
        const n = await logsWritten();
        if (n > 0 && tFirst === 0) {
          tFirst = performance.now();
          firstRows = n;
        }
        return n >= M;
      },
      300_000,
      20,
    );
    await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
    const t1 = performance.now();
    return { seconds: (t1 - t0) / 1000, steadySeconds: (t1 - tFirst) / 1000, steadyRows: M - firstRows, cpu: w.end().self };
  } finally {
    await sub.stop();
  }
}

/** The sink's logs path (FairBatcher as startLogSink builds it) with a chosen insert format and commit mode. */
async function runSinkVariant(round: number, format: 'cols' | 'tsv', defer: boolean): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_sink${format}${defer ? 'd' : 's'}${round}`);
  await migrate(ch, ns.logger);
  let written = 0;
  const sinkConfig = logSinkConfig(config);
  // Binary columns as startLogSink writes them: frames checked on consume and written straight from their bytes (log-frame.ts).
  const encoder: RowEncoder<LogLine> | ColumnarEncoder<SinkLog> = format === 'cols' ? SINK_LOG_COLUMNAR : LOG_TSV;
  const batcher = new FairBatcher<LogLine | SinkLog>(ch, 'logs', encoder, { maxRows: sinkConfig.batchRows, maxMs: sinkConfig.batchMs }, { tenantOf: (e) => e.tenant, onInsert: (n) => (written += n) });
  const w = cpuWindow();
  const t0 = performance.now();
  const sub = await bus.subscribe<'logs', LogLine | SinkLog>({
    group: `bench-sink-${format}-${defer}-${round}.logs`,
    topics: ['logs'],
    concurrency: sinkConfig.concurrency,
    ...(format === 'cols' ? { decode: logFrameDecoder(codec) } : {}),
    handle: (b, c) => {
      const done = batcher.add(b.map((m) => m.event));
      return defer && c.deferCommit(done) ? Promise.resolve() : done;
    },
  });
  let tFirst = 0;
  let firstRows = 0;
  try {
    await until(
      `sink (${format}, ${defer ? 'deferred' : 'synchronous'} commits) wrote every row`,
      () => {
        if (written > 0 && tFirst === 0) {
          tFirst = performance.now();
          firstRows = written;
        }
        return written >= M;
      },
      300_000,
      20,
    );
    await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
    const t1 = performance.now();
    return { seconds: (t1 - t0) / 1000, steadySeconds: (t1 - tFirst) / 1000, steadyRows: M - firstRows, cpu: w.end().self };
  } finally {
    await sub.stop();
  }
}

async function runRawCols(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_rawcols${round}`);
  await migrate(ch, ns.logger);
  const w = cpuWindow();
  const t0 = performance.now();
  const writer = new ColumnarWriter(LOG_COLUMNAR.columns);
  for (let i = 0; i < events.length; i += batchRows) {
    writer.reset();
    for (const e of events.slice(i, i + batchRows)) LOG_COLUMNAR.write(e, writer);
    await ch.insertEncoded('logs', { format: 'columns', columns: writer.columns, writer, rows: writer.rows });
  }
  await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
  return { seconds: (performance.now() - t0) / 1000, cpu: w.end().self };
}

async function runRawRowBinary(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_rawrb${round}`);
  await migrate(ch, ns.logger);
  const rb = rowBinaryInserter(path.join(ns.dataDir, 'clickhouse'));
  try {
    const w = cpuWindow();
    const t0 = performance.now();
    const writer = new RowBinaryWriter();
    for (let i = 0; i < events.length; i += batchRows) {
      writer.reset();
      for (const e of events.slice(i, i + batchRows)) writer.write(e);
      await rb.insert(ch.table('logs'), writer.bytes());
    }
    await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
    return { seconds: (performance.now() - t0) / 1000, cpu: w.end().self };
  } finally {
    rb.close();
  }
}

async function runRawTsv(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_rawtsv${round}`);
  await migrate(ch, ns.logger);
  const w = cpuWindow();
  const t0 = performance.now();
  const writer = new TsvWriter();
  for (let i = 0; i < events.length; i += batchRows) {
    writer.reset();
    for (const e of events.slice(i, i + batchRows)) LOG_TSV.write(e, writer);
    await ch.insertEncoded('logs', { columns: LOG_TSV.columns, body: writer.bytes(), rows: writer.rows });
  }
  await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
  return { seconds: (performance.now() - t0) / 1000, cpu: w.end().self };
}

/** Rows of the same shape made inside ClickHouse (INSERT … SELECT, no JSON): the MergeTree write alone. */
async function runEngineOnly(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_engine${round}`);
  await migrate(ch, ns.logger);
  const w = cpuWindow();
  const t0 = performance.now();
  for (let i = 0; i < M; i += batchRows) {
    const n = Math.min(batchRows, M - i);
    await ch.client.command({
      query: `INSERT INTO ${ch.table('logs')} (${LOG_COLUMNS.join(', ')})
        SELECT lower(hex(sipHash128(number))), concat('tenant', toString(number % 4)), concat('app', toString(number % 5)), 'bench-node',
               lower(hex(sipHash128(number % 20))), concat('app', toString(number % 5), '-', toString(number % 20)),
               toDateTime64(now64(3) - toIntervalMillisecond(number), 3, 'UTC'), number % 1000000, number % 20, if(number % 10 = 0, 'stderr', 'stdout'), false,
               base64Encode(randomPrintableASCII(${Math.round(avgLine)})), ${Math.round(avgLine)}, false, false, '', 'debug'
        FROM numbers(${i}, ${n})`,
    });
  }
  await until('FINAL count reached M', async () => (await finalCount(ch)) >= M, 60_000, 20);
  return { seconds: (performance.now() - t0) / 1000, cpu: w.end().self };
}

async function runConsumeOnly(round: number): Promise<Sample> {
  let n = 0;
  const w = cpuWindow();
  const t0 = performance.now();
  const sub = await bus.subscribe({
    group: `bench-consume-${round}`,
    topics: ['logs'],
    concurrency: config.kafka.partitions,
    handle: async (b) => {
      n += b.length;
      await Promise.resolve();
    },
  });
  try {
    await until('consumed every event', () => n >= M, 300_000, 20);
    return { seconds: (performance.now() - t0) / 1000, cpu: w.end().self };
  } finally {
    await sub.stop();
  }
}

try {
  const run: Record<Method, (round: number) => Promise<Sample>> = {
    sink: runSink,
    'sink-cols-defer': (r) => runSinkVariant(r, 'cols', true),
    'sink-cols-sync': (r) => runSinkVariant(r, 'cols', false),
    'sink-tsv-defer': (r) => runSinkVariant(r, 'tsv', true),
    'sink-tsv-sync': (r) => runSinkVariant(r, 'tsv', false),
    'raw-cols': runRawCols,
    'raw-tsv': runRawTsv,
    'raw-rowbinary': runRawRowBinary,
    'engine-only': runEngineOnly,
    'consume-only': runConsumeOnly,
  };
  for (let r = 0; r < rounds; r++) {
    for (const m of methods.map((_, i) => methods[(i + r) % methods.length]!)) {
      let s: Sample;
      try {
        s = await run[m](r);
      } catch (err) {
        failures.push(`round ${r + 1} ${m}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
        process.stderr.write(`  round ${r + 1} ${m}: FAILED ${failures.at(-1)}\n`);
        continue;
      }
      samples.get(m)!.push(s);
      process.stderr.write(`  round ${r + 1} ${m}: ${fmt(M / s.seconds)} rows/s (${s.seconds.toFixed(2)} s), load ${os.loadavg()[0]!.toFixed(1)}\n`);
    }
  }
} finally {
  await cleanup();
}

const rate = (m: Method) => median(samples.get(m)!.map((s) => M / s.seconds));
const cpuPerM = (m: Method) => median(samples.get(m)!.map((s) => (s.cpu / M) * 1e6));
const sinkRate = rate('sink');
const steadyOf = (m: Method) => median(samples.get(m)!.map((s) => (s.steadyRows ?? NaN) / (s.steadySeconds ?? NaN)));
const steady = steadyOf('sink');
out(`median of ${rounds} round(s); ${fmt(M)} log rows of ${avgLine.toFixed(0)} B lines on average; peak RSS of this process ${fmt(process.resourceUsage().maxRSS / 1024)} MiB`);
const row = (what: string, m: Method): string[] => [what, fmt(rate(m)), fmt(cpuPerM(m), 2), ratio(sinkRate, rate(m))];
table(
  ['what', 'rows/s', 'CPU s / M rows', 'sink / this'],
  [
    row('log sink (startLogSink: binary columns, commits trailing the insert), subscribe → FINAL count', 'sink'),
    ['log sink, steady (from the first insert on)', fmt(steady), '–', '–'],
    row('sink logs path alone (one consumer), binary columns, commits trailing the insert', 'sink-cols-defer'),
    row('sink logs path alone, binary columns, handler awaits its insert', 'sink-cols-sync'),
    row('sink logs path alone, TabSeparated, commits trailing the insert', 'sink-tsv-defer'),
    row('before: sink logs path alone, TabSeparated, handler awaits its insert', 'sink-tsv-sync'),
    ...(['sink-cols-defer', 'sink-cols-sync', 'sink-tsv-defer', 'sink-tsv-sync'] as const).map((m) => [`${m}, steady (from the first insert on)`, fmt(steadyOf(m)), '–', ratio(steady, steadyOf(m))]),
    row(`baseline: raw insert, binary columns (ch.insertEncoded, encoding included), ${fmt(batchRows)} rows/insert`, 'raw-cols'),
    row(`baseline: raw insert, TabSeparated (ch.insertEncoded, encoding included), ${fmt(batchRows)} rows/insert`, 'raw-tsv'),
    row(`baseline: raw insert, RowBinary (chDB native raw insert, encoding included), ${fmt(batchRows)} rows/insert`, 'raw-rowbinary'),
    row(`baseline: engine only, INSERT … SELECT of ${fmt(batchRows)} generated rows`, 'engine-only'),
    row('baseline: consume + decode only (no insert)', 'consume-only'),
  ],
);
if (failures.length > 0) out(`failed: ${failures.join(' · ')}`);
out('main thread, µs per row of each step alone (best of 3 passes over the same events):');
table(['step', 'µs / row'], steps.map(([what, us]) => [what, fmt(us, 2)]));
out(`per round (rows/s): ${[...samples].map(([m, ss]) => `${m} ${ss.map((s) => fmt(M / s.seconds)).join(', ')}`).join(' · ')}`);
out(`topic pre-fill through EventBus.publishRaw (10,000 per call, ${unpacked ? 'one record per event' : 'packed records'}, gzip, acks=all): ${fmt(M / fillSeconds)} events/s`);
out('target (DESIGN.md): log sink → ClickHouse ≥ 200k rows/s');

