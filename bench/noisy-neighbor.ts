/**
 * The noisy neighbour: one quiet tenant printing a numbered line every 100 ms, alone and
 * next to 1 and 5 flooding tenants (each printing at its default per-tenant limit), with
 * the collector in this process next to the log sink (as `logmeter up` runs them) and as
 * its own process (the real `logmeter collector`, as on a node). Everything runs with the
 * default settings, so the node budget and the per-tenant limits are the defaults'.
 *
 *   node --import tsx bench/noisy-neighbor.ts [--seconds 20] [--loud 1,5] [--collector same,process]
 *        [--loud-rate 8000 (lines/s each flood prints)] [--line-bytes 120]
 *        [--node-lines N (LOGMETER_NODE_LINES_PER_SECOND for the collector; default: the default budget)]
 *
 * Latency: `ingested_at − ts` of every quiet row (Docker timestamp → the insert that made
 * it queryable); p50/p99/max over the quiet tenant's rows of the phase. The quiet tenant
 * alone is measured in the same run, with the same collector, right before the floods:
 * the ratios are what to compare (the machine is shared). Loud tenants: rows delivered
 * and lines dropped (by the per-tenant limit or the node budget, as the collector
 * counts them), per second of the phase.
 *
 * Busybox cannot print at exactly N lines/s: a flood prints a batch of N/10 lines
 * (`cat` of a file) then sleeps 0.1 s, so it offers somewhat less than N.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { collectorConfigSchema, nodeBudget } from '../ingest/config.js';
import { createCollector } from '../ingest/collector.js';
import { ROOT, benchNamespace, freePort, metricSum, until, flags, fmt, header, onInterrupt, out, sleep, table, tempDir } from './lib/common.js';
import { docker, removeRunContainers, startContainers } from './lib/containers.js';
import { writeLinesFile } from './lib/lines.js';

const f = flags(['seconds', 'loud', 'collector', 'loud-rate', 'line-bytes', 'node-lines']);
if (f.bool('help')) {
  out('node --import tsx bench/noisy-neighbor.ts [--seconds 20] [--loud 1,5] [--collector same,process] [--loud-rate 8000] [--line-bytes 120] [--node-lines N]');
  process.exit(0);
}
const seconds = f.num('seconds', 20);
const louds = f.list('loud', [1, 5]);
const wheres = f.str('collector', 'same,process').split(',');
for (const w of wheres) if (w !== 'same' && w !== 'process') throw new Error('--collector is same, process or both');
const defaults = collectorConfigSchema.parse({});
const loudRate = f.num('loud-rate', defaults.rateLimit.linesPerSecond);
const lineBytes = f.num('line-bytes', 120);

const nodeLines = f.str('node-lines', '');
const nodeEnv: Record<string, string> = nodeLines ? { LOGMETER_NODE_LINES_PER_SECOND: nodeLines } : {};
const ns = benchNamespace('noisy', nodeEnv);
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const ch = openClickHouse({ database: ns.database, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const tmp = tempDir('logmeter-bench-noisy-');
let stopCollector: () => Promise<void> = () => Promise.resolve();
const cleanup = async () => {
  await removeRunContainers(ns.id);
  await stopCollector();
  await sink.stop();
  await bus.close();
  await ch.close();
  rmSync(tmp, { recursive: true, force: true });
  ns.cleanup();
};
onInterrupt(cleanup);

const node = nodeBudget(ns.config.collector.rateLimit);
header('noisy neighbour: a quiet tenant (10 lines/s) next to flooding tenants', {
  seconds,
  loud: louds,
  collector: wheres,
  'loud lines/s each (offered)': loudRate,
  'line-bytes': lineBytes,
  'per-tenant limit lines/s': defaults.rateLimit.linesPerSecond,
  'node budget lines/s': node.linesPerSecond,
  'node budget bytes/s': node.bytesPerSecond,
});

await bus.ensureTopics();
await migrate(ch, ns.logger);
const logs = ch.table('logs');
const sink = await startLogSink({ config: logSinkConfig(ns.config), bus, ch, logger: ns.logger, registry, group: 'bench-noisy' });

interface CollectorUnderTest {
  dropped(): Promise<number>;
  stop(): Promise<void>;
}

async function sameProcessCollector(): Promise<CollectorUnderTest> {
  const reg = createRegistry(false);
  const c = createCollector({ cfg: collectorConfigSchema.parse({ ...ns.config.collector, labelPrefix: ns.labelPrefix }), node: 'bench', stateDir: path.join(ns.dataDir, 'collector'), docker, bus, codec, logger: ns.logger, registry: reg });
  await c.start();
  return { dropped: async () => (await c.summary()).linesDropped, stop: () => c.stop() };
}

async function collectorProcess(): Promise<CollectorUnderTest> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/logmeter.mjs'), 'collector'], {
    cwd: ROOT,
    env: { ...process.env, ...nodeEnv, LOGMETER_TOPIC_PREFIX: ns.topicPrefix, LOGMETER_LABEL_PREFIX: ns.labelPrefix, LOGMETER_DATA_DIR: path.join(ns.dataDir, 'collector-process'), LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'warn' },
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
    dropped: () => m('logmeter_collector_lines_dropped_total'),
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(20_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

async function rows<T>(sql: string): Promise<T[]> {
  return ch.query<T>(sql, {});
}

interface Phase {
  where: string;
  loud: number;
  quietRows: number;
  quietExpected: number;
  p50: number;
  p99: number;
  max: number;
  loudDelivered: number;
  loudDropped: number;
}

/** One phase: the quiet tenant and `loud` floods for `seconds`; what arrived, how late. */
async function phase(where: string, loud: number, collector: CollectorUnderTest, n: number): Promise<Phase> {
  const tag = `${where}${loud}x${n}`;
  const quietLines = seconds * 10;
  const batch = Math.max(1, Math.round(loudRate / 10));
  const file = path.join(tmp, `flood-${batch}.txt`);
  writeLinesFile(file, batch, lineBytes, 1, 7 + n);
  const dropped0 = await collector.dropped();
  await startContainers([
    ...Array.from({ length: loud }, (_, i) => ({
      runId: ns.id,
      labelPrefix: ns.labelPrefix,
      tenant: `${tag}-loud${i}`,
      app: 'flood',
      script: `i=0; while [ $i -lt ${seconds * 10} ]; do cat /bench/batch.txt; sleep 0.1; i=$((i+1)); done; exec sleep 3600`,
      binds: [`${file}:/bench/batch.txt:ro`],
    })),
    { runId: ns.id, labelPrefix: ns.labelPrefix, tenant: `${tag}-quiet`, app: 'quiet', script: `i=0; while [ $i -lt ${quietLines} ]; do echo "quiet line $i"; sleep 0.1; i=$((i+1)); done; exec sleep 3600` },
  ]);
  const count = async (t: string) => Number((await rows<{ c: string }>(`SELECT count() AS c FROM ${logs} FINAL WHERE tenant = '${t}'`))[0]?.c ?? 0);
  await sleep(seconds * 1000);
  // Wait for the quiet tenant's lines (they are never dropped), then for the floods to settle.
  const deadline = Date.now() + 180_000;
  while ((await count(`${tag}-quiet`)) < quietLines && Date.now() < deadline) await sleep(500);
  let prev = -1;
  let loudNow = 0;
  while (Date.now() < deadline) {
    loudNow = Number((await rows<{ c: string }>(`SELECT count() AS c FROM ${logs} FINAL WHERE startsWith(tenant, '${tag}-loud')`))[0]?.c ?? 0);
    if (loudNow === prev) break;
    prev = loudNow;
    await sleep(2000);
  }
  const [q] = await rows<{ n: string; p50: number; p99: number; max: number }>(
    `SELECT count() AS n, quantileExact(0.5)(d) AS p50, quantileExact(0.99)(d) AS p99, max(d) AS max
     FROM (SELECT toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts) AS d FROM ${logs} FINAL WHERE tenant = '${tag}-quiet')`,
  );
  const dropped = (await collector.dropped()) - dropped0;
  await removeRunContainers(ns.id);
  return { where, loud, quietRows: Number(q?.n ?? 0), quietExpected: quietLines, p50: Number(q?.p50), p99: Number(q?.p99), max: Number(q?.max), loudDelivered: loudNow, loudDropped: dropped };
}

