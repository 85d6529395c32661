/**
 * Log sink throughput: rows/s from the logs topic into embedded ClickHouse (chDB in this
 * process) through the real sink (`startLogSink`), against raw inserts of the same rows
 * in the same run.
 *
 *   node --import tsx bench/sink.ts [--rounds 3] [--rows 200000] [--batch 50000 (sinkBatchRows)]
 *        [--batch-ms 500 (sinkBatchMs)] [--access-share 0.3]
 *
 * Method: the logs topic of a fresh namespace is filled first with M log events
 * (`EventBus.publish`, 10,000 per call). Each round then gets a new database (migrated)
 * and a new consumer group, so the sink reads all M events from offset 0:
 *   - sink: from the `startLogSink` call (consumer group joins included) until
 *     `SELECT count() FROM logs FINAL` is M; also the rate from the first completed
 *     insert on (the steady rate, without the group join); the sink writes TabSeparated
 *     bytes (`LOG_TSV`, lib/clickhouse/tsv.ts);
 *   - sink, JSONEachRow (the logs path before TabSeparated): the same consumer (same group
 *     settings, concurrency, batcher timing) with `logRow()` objects in a JSONEachRow
 *     `TableBatcher`, measured the same way;
 *   - baseline, raw insert: `ch.client.insert` JSONEachRow of the same `logRow()` rows,
 *     precomputed, in batches of the same size, one after the other, until the FINAL
 *     count is M — the ceiling of the JSON insert path on this machine;
 *   - baseline, raw TabSeparated insert: the same events encoded (`LOG_TSV`, encoding
 *     timed) and inserted with `ch.insertEncoded`, batches of the same size — the ceiling
 *     of the sink's insert path;
 *   - baseline, engine only: rows of the same shape generated inside ClickHouse
 *     (`INSERT … SELECT … FROM numbers()`, same batch size): the MergeTree write without
 *     the JSON path;
 *   - baseline, consume only: a consumer group on the same topic through the same bus
 *     (fetch, Avro decode, offset commit) with a handler that only counts — the Kafka
 *     side's ceiling.
 * CPU seconds are this process's: they include chDB's engine threads (embedded mode).
 * Before the rounds, the main thread's cost per row of each step is timed on its own
 * (Avro decode, `logRow`, JSON serialisation, TabSeparated encoding).
 */
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
import { LOG_COLUMNS, LOG_TSV, logRow } from '../processors/log-sink/rows.js';
import { TableBatcher } from '../lib/clickhouse/batcher.js';
import { TsvWriter } from '../lib/clickhouse/tsv.js';
import { benchNamespace, cpuWindow, flags, fmt, header, median, onInterrupt, out, ratio, table, until } from './lib/common.js';
import { makeLogEvents } from './lib/events.js';

const f = flags(['rounds', 'rows', 'batch', 'batch-ms', 'access-share']);
if (f.bool('help')) {
  out('node --import tsx bench/sink.ts [--rounds 3] [--rows 200000] [--batch 50000] [--batch-ms 500] [--access-share 0.3]');
  process.exit(0);
}
const rounds = f.num('rounds', 3);
const M = f.num('rows', 200_000);
const accessShare = f.num('access-share', 0.3);

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
const events = makeLogEvents(M, { accessShare });
const tFill = performance.now();
for (let i = 0; i < M; i += 10_000) await bus.publish('logs', events.slice(i, i + 10_000).map((event) => ({ event })));
const fillSeconds = (performance.now() - tFill) / 1000;
process.stderr.write(`topic filled: ${fmt(M)} events in ${fillSeconds.toFixed(1)} s (${fmt(M / fillSeconds)} events/s through EventBus.publish)\n`);
const rows = events.map(logRow);
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
const payloads = events.map((e) => codec.encode('logs', e));
const steps: Array<[string, number]> = [
  ['Avro decode (codec.decode)', perRow(() => void payloads.forEach((p) => codec.decode('logs', p)))],
  ['logRow() objects (incl. access-line parse for kind)', perRow(() => void events.map(logRow))],
  ['JSON serialisation of the rows (JSON.stringify)', perRow(() => void rows.forEach((r) => JSON.stringify(r)))],
  [`TabSeparated encoding (LOG_TSV into a reused buffer, incl. kind), ${fmt(batchRows)} per buffer`, perRow(() => void encodeBatches())],
];
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

type Method = 'sink' | 'sink-json' | 'raw-insert' | 'raw-tsv' | 'engine-only' | 'consume-only';
interface Sample {
  seconds: number;
  steadySeconds?: number;
  steadyRows?: number;
  cpu: number;
}
const samples = new Map<Method, Sample[]>([
  ['sink', []],
  ['sink-json', []],
  ['raw-tsv', []],
  ['raw-insert', []],
  ['engine-only', []],
  ['consume-only', []],
]);

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

