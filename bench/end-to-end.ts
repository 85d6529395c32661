/**
 * End to end at a fixed offered load: line printed in a container → row queryable in
 * ClickHouse, both stages with their default settings. The log sink runs in this
 * process (embedded chDB); the collector, by default, as its own process — the real
 * `logmeter collector`, as on every node of a deployment (`--collector process`) — or in
 * this process next to the sink, as the all-in-one `logmeter up` runs it
 * (`--collector same`: one event loop for both), or in this process on a thread of its
 * own, as `logmeter up` runs it by default (`--collector thread`, `collector.thread`).
 *
 *   node --import tsx bench/end-to-end.ts [--rate 5000,20000] [--seconds 20] [--rounds 2]
 *        [--line-bytes 120] [--per-container 2500 (lines/s each container offers)]
 *        [--poll-ms 100] [--baseline-rounds 1] [--no-baseline] [--collector process|same|thread]
 *
 * Load: busybox cannot print at exactly N lines/s, so K containers (one tenant each, so
 * the per-tenant limit of 20,000 lines/s is not what is measured) each print a batch of
 * B lines (`cat` of a file of varied lines) then `sleep 0.1`, for the given seconds.
 * Nominal rate = K × B × 10; the ACHIEVED rate (rows / span of their Docker timestamps)
 * is what the table reports.
 *
 * Latency: every 100 ms the benchmark asks ClickHouse which rows of the round are
 * visible, as counts per (insert time, 10 ms bucket of the Docker timestamp). Rows seen
 * for the first time at a poll started at time T have latency T − (bucket middle): an
 * upper bound, at most one poll interval late. As a cross-check, `ingested_at − ts`
 * per row (ingested_at is set when the insert is processed, sql/002_logs.sql) is
 * reported too. Percentiles are over all rows of a round; the table shows the median
 * of the rounds.
 *
 * Baseline in the same run (after the pipeline round of the first `--baseline-rounds`
 * rounds, same load, fresh containers): a
 * bare reader following the Docker logs API, latency = arrival − Docker timestamp.
 * Nothing that reads through the API can beat it.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { clickHouseOn, openClickHouse, type ClickHouse, type ClickHouseClient } from '../lib/clickhouse/client.js';
import { dockerOptions } from '../lib/docker.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { ROOT, benchNamespace, cpuWindow, freePort, metricSum, procCpuSeconds, until, flags, fmt, header, median, onInterrupt, out, sleep, table, tempDir } from './lib/common.js';
import { removeRunContainers, startContainers } from './lib/containers.js';
import { writeLinesFile } from './lib/lines.js';
import { startCollectorHere } from './lib/collector-here.js';
import { startCollectorThread } from './lib/collector-thread.js';

const f = flags(['rate', 'seconds', 'rounds', 'line-bytes', 'per-container', 'poll-ms', 'baseline-rounds', 'collector'], ['no-baseline']);
if (f.bool('help')) {
  out('node --import tsx bench/end-to-end.ts [--rate 5000,20000] [--seconds 20] [--rounds 2] [--line-bytes 120] [--per-container 2500] [--poll-ms 100] [--baseline-rounds 1] [--no-baseline] [--collector process|same|thread]');
  process.exit(0);
}
const rates = f.list('rate', [5000, 20_000]);
const seconds = f.num('seconds', 20);
const rounds = f.num('rounds', 2);
const lineBytes = f.num('line-bytes', 120);
const perContainer = f.num('per-container', 2500);
const pollMs = f.num('poll-ms', 100);
/** Rounds that also run the raw-follow baseline (the first ones). */
const baselineRounds = f.bool('no-baseline') ? 0 : f.num('baseline-rounds', 1);
const withBaseline = baselineRounds > 0;
const collectorWhere = f.str('collector', 'process');
if (collectorWhere !== 'process' && collectorWhere !== 'same' && collectorWhere !== 'thread') throw new Error('--collector is process, same or thread');

