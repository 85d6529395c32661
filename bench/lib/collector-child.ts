/**
 * One collector measurement in a process of its own (forked by bench/collector.ts), so
 * its CPU time, peak RSS and profile are the collector's alone: not the benchmark's
 * line generator, not an earlier round's garbage, not the baselines.
 *
 * Protocol over the IPC channel: the child connects its Kafka producer, sends `ready`;
 * on `go` it starts a fresh collector (empty state dir: every line from the start),
 * sends `started`, waits until Kafka acknowledged `total` lines, sends `done` with its
 * figures, stops the collector and exits.
 *
 * With `mode: 'producer'` the child measures the collector's Kafka path alone: the same
 * Sender and EventBus (kafkajs) with the collector's batching, fed `total` log events
 * that were Avro-encoded before the clock starts — no Docker, no parsing, no encoding.
 * The collector cannot go faster than this.
 */
import { performance } from 'node:perf_hooks';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { busFor } from '../../lib/runtime.js';
import { createRegistry } from '../../lib/metrics.js';
import { loadConfig } from '../../app/config.js';
import { createLogger } from '../../lib/logger.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector } from '../../ingest/collector.js';
import { Sender } from '../../ingest/sender.js';
import type { LogLine } from '../../schemas/events.js';
import { makeLine, prng } from './lines.js';
import { docker } from './containers.js';
import { procRss } from './common.js';
import { applyHeapSettings } from '../../lib/heap-limits.js';
import { gzipTotals } from '../../lib/bus/kafkajs-gzip.js';
import { snappyTotals } from '../../lib/bus/kafkajs-snappy.js';

export interface ChildParams {
  topicPrefix: string;
  labelPrefix: string;
  stateDir: string;
  total: number;
  timeoutMs: number;
  mode?: 'collector' | 'producer';
  /** Producer mode: the printed line size (newline included) and the containers (keys). */
  lineBytes?: number;
  containers?: number;
  /** The collector command's heap setting (lib/heap-limits.ts); unset = V8's defaults. */
  heapGrowingPercent?: number;
  /** The logs topic's lines packed into shared records (`collector.packLogs`, lib/bus/pack.ts); default the collector's default (on). */
  pack?: boolean;
}

export type ChildMessage =
  | { type: 'ready'; rss: number; anon: number }
  | { type: 'started' }
  | { type: 'done'; seconds: number; produced: number; dropped: number; cpuSeconds: number; peakRss: number; peakAnon: number; heapUsed: number; peakBuffered: number; kafkaErrors: number; gzip: Gzipped }
  | { type: 'error'; message: string };

/** What the producer's gzip took in and gave out over the measurement (lib/bus/kafkajs-gzip.ts). */
export interface Gzipped {
  batches: number;
  bytesIn: number;
  bytesOut: number;
}
/** Bytes through the producer's compressor so far, gzip or snappy (whichever LOGMETER_KAFKA_COMPRESSION chose). */
const codecTotals = (): Gzipped => ({ batches: gzipTotals.batches + snappyTotals.batches, bytesIn: gzipTotals.bytesIn + snappyTotals.bytesIn, bytesOut: gzipTotals.bytesOut + snappyTotals.bytesOut });
const compressedSince = (t0: Gzipped): Gzipped => {
  const now = codecTotals();
  return { batches: now.batches - t0.batches, bytesIn: now.bytesIn - t0.bytesIn, bytesOut: now.bytesOut - t0.bytesOut };
};

const send = (m: ChildMessage) => new Promise<void>((r) => process.send!(m, () => r()));