/** The logs path of the sink before TabSeparated: logRow() objects, a JSONEachRow batcher, same consumer settings. */
async function runSinkJson(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_sinkjson${round}`);
  await migrate(ch, ns.logger);
  let written = 0;
  const batcher = new TableBatcher(ch, 'logs', LOG_COLUMNS, { maxRows: config.processors.sinkBatchRows, maxMs: config.processors.sinkBatchMs }, (n) => (written += n));
  const w = cpuWindow();
  const t0 = performance.now();
  const sub = await bus.subscribe({
    group: `bench-sinkjson-${round}.logs`,
    topics: ['logs'],
    concurrency: logSinkConfig(config).concurrency,
    handle: (b, c) => batcher.add(b.map((m) => logRow(m.event)), `${c.partition}`),
  });
  let tFirst = 0;
  let firstRows = 0;
  try {
    await until(
      'sink (JSONEachRow) wrote every row',
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

async function runRawInsert(round: number): Promise<Sample> {
  const ch = inDatabase(`${ns.database}_raw${round}`);
  await migrate(ch, ns.logger);
  const w = cpuWindow();
  const t0 = performance.now();
  for (let i = 0; i < rows.length; i += batchRows) {
    await ch.client.insert({ table: ch.table('logs'), values: rows.slice(i, i + batchRows), format: 'JSONEachRow', columns: [...LOG_COLUMNS] as [string, ...string[]] });
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
  const methods: Method[] = ['sink', 'sink-json', 'raw-tsv', 'raw-insert', 'engine-only', 'consume-only'];
  const run: Record<Method, (round: number) => Promise<Sample>> = {
    sink: runSink,
    'sink-json': runSinkJson,
    'raw-tsv': runRawTsv,
    'raw-insert': runRawInsert,
    'engine-only': runEngineOnly,
    'consume-only': runConsumeOnly,
  };
  for (let r = 0; r < rounds; r++) {
    for (const m of methods.map((_, i) => methods[(i + r) % methods.length]!)) {
      const s = await run[m](r);
      samples.get(m)!.push(s);
      process.stderr.write(`  round ${r + 1} ${m}: ${fmt(M / s.seconds)} rows/s (${s.seconds.toFixed(2)} s)\n`);
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
table(
  ['what', 'rows/s', 'CPU s / M rows', 'sink / this'],
  [
    ['log sink (startLogSink), from subscribe to FINAL count', fmt(sinkRate), fmt(cpuPerM('sink'), 2), '100 %'],
    ['log sink, steady (from the first insert on)', fmt(steady), '–', '–'],
    ['before: the sink\'s logs path with JSONEachRow rows, from subscribe to FINAL count', fmt(rate('sink-json')), fmt(cpuPerM('sink-json'), 2), ratio(sinkRate, rate('sink-json'))],
    ['before: JSONEachRow sink, steady (from the first insert on)', fmt(steadyOf('sink-json')), '–', ratio(steady, steadyOf('sink-json'))],
    [`baseline: raw ch.insertEncoded TabSeparated (encoding included), ${fmt(batchRows)} rows/insert`, fmt(rate('raw-tsv')), fmt(cpuPerM('raw-tsv'), 2), ratio(sinkRate, rate('raw-tsv'))],
    [`baseline: raw ch.client.insert JSONEachRow, ${fmt(batchRows)} rows/insert`, fmt(rate('raw-insert')), fmt(cpuPerM('raw-insert'), 2), ratio(sinkRate, rate('raw-insert'))],
    [`baseline: engine only, INSERT … SELECT of ${fmt(batchRows)} generated rows (no JSON)`, fmt(rate('engine-only')), fmt(cpuPerM('engine-only'), 2), ratio(sinkRate, rate('engine-only'))],
    ['baseline: consume + decode only (no insert)', fmt(rate('consume-only')), fmt(cpuPerM('consume-only'), 2), ratio(sinkRate, rate('consume-only'))],
  ],
);
out('main thread, µs per row of each step alone (best of 3 passes over the same events):');
table(['step', 'µs / row'], steps.map(([what, us]) => [what, fmt(us, 2)]));
out(`per round (rows/s): ${[...samples].map(([m, ss]) => `${m} ${ss.map((s) => fmt(M / s.seconds)).join(', ')}`).join(' · ')}`);
out(`topic pre-fill through EventBus.publish (10,000 per call, gzip, acks=all): ${fmt(M / fillSeconds)} events/s`);
out('target (DESIGN.md): log sink → ClickHouse ≥ 200k rows/s');