const ns = benchNamespace('e2e');
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const ch = openClickHouse({ database: ns.database, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const socketPath = dockerOptions(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').socketPath ?? '/var/run/docker.sock';
const tmp = tempDir('logmeter-bench-e2e-');
let stopAll: () => Promise<void> = () => Promise.resolve();
const cleanup = async () => {
  await removeRunContainers(ns.id);
  await stopAll();
  await bus.close();
  await ch.close();
  rmSync(tmp, { recursive: true, force: true });
  ns.cleanup();
};
onInterrupt(cleanup);

header(`end to end: line printed → row queryable (${collectorWhere === 'process' ? 'collector process → Kafka → log sink, embedded chDB' : `collector${collectorWhere === 'thread' ? ' (own thread)' : ''} + log sink in one process, embedded chDB`})`, {
  collector: collectorWhere === 'process' ? 'own process (logmeter collector)' : collectorWhere === 'thread' ? 'this process, own thread' : 'this process, same thread',
  rates,
  seconds,
  rounds,
  'baseline rounds': baselineRounds,
  'line-bytes': lineBytes,
  'per-container lines/s': perContainer,
  'poll ms': pollMs,
  sinkBatchRows: ns.config.processors.sinkBatchRows,
  sinkBatchMs: ns.config.processors.sinkBatchMs,
  'collector lingerMs': ns.config.collector.lingerMs,
});

await bus.ensureTopics();
await migrate(ch, ns.logger);
const logs = ch.table('logs');
async function query<T>(sql: string): Promise<T[]> {
  const rs = await ch.client.query({ query: sql, format: 'JSONEachRow' });
  return rs.json<T>();
}
/** Every insert into the logs table the sink makes: when it ended, how long it took, how many rows. */
const inserts: Array<{ end: number; ms: number; rows: number }> = [];
type InsertParams = Parameters<ClickHouseClient['insert']>[0];
// Bench-side instrumentation only: the sink gets the same client, with its inserts timed.
const timedClient = new Proxy(ch.client, {
  get(target, prop, receiver) {
    if (prop === 'insert') {
      return async (params: InsertParams) => {
        const t = performance.now();
        try {
          return await target.insert(params);
        } finally {
          if (params.table.endsWith('.logs')) inserts.push({ end: Date.now(), ms: performance.now() - t, rows: Array.isArray(params.values) ? params.values.length : NaN });
        }
      };
    }
    const v: unknown = Reflect.get(target, prop, receiver);
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});
const sinkCh: ClickHouse = clickHouseOn(() => timedClient, ch.mode, ch.database, () => Promise.resolve());
const sink = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: sinkCh, logger: ns.logger, registry, group: 'bench-e2e' });
/** The collector under test, wherever it runs: its counts and its CPU seconds so far. */
interface CollectorUnderTest {
  summary(): Promise<{ linesProduced: number; linesDropped: number }>;
  kafkaErrors(): Promise<number>;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

async function sameProcessCollector(): Promise<CollectorUnderTest> {
  const c = await startCollectorHere({ ns, bus, codec, registry });
  return {
    summary: () => c.summary(),
    kafkaErrors: async () => ((await registry.getSingleMetric('logmeter_collector_kafka_errors_total')?.get())?.values ?? []).reduce((a, v) => a + v.value, 0),
    // Shared with the sink: the process's CPU is reported as a whole.
    cpuSeconds: () => NaN,
    stop: async () => void (await c.stop()),
  };
}

/** The collector in this process on a thread of its own (the product's thread host), as `logmeter up` runs it. */
async function threadCollector(): Promise<CollectorUnderTest> {
  const t = await startCollectorThread({ ns, registry });
  return { summary: () => t.summary(), kafkaErrors: () => t.metricSum('logmeter_collector_kafka_errors_total'), cpuSeconds: () => NaN, stop: () => t.stop() };
}

/** The real `logmeter collector` command in its own process; counts from its /metrics. */
async function collectorProcess(): Promise<CollectorUnderTest> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/logmeter.mjs'), 'collector'], {
    cwd: ROOT,
    env: { ...process.env, LOGMETER_TOPIC_PREFIX: ns.topicPrefix, LOGMETER_LABEL_PREFIX: ns.labelPrefix, LOGMETER_DATA_DIR: path.join(ns.dataDir, 'collector-process'), LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const m = (name: string) => metricSum(port, name).then((v) => (Number.isNaN(v) ? 0 : v));
  await until('logmeter collector answers', async () => {
    if (child.exitCode !== null) throw new Error(`logmeter collector exited (${child.exitCode}): ${stderr}`);
    return m('logmeter_collector_lines_produced_total').then(() => true, () => false);
  }, 60_000, 200);
  return {
    summary: async () => ({ linesProduced: await m('logmeter_collector_lines_produced_total'), linesDropped: await m('logmeter_collector_lines_dropped_total') }),
    kafkaErrors: () => m('logmeter_collector_kafka_errors_total'),
    cpuSeconds: () => procCpuSeconds(child.pid!),
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(20_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

const collector = collectorWhere === 'process' ? await collectorProcess() : collectorWhere === 'thread' ? await threadCollector() : await sameProcessCollector();
stopAll = async () => {
  await collector.stop();
  await sink.stop();
};

/** A round's load: K containers, each printing a batch of lines (written to `file`) every 0.1 s, `iterations` times. */
function roundLoad(rate: number, r: number): { k: number; batch: number; iterations: number; expected: number; file: string } {
  const k = Math.max(1, Math.ceil(rate / perContainer));
  const batch = Math.max(1, Math.round(rate / k / 10));
  const iterations = Math.max(1, Math.round(seconds * 10));
  const file = path.join(tmp, `batch-${batch}.txt`);
  writeLinesFile(file, batch, lineBytes, 1, 1000 + r);
  return { k, batch, iterations, expected: k * batch * iterations, file };
}

/** One round: K containers offering `rate` lines/s for `seconds`; returns latencies and what arrived. */
async function round(rate: number, r: number, warmUp = false): Promise<RoundResult> {
  const { k, batch, iterations, expected, file } = roundLoad(rate, r);
  const tenantPrefix = warmUp ? `warm${r}-` : `r${rate}x${r}-`;
  const seen = new Map<string, number>();
  const lat: Array<[number, number]> = [];
  let visible = 0;
  let since = 0;
  /** Per poll: when, lines Kafka acknowledged so far (this round), rows visible so far. */
  const timeline: Array<{ t: number; produced: number; visible: number }> = [];
  const kafkaErrors = () => collector.kafkaErrors();
  const kafkaErrors0 = await kafkaErrors();
  const produced0 = (await collector.summary()).linesProduced;
  const dropped0 = (await collector.summary()).linesDropped;
  const w = cpuWindow();
  const collectorCpu0 = collector.cpuSeconds();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const t0 = Date.now();
  await startContainers(
    Array.from({ length: k }, (_, i) => ({
      runId: ns.id,
      labelPrefix: ns.labelPrefix,
      tenant: `${tenantPrefix}t${i}`,
      app: 'e2e',
      script: `i=0; while [ $i -lt ${iterations} ]; do cat /bench/batch.txt; sleep 0.1; i=$((i+1)); done; exec sleep 3600`,
      binds: [`${file}:/bench/batch.txt:ro`],
    })),
  );
  const deadline = Date.now() + (seconds + 120) * 1000;
  while (visible < expected && Date.now() < deadline) {
    const tq = Date.now();
    const rows = await query<{ i: number; b: number; c: number }>(
      `SELECT toUnixTimestamp64Milli(ingested_at) AS i, intDiv(toUnixTimestamp64Milli(ts), 10) AS b, toUInt32(count()) AS c
       FROM ${logs} WHERE startsWith(tenant, '${tenantPrefix}') AND ingested_at >= fromUnixTimestamp64Milli(toInt64(${Math.max(0, since - 10_000)}), 'UTC')
       GROUP BY i, b`,
    );
    for (const row of rows) {
      const key = `${row.i}:${row.b}`;
      const before = seen.get(key) ?? 0;
      const c = Number(row.c);
      if (c > before) {
        seen.set(key, c);
        lat.push([tq - (Number(row.b) * 10 + 5), c - before]);
        visible += c - before;
      }
      if (Number(row.i) > since) since = Number(row.i);
    }
    timeline.push({ t: tq, produced: (await collector.summary()).linesProduced - produced0, visible });
    await sleep(Math.max(0, pollMs - (Date.now() - tq)));
  }
  const wall = (Date.now() - t0) / 1000;
  const cpu = w.end();
  const collectorCores = (collector.cpuSeconds() - collectorCpu0) / wall;
  const mine = inserts.filter((x) => x.end >= t0);
  const insertMs = mine.map((x) => x.ms);
  loop.disable();
  const s = await collector.summary();
  const [span] = await query<{ n: number; first: number; last: number; p50: number; p99: number; max: number; inserts: number }>(
    `SELECT toUInt64(count()) AS n, toUnixTimestamp64Milli(min(ts)) AS first, toUnixTimestamp64Milli(max(ts)) AS last, toUInt64(uniqExact(ingested_at)) AS inserts,
            quantileExact(0.5)(d) AS p50, quantileExact(0.99)(d) AS p99, max(d) AS max
     FROM (SELECT ts, ingested_at, toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts) AS d FROM ${logs} FINAL WHERE startsWith(tenant, '${tenantPrefix}'))`,
  );
  // Where the time goes: for each poll, how old was the newest line Kafka had acknowledged
  // (collector stage) — the n-th printed line's time, with n = lines acknowledged so far.
  const buckets = await query<{ b: number; c: number }>(
    `SELECT intDiv(toUnixTimestamp64Milli(ts), 10) AS b, toUInt32(count()) AS c FROM ${logs} FINAL WHERE startsWith(tenant, '${tenantPrefix}') GROUP BY b ORDER BY b`,
  );
  const cum: Array<[number, number]> = [];
  let acc0 = 0;
  for (const x of buckets) cum.push([Number(x.b) * 10 + 5, (acc0 += Number(x.c))]);
  const printedAt = (n: number) => cum.find(([, c]) => c >= n)?.[0] ?? NaN;
  let ackLagMax = 0;
  for (const p of timeline) if (p.produced > 0 && p.produced < expected) ackLagMax = Math.max(ackLagMax, p.t - printedAt(p.produced + 1));
  await removeRunContainers(ns.id);
  lat.sort((a, b) => a[0] - b[0]);
  // Expand the weighted samples into percentiles without building one entry per row.
  const pct = (p: number) => {
    const total = lat.reduce((a, x) => a + x[1], 0);
    const rank = Math.ceil((p / 100) * total);
    let acc = 0;
    for (const [v, n] of lat) if ((acc += n) >= rank) return v;
    return NaN;
  };
  return {
    rate,
    containers: k,
    batch,
    expected,
    visible,
    rows: Number(span?.n ?? 0),
    achieved: Number(span?.n ?? 0) / Math.max(0.001, (Number(span?.last ?? 0) - Number(span?.first ?? 0)) / 1000),
    p50: pct(50),
    p99: pct(99),
    max: lat.length ? lat[lat.length - 1]![0] : NaN,
    ingP50: Number(span?.p50 ?? NaN),
    ingP99: Number(span?.p99 ?? NaN),
    ingMax: Number(span?.max ?? NaN),
    ackLagMax,
    inserts: Number(span?.inserts ?? 0),
    insertMsMedian: median(insertMs),
    insertMsMax: Math.max(...insertMs),
    insertBusy: insertMs.reduce((a, x) => a + x, 0) / 1000 / wall,
    loopP99: loop.percentile(99) / 1e6,
    loopMax: loop.max / 1e6,
    dropped: s.linesDropped - dropped0,
    kafkaErrors: (await kafkaErrors()) - kafkaErrors0,
    produced: s.linesProduced - produced0,
    cores: cpu.self / wall,
    collectorCores,
    dockerd: cpu.dockerd / wall,
    kafka: cpu.kafka / wall,
  };
}

/**
 * Baseline: the same load, read by a bare follower of the Docker logs API (a socket,
 * frame headers, the timestamp; no collector, Kafka or ClickHouse): how late lines
 * reach ANY reader of the API on this machine. Latency = arrival − Docker timestamp.
 */
async function rawFollowRound(rate: number, r: number): Promise<{ p50: number; p99: number; max: number; received: number; expected: number }> {
  const { k, batch, iterations, expected, file } = roundLoad(rate, r);
  const hist = new Map<number, number>();
  let received = 0;
  const cs = await startContainers(
    Array.from({ length: k }, (_, i) => ({
      runId: ns.id,
      // Not the collector's label prefix: it does not follow these.
      labelPrefix: `${ns.id}raw.`,
      tenant: `raw${i}`,
      app: 'e2e',
      script: `i=0; while [ $i -lt ${iterations} ]; do cat /bench/batch.txt; sleep 0.1; i=$((i+1)); done; exec sleep 3600`,
      binds: [`${file}:/bench/batch.txt:ro`],
    })),
  );
  const reqs: http.ClientRequest[] = [];
  await Promise.race([
    Promise.all(
      cs.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            let mine = 0;
            const req = http.get({ socketPath, path: `/containers/${c.id}/logs?stdout=1&stderr=1&timestamps=1&follow=1` }, (res) => {
              let pending: Buffer = Buffer.alloc(0);
              res.on('data', (chunk: Buffer) => {
                const now = Date.now();
                let buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
                while (buf.length >= 8) {
                  const len = buf.readUInt32BE(4);
                  if (buf.length < 8 + len) break;
                  // "2026-11-26T10:03:32.123456789Z …": milliseconds are enough here.
                  const ts = Date.parse(`${buf.toString('latin1', 8, 31)}Z`);
                  const d = Math.max(0, now - ts);
                  hist.set(d, (hist.get(d) ?? 0) + 1);
                  received++;
                  buf = buf.subarray(8 + len);
                  if (++mine === batch * iterations) resolve();
                }
                pending = buf;
              });
              res.on('error', reject);
            });
            req.on('error', reject);
            reqs.push(req);
          }),
      ),
    ),
    sleep((seconds + 60) * 1000),
  ]);
  for (const req of reqs) req.destroy();
  await removeRunContainers(ns.id);
  const sorted = [...hist].sort((a, b) => a[0] - b[0]);
  const pct = (p: number) => {
    const rank = Math.ceil((p / 100) * received);
    let acc = 0;
    for (const [v, n] of sorted) if ((acc += n) >= rank) return v;
    return NaN;
  };
  return { p50: pct(50), p99: pct(99), max: sorted.length ? sorted[sorted.length - 1]![0] : NaN, received, expected };
}

interface RoundResult {
  rate: number;
  containers: number;
  batch: number;
  expected: number;
  visible: number;
  rows: number;
  achieved: number;
  p50: number;
  p99: number;
  max: number;
  ingP50: number;
  ingP99: number;
  ingMax: number;
  /** Largest age of the oldest line not yet acknowledged by Kafka, over the polls (ms). */
  ackLagMax: number;
  /** Inserts that carried the round's rows (distinct ingested_at values). */
  inserts: number;
  /** Duration of the sink's inserts into logs during the round (ms), and the share of the round an insert was running. */
  insertMsMedian: number;
  insertMsMax: number;
  insertBusy: number;
  /** Event-loop delay of this process over the round (ms): the collector and sink share it. */
  loopP99: number;
  loopMax: number;
  dropped: number;
  /** Failed Kafka sends the collector retried during the round: > 0 means the broker was disturbed (shared machine). */
  kafkaErrors: number;
  produced: number;
  cores: number;
  /** The collector process's cores (NaN when it runs in the bench process). */
  collectorCores: number;
  dockerd: number;
  kafka: number;
}

const results: RoundResult[] = [];
const raw: Array<Awaited<ReturnType<typeof rawFollowRound>> & { rate: number }> = [];
try {
  // Warm-up: the consumer groups joined, the producer connected, the first insert done.
  const warmStart = performance.now();
  await round(100, 0, true).then((w) => {
    if (w.visible < w.expected) throw new Error(`warm-up: ${w.visible} of ${w.expected} rows visible`);
  });
  process.stderr.write(`warm-up done in ${((performance.now() - warmStart) / 1000).toFixed(1)} s\n`);
  for (let r = 0; r < rounds; r++) {
    for (const rate of rates) {
      const res = await round(rate, r + 1);
      results.push(res);
      process.stderr.write(
        `  ${fmt(rate)} lines/s round ${r + 1}: achieved ${fmt(res.achieved)} lines/s, ${fmt(res.visible)}/${fmt(res.expected)} visible, p50 ${fmt(res.p50)} ms, p99 ${fmt(res.p99)} ms, max ${fmt(res.max)} ms${res.kafkaErrors > 0 ? `, ${res.kafkaErrors} Kafka send errors: the broker was disturbed, this round is not a measurement` : ''}\n`,
      );
      if (r < baselineRounds) {
        const b = await rawFollowRound(rate, r + 1);
        raw.push({ ...b, rate });
        process.stderr.write(`  ${fmt(rate)} lines/s round ${r + 1}, raw Docker follow: ${fmt(b.received)}/${fmt(b.expected)} lines, p50 ${fmt(b.p50)} ms, p99 ${fmt(b.p99)} ms, max ${fmt(b.max)} ms\n`);
      }
    }
  }
} finally {
  await cleanup();
}

out(`median of ${rounds} round(s) per rate; latency in ms; "visible" = rows seen by the ${pollMs} ms poll / rows printed; "collector stage max" = largest age of the oldest line not yet acknowledged by Kafka, seen at a poll (the rest of the latency is Kafka → sink → insert); "rows / insert" = the round's rows / distinct ingested_at values; "insert ms" = duration of the sink's inserts into logs (timed around its ClickHouse client), "insert busy" = share of the round an insert was running; CPU in cores (CPU s / wall s) over the round`);
table(
  ['offered', 'containers × batch', 'achieved lines/s', 'visible', 'p50', 'p99', 'max', 'ingested_at−ts p50 / p99 / max', 'collector stage max', 'rows / insert', 'insert ms median / max', 'insert busy', 'event-loop delay p99 / max', 'dropped', 'Kafka send errors', 'bench process cores', 'collector process cores', 'dockerd cores', 'kafka cores'],
  rates.map((rate) => {
    const rs = results.filter((x) => x.rate === rate);
    const m = (g: (x: RoundResult) => number) => median(rs.map(g));
    return [
      fmt(rate),
      `${rs[0]?.containers ?? 0} × ${rs[0]?.batch ?? 0}/0.1 s`,
      fmt(m((x) => x.achieved)),
      `${fmt(m((x) => (x.visible / x.expected) * 100), 1)} %`,
      fmt(m((x) => x.p50)),
      fmt(m((x) => x.p99)),
      fmt(m((x) => x.max)),
      `${fmt(m((x) => x.ingP50))} / ${fmt(m((x) => x.ingP99))} / ${fmt(m((x) => x.ingMax))}`,
      fmt(m((x) => x.ackLagMax)),
      fmt(m((x) => x.rows / Math.max(1, x.inserts))),
      `${fmt(m((x) => x.insertMsMedian))} / ${fmt(m((x) => x.insertMsMax))}`,
      `${fmt(m((x) => x.insertBusy * 100))} %`,
      `${fmt(m((x) => x.loopP99))} / ${fmt(m((x) => x.loopMax))}`,
      fmt(rs.reduce((a, x) => a + x.dropped, 0)),
      fmt(rs.reduce((a, x) => a + x.kafkaErrors, 0)),
      fmt(m((x) => x.cores), 2),
      collectorWhere === 'process' ? fmt(m((x) => x.collectorCores), 2) : '(in bench process)',
      fmt(m((x) => x.dockerd), 2),
      fmt(m((x) => x.kafka), 2),
    ];
  }),
);
if (withBaseline) {
  out(`baseline in the same run (${baselineRounds} round(s)): the same load read by a bare Docker API follower (no collector, Kafka or ClickHouse) — latency printed → bytes at the reader`);
  table(
    ['offered', 'received', 'raw follow p50', 'raw follow p99', 'raw follow max', 'pipeline p99', 'pipeline p99 / raw p99'],
    rates.map((rate) => {
      const bs = raw.filter((x) => x.rate === rate);
      const p99 = median(results.filter((x) => x.rate === rate).map((x) => x.p99));
      const rawP99 = median(bs.map((x) => x.p99));
      return [
        fmt(rate),
        `${fmt(median(bs.map((x) => (x.received / x.expected) * 100)), 1)} %`,
        fmt(median(bs.map((x) => x.p50))),
        fmt(rawP99),
        fmt(median(bs.map((x) => x.max))),
        fmt(p99),
        Number.isFinite(p99 / rawP99) && rawP99 > 0 ? `${(p99 / rawP99).toFixed(1)} ×` : '–',
      ];
    }),
  );
}
out(`per round p99 (ms): ${rates.map((rate) => `${fmt(rate)}: ${results.filter((x) => x.rate === rate).map((x) => fmt(x.p99)).join(', ')}`).join(' · ')}`);
out('target (DESIGN.md): end to end, line printed → queryable, p99 < 2 s at 20k lines/s');
