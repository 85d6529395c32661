/**
 * The noisy neighbour: one quiet tenant printing a numbered line every 100 ms, alone and
 * next to 1 and 5 flooding tenants (each printing at its default per-tenant limit), in the
 * two deployments a new user meets:
 * - `up`: the real `logmeter up`, its own process (collector, every processor and the API
 *   on one event loop), with its own topic prefix, data directory, database and ports;
 *   queried through its operator SQL route (it holds the embedded ClickHouse);
 * - `split`: the real `logmeter collector` as its own process (as on a node), the log sink
 *   in this process on its own embedded ClickHouse.
 * Everything runs with the default settings, so the node budget and the per-tenant limits
 * are the defaults'. Then, per deployment, a capacity phase: 5 floods with the node budget
 * and the per-tenant limits lifted, so the pipeline is offered more than it carries; what
 * it carried (loud rows over the span of their insert times) is the node's capacity, the
 * figure the default budget is a fraction of (ingest/config.ts, BENCHMARKS.md).
 *
 *   node --import tsx bench/noisy-neighbor.ts [--seconds 20] [--loud 1,5] [--deploy up,split]
 *        [--loud-rate 8000 (lines/s each flood prints)] [--line-bytes 120]
 *        [--node-lines N (LOGMETER_NODE_LINES_PER_SECOND; default: the default budget)] [--no-capacity]
 *
 * Latency: `ingested_at − ts` of every quiet row (Docker timestamp → the insert that made
 * it queryable); p50/p99/max over the quiet tenant's rows of the phase. The quiet tenant
 * alone is measured in the same run, with the same deployment, right before the floods:
 * the ratios are what to compare (the machine is shared). Loud tenants: rows delivered
 * and lines dropped (by the per-tenant limit or the node budget, as the collector
 * counts them), per second of the phase.
 *
 * The load is bench/lib/noisy.ts's (shared with bench/noisy-stages.ts, which says where
 * the quiet tenant's delay goes).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { collectorConfigSchema, nodeBudget } from '../ingest/config.js';
import type { EventBus, Subscription } from '../lib/bus/bus.js';
import { ROOT, benchNamespace, freePort, metricSum, until, flags, fmt, header, onInterrupt, out, sleep, table, tempDir } from './lib/common.js';
import { removeRunContainers, startContainers } from './lib/containers.js';
import { noisyLoad } from './lib/noisy.js';

const f = flags(['seconds', 'loud', 'deploy', 'loud-rate', 'line-bytes', 'node-lines'], ['no-capacity']);
if (f.bool('help')) {
  out('node --import tsx bench/noisy-neighbor.ts [--seconds 20] [--loud 1,5] [--deploy up,split] [--loud-rate 8000] [--line-bytes 120] [--node-lines N] [--no-capacity]');
  process.exit(0);
}
const seconds = f.num('seconds', 20);
const louds = f.list('loud', [1, 5]);
const deploys = f.str('deploy', 'up,split').split(',');
for (const d of deploys) if (d !== 'up' && d !== 'split') throw new Error('--deploy is up, split or both');
const capacity = !f.bool('no-capacity');
const defaults = collectorConfigSchema.parse({});
const loudRate = f.num('loud-rate', defaults.rateLimit.linesPerSecond);
const lineBytes = f.num('line-bytes', 120);

const nodeLines = f.str('node-lines', '');
const nodeEnv: Record<string, string> = nodeLines ? { LOGMETER_NODE_LINES_PER_SECOND: nodeLines } : {};
/** The capacity phase: limits far above what the node carries, so nothing is cut at the collector. */
const liftedEnv: Record<string, string> = { LOGMETER_NODE_LINES_PER_SECOND: '1000000000', LOGMETER_NODE_BYTES_PER_SECOND: '1000000000000', LOGMETER_TENANT_LINES_PER_SECOND: '1000000000', LOGMETER_TENANT_BYTES_PER_SECOND: '1000000000000' };
const ns = benchNamespace('noisy', nodeEnv);
const tmp = tempDir('logmeter-bench-noisy-');
let stopDeployment: () => Promise<void> = () => Promise.resolve();
/** The split deployment's sink side (this process), opened when first needed. */
let local: { bus: EventBus; ch: ClickHouse; sink: Subscription } | undefined;
const cleanup = async () => {
  await removeRunContainers(ns.id);
  await stopDeployment();
  await local?.sink.stop();
  await local?.bus.close();
  await local?.ch.close();
  rmSync(tmp, { recursive: true, force: true });
  ns.cleanup();
};
onInterrupt(cleanup);