async function main(): Promise<void> {
  const p = JSON.parse(process.env.BENCH_COLLECTOR_CHILD ?? '') as ChildParams;
  // As `logmeter collector` does first (cli/collector.ts); bench/collector.ts --heap-ab sets it for one of two runs.
  if (p.heapGrowingPercent) applyHeapSettings({ heapGrowingPercent: p.heapGrowingPercent });
  const config = loadConfig({ env: { ...process.env, LOGMETER_TOPIC_PREFIX: p.topicPrefix, LOGMETER_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn', LOGMETER_DATA_DIR: p.stateDir } });
  const logger = createLogger(config.log.level, 2);
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = busFor(config, codec, logger);
  // Connect the producer before anything is timed.
  await bus.publishRaw(bus.topic('logs'), [{ key: 'warm-up', value: Buffer.from('warm-up') }]);
  const cfg = collectorConfigSchema.parse({
    labelPrefix: p.labelPrefix,
    statsIntervalSeconds: 3600,
    // The per-tenant limit is a policy, not a throughput: lifted for this measurement.
    rateLimit: { linesPerSecond: 1e12, bytesPerSecond: 1e15, burstSeconds: 2, tenants: {} },
    // Exploration: other collector settings as JSON, e.g. BENCH_COLLECTOR_SETTINGS='{"batchBytes":1048576}'.
    ...(JSON.parse(process.env.BENCH_COLLECTOR_SETTINGS ?? '{}') as Record<string, unknown>),
    ...(p.pack === undefined ? {} : { packLogs: p.pack }),
  });
  if (p.mode === 'producer') return produceOnly(p, cfg, bus, codec, logger);
  const registry = createRegistry(false);
  const collector = createCollector({ cfg, node: 'bench', stateDir: p.stateDir, docker, bus, codec, logger, registry });
  const go = new Promise<void>((resolve) => process.once('message', () => resolve()));
  const idle = procRss();
  await send({ type: 'ready', rss: idle.rss, anon: idle.anon });
  await go;

  let peakAnon = idle.anon;
  const sampler = setInterval(() => (peakAnon = Math.max(peakAnon, procRss().anon)), 50);
  const gzip0 = codecTotals();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await collector.start();
  await send({ type: 'started' });
  const end = Date.now() + p.timeoutMs;
  let s = await collector.summary();
  while (s.linesProduced + s.linesDropped < p.total) {
    if (Date.now() > end) throw new Error(`timed out: ${s.linesProduced} of ${p.total} lines produced`);
    await new Promise((r) => setTimeout(r, 20));
    s = await collector.summary();
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const gzip = compressedSince(gzip0);
  clearInterval(sampler);
  const last = procRss();
  await send({
    type: 'done',
    seconds,
    produced: s.linesProduced,
    dropped: s.linesDropped,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRss: last.peak,
    peakAnon: Math.max(peakAnon, last.anon),
    heapUsed: process.memoryUsage().heapUsed,
    peakBuffered: collector.sender.peakBuffered,
    kafkaErrors: ((await registry.getSingleMetric('logmeter_collector_kafka_errors_total')?.get())?.values ?? []).reduce((a, v) => a + v.value, 0),
    gzip,
  });
  await collector.stop();
  await bus.close();
}

async function produceOnly(p: ChildParams, cfg: ReturnType<typeof collectorConfigSchema.parse>, bus: ReturnType<typeof busFor>, codec: AvroCodec, logger: ReturnType<typeof createLogger>): Promise<void> {
  const containers = p.containers ?? 1;
  const rnd = prng(42);
  const payloads: { key: string; value: Buffer }[] = [];
  for (let i = 0; i < p.total; i++) {
    const c = i % containers;
    const line = Buffer.from(makeLine(i, p.lineBytes ?? 120, rnd), 'latin1');
    const ev: LogLine = {
      event_id: `${c}-${i}`.padStart(32, '0'),
      tenant: 'bench',
      app: 'bench',
      node: 'bench',
      container_id: `${c}`.padStart(64, 'c'),
      container_name: `bench-${c}`,
      ts: Date.now(),
      ts_nanos: 0,
      seq: 0,
      stream: 'stdout',
      tty: false,
      line,
      original_length: line.length,
      truncated: false,
      invalid_utf8: false,
      log_format: null,
    };
    payloads.push({ key: ev.container_id, value: codec.encode('logs', ev) });
  }
  let acked = 0;
  // As the collector's sender does (ingest/collector.ts): the logs topic packed when `packLogs`.
  const sender = new Sender((batches) => bus.publishRawBatch(cfg.packLogs ? batches.map((b) => ({ ...b, pack: true })) : batches), { batchBytes: cfg.batchBytes, lingerMs: cfg.lingerMs, maxBufferedBytes: cfg.maxBufferedBytes }, logger);
  const target = { produced: () => void acked++ };
  const idle = procRss();
  await send({ type: 'ready', rss: idle.rss, anon: idle.anon });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  const gzip0 = codecTotals();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await send({ type: 'started' });
  const topic = bus.topic('logs');
  for (let i = 0; i < payloads.length; i++) {
    sender.enqueue({ topic, key: payloads[i]!.key, value: payloads[i]!.value, ackTarget: target, n: i });
    if (sender.full) await sender.capacity();
  }
  await sender.flush();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const last = procRss();
  await send({ type: 'done', seconds, produced: acked, dropped: 0, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRss: last.peak, peakAnon: last.anon, heapUsed: process.memoryUsage().heapUsed, peakBuffered: sender.peakBuffered, kafkaErrors: 0, gzip: compressedSince(gzip0) });
  await sender.close();
  await bus.close();
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    await send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  },
);