const results: Phase[] = [];
try {
  let n = 0;
  for (const where of wheres) {
    const collector = where === 'process' ? await collectorProcess() : await sameProcessCollector();
    stopCollector = () => collector.stop();
    process.stderr.write(`collector: ${where}\n`);
    for (const loud of [0, ...louds]) {
      process.stderr.write(`  phase: ${loud} flooding tenant(s)…\n`);
      results.push(await phase(where, loud, collector, n++));
    }
    await collector.stop();
    stopCollector = () => Promise.resolve();
  }
} finally {
  await cleanup();
}

out('Quiet tenant: Docker timestamp → row inserted (`ingested_at − ts`), ms; loud tenants: lines per second of the phase, summed over the floods.');
out();
const rowsOut = results.map((r) => {
  const alone = results.find((x) => x.where === r.where && x.loud === 0)!;
  return [
    r.where === 'same' ? 'one process (up)' : 'collector process',
    r.loud === 0 ? 'alone' : `${r.loud} × ${fmt(loudRate)}/s`,
    `${fmt(r.quietRows)} / ${fmt(r.quietExpected)}`,
    fmt(r.p50),
    fmt(r.p99),
    fmt(r.max),
    r.loud === 0 ? '1.0 ×' : `${(r.p99 / Math.max(1, alone.p99)).toFixed(1)} ×`,
    r.loud === 0 ? '–' : fmt(r.loudDelivered / seconds),
    r.loud === 0 ? '–' : fmt(r.loudDropped / seconds),
  ];
});
table(['deployment', 'floods', 'quiet rows', 'quiet p50', 'quiet p99', 'quiet max', 'p99 / alone', 'loud delivered lines/s', 'loud dropped lines/s'], rowsOut);
const failed = results.filter((r) => r.quietRows !== r.quietExpected);
if (failed.length > 0) {
  process.stderr.write(`the quiet tenant lost lines in ${failed.length} phase(s)\n`);
  process.exitCode = 1;
}