const node = nodeBudget(ns.config.collector.rateLimit);
header('noisy neighbour: a quiet tenant (10 lines/s) next to flooding tenants', {
  seconds,
  loud: louds,
  deploy: deploys,
  capacity,
  'loud lines/s each (offered)': loudRate,
  'line-bytes': lineBytes,
  'per-tenant limit lines/s': defaults.rateLimit.linesPerSecond,
  'node budget lines/s': node.linesPerSecond,
  'node budget bytes/s': node.bytesPerSecond,
});

/** A running deployment under test: where its logs table is, and what its collector dropped. */
interface Deployment {
  /** Rows of a SELECT on its ClickHouse; `{logs}` in the statement is its logs table. */
  query<T>(sql: string): Promise<T[]>;
  dropped(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts `logmeter <args>` with `env` and waits until its `/metrics` answers. */
async function logmeterProcess(args: string[], env: Record<string, string>, port: number): Promise<{ metric(name: string): Promise<number>; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/logmeter.mjs'), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOGMETER_LABEL_PREFIX: ns.labelPrefix, LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const metric = (name: string) => metricSum(port, name).then((v) => (Number.isNaN(v) ? 0 : v));
  await until(`logmeter ${args.join(' ')} answers`, async () => {
    if (child.exitCode !== null) throw new Error(`logmeter ${args.join(' ')} exited (${child.exitCode}): ${stderr}`);
    return metric('logmeter_collector_lines_produced_total').then(() => true, () => false);
  }, 120_000, 200);
  return {
    metric,
    stop: async () => {
      child.kill('SIGTERM');
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(30_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

let starts = 0;

/** The real `logmeter up`, on a topic prefix, data directory, database and ports of its own. */
async function upDeployment(env: Record<string, string>): Promise<Deployment> {
  const k = starts++;
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const database = `${ns.database}_up${k}`;
  const p = await logmeterProcess(['up'], {
    ...env,
    LOGMETER_TOPIC_PREFIX: `${ns.id}-up${k}.`,
    LOGMETER_DATA_DIR: path.join(ns.dataDir, `up-${k}`),
    CLICKHOUSE_DATABASE: database,
    LOGMETER_KEDA_LISTEN: '127.0.0.1:0',
    LOGMETER_LB_BIND: `127.0.0.1:${await freePort()}`,
    LOGMETER_ADMIN_TOKEN: token,
  }, port);
  return {
    query: async <T>(sql: string) => {
      const res = await fetch(`http://127.0.0.1:${port}/api/v1/admin/sql`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ query: sql.replaceAll('{logs}', `${database}.logs`) }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`operator SQL: ${res.status} ${text}`);
      return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as T);
    },
    dropped: () => p.metric('logmeter_collector_lines_dropped_total'),
    stop: () => p.stop(),
  };
}

/** The real `logmeter collector` as its own process; the log sink in this process. */
async function splitDeployment(env: Record<string, string>): Promise<Deployment> {
  const k = starts++;
  if (!local) {
    const codec = await AvroCodec.create(new ManifestSource());
    const bus = busFor(ns.config, codec, ns.logger);
    const ch = openClickHouse({ database: ns.database, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
    await bus.ensureTopics();
    await migrate(ch, ns.logger);
    const sink = await startLogSink({ config: logSinkConfig(ns.config), bus, ch, logger: ns.logger, registry: createRegistry(false), group: 'bench-noisy' });
    local = { bus, ch, sink };
  }
  const { ch } = local;
  const port = await freePort();
  const p = await logmeterProcess(['collector'], { ...env, LOGMETER_TOPIC_PREFIX: ns.topicPrefix, LOGMETER_DATA_DIR: path.join(ns.dataDir, `collector-${k}`) }, port);
  return {
    query: <T>(sql: string) => ch.query<T>(sql.replaceAll('{logs}', ch.table('logs')), {}),
    dropped: () => p.metric('logmeter_collector_lines_dropped_total'),
    stop: () => p.stop(),
  };
}

interface Phase {
  deploy: string;
  /** `capacity`: the limits lifted. */
  kind: 'default' | 'capacity';
  loud: number;
  quietRows: number;
  quietExpected: number;
  p50: number;
  p99: number;
  max: number;
  loudDelivered: number;
  loudDropped: number;
  /** Loud rows per second of the span of their insert times (what the pipeline carried). */
  carried: number;
}

/** One phase: the quiet tenant and `loud` floods for `seconds`; what arrived, how late. */
async function phase(deploy: string, kind: Phase['kind'], loud: number, d: Deployment, n: number): Promise<Phase> {
  const tag = `${deploy}${kind === 'capacity' ? 'cap' : ''}${loud}x${n}`;
  const load = noisyLoad({ runId: ns.id, labelPrefix: ns.labelPrefix, tag, loud, seconds, loudRate, lineBytes, dir: tmp, seed: 7 + n });
  const { quietLines, quietTenant, loudPrefix } = load;
  const dropped0 = await d.dropped();
  await startContainers(load.specs);
  const count = async (where: string) => Number((await d.query<{ c: string }>(`SELECT count() AS c FROM {logs} FINAL WHERE ${where}`))[0]?.c ?? 0);
  await sleep(seconds * 1000);
  // Wait for the quiet tenant's lines (they are never dropped), then for the floods to settle.
  const deadline = Date.now() + 300_000;
  while ((await count(`tenant = '${quietTenant}'`)) < quietLines && Date.now() < deadline) await sleep(500);
  let prev = -1;
  let loudNow = 0;
  while (Date.now() < deadline) {
    loudNow = await count(`startsWith(tenant, '${loudPrefix}')`);
    if (loudNow === prev) break;
    prev = loudNow;
    await sleep(2000);
  }
  const [q] = await d.query<{ n: string; p50: number; p99: number; max: number }>(
    `SELECT count() AS n, quantileExact(0.5)(d) AS p50, quantileExact(0.99)(d) AS p99, max(d) AS max
     FROM (SELECT toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts) AS d FROM {logs} FINAL WHERE tenant = '${quietTenant}')`,
  );
  const [span] = await d.query<{ ms: string }>(`SELECT toUnixTimestamp64Milli(max(ingested_at)) - toUnixTimestamp64Milli(min(ingested_at)) AS ms FROM {logs} WHERE startsWith(tenant, '${loudPrefix}')`);
  const dropped = (await d.dropped()) - dropped0;
  await removeRunContainers(ns.id);
  const spanMs = Number(span?.ms ?? 0);
  return {
    deploy,
    kind,
    loud,
    quietRows: Number(q?.n ?? 0),
    quietExpected: quietLines,
    p50: Number(q?.p50),
    p99: Number(q?.p99),
    max: Number(q?.max),
    loudDelivered: loudNow,
    loudDropped: dropped,
    carried: spanMs > 0 ? (loudNow * 1000) / spanMs : 0,
  };
}

const results: Phase[] = [];
try {
  let n = 0;
  for (const deploy of deploys) {
    const start = deploy === 'up' ? upDeployment : splitDeployment;
    for (const kind of capacity ? (['default', 'capacity'] as const) : (['default'] as const)) {
      const d = await start(kind === 'capacity' ? liftedEnv : nodeEnv);
      stopDeployment = () => d.stop();
      process.stderr.write(`deployment: ${deploy}${kind === 'capacity' ? ', limits lifted' : ''}\n`);
      for (const loud of kind === 'capacity' ? [5] : [0, ...louds]) {
        process.stderr.write(`  phase: ${loud} flooding tenant(s)…\n`);
        const r = await phase(deploy, kind, loud, d, n++);
        results.push(r);
        process.stderr.write(`    quiet ${r.quietRows}/${r.quietExpected} p50 ${r.p50} p99 ${r.p99} max ${r.max} ms; loud ${r.loudDelivered} delivered, ${r.loudDropped} dropped, carried ${fmt(r.carried)}/s\n`);
      }
      await d.stop();
      stopDeployment = () => Promise.resolve();
    }
  }
} finally {
  await cleanup();
}

out('Quiet tenant: Docker timestamp → row inserted (`ingested_at − ts`), ms; loud tenants: lines per second of the phase, summed over the floods;');
out('carried: loud rows per second of the span of their insert times.');
out();
const rowsOut = results.map((r) => {
  const alone = results.find((x) => x.deploy === r.deploy && x.kind === 'default' && x.loud === 0);
  return [
    r.deploy === 'up' ? 'logmeter up' : 'split (collector process)',
    r.kind === 'capacity' ? `${r.loud} × ${fmt(loudRate)}/s, limits lifted` : r.loud === 0 ? 'alone' : `${r.loud} × ${fmt(loudRate)}/s`,
    `${fmt(r.quietRows)} / ${fmt(r.quietExpected)}`,
    fmt(r.p50),
    fmt(r.p99),
    fmt(r.max),
    r.loud === 0 ? '1.0 ×' : alone ? `${(r.p99 / Math.max(1, alone.p99)).toFixed(1)} ×` : '–',
    r.loud === 0 ? '–' : fmt(r.loudDelivered / seconds),
    r.loud === 0 ? '–' : fmt(r.loudDropped / seconds),
    r.loud === 0 ? '–' : fmt(r.carried),
  ];
});
table(['deployment', 'floods', 'quiet rows', 'quiet p50', 'quiet p99', 'quiet max', 'p99 / alone', 'loud delivered lines/s', 'loud dropped lines/s', 'carried lines/s'], rowsOut);
const failed = results.filter((r) => r.quietRows !== r.quietExpected);
if (failed.length > 0) {
  process.stderr.write(`the quiet tenant lost lines in ${failed.length} phase(s)\n`);
  process.exitCode = 1;
}
