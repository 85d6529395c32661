/**
 * Collector throughput: container stdout → Kafka-acknowledged, through the real
 * collector (`createCollector`, in a node process of its own so that its CPU time and
 * RSS are not mixed with the benchmark's), against what the same machine can do
 * without it in the same run.
 *
 *   node --import tsx bench/collector.ts [--rounds 3] [--containers 2] [--line-bytes 120,1024]
 *        [--lines N (per container; default 200000 for lines ≤ 200 B, 50000 above)]
 *        [--log-driver json-file|local] [--only collector|producer|docker|kcat, comma-separated; `collector$` = that method alone]
 *        [--profile-dir DIR (a V8 CPU profile of each collector run; read it with bench/profile-top.ts)]
        [--heap-ab [--heap-growing-percent P]] [--child-flags 'VARIANT;VARIANT…']
 *
 * Method: N containers each `cat` the same pre-generated file of fixed-size lines and
 * then sleep. They print FIRST; only when every container has printed everything (and
 * dockerd has written it to its log file) does the measurement start, so the figure is
 * the reading side, not busybox's printing speed. Each round then measures, in rotating
 * order, on the same containers:
 *   - collector: a fresh collector process (lib/collector-child.ts; its producer is
 *     connected first, then `createCollector` with an empty state dir, so it reads every
 *     line from the start) until `summary().linesProduced` (lines Kafka acknowledged)
 *     reaches the total;
 *   - producer: the collector's Kafka path alone (same child, `mode: 'producer'`): the
 *     same Sender and kafkajs producer fed the same number of log events, Avro-encoded
 *     before the clock starts — the ceiling the collector's Kafka client sets;
 *   - collector / producer unpacked: the same two with `collector.packLogs` off (one Kafka
 *     record per line, as before packed records; lib/bus/pack.ts), in the same rotation;
 *   - docker API (dockerode): `container.logs({follow:false, timestamps:true})` for all
 *     containers at once, newlines counted — dockerode buffers the whole body;
 *   - docker API (stream): the same request read as a stream over the socket — the
 *     ceiling for any collector that reads through the Docker API;
 *   - kcat: `kcat -P -z CODEC -X acks=all -X enable.idempotence=true -l FILE` (CODEC: the
 *     config's `kafka.compression`, snappy by default) producing the
 *     same lines (same count, same bytes) to the same broker — a C producer's ceiling.
 * The per-tenant rate limit is lifted for the run (it is a policy, not a throughput).
 *
 * `--heap-ab`: one more method, `collector+heap`: the same collector child with the heap
 * setting `logmeter collector` applies (lib/heap-limits.ts; `--heap-growing-percent`, default
 * the config's default), rotated with the others in each round, so its CPU per line is
 * compared with the plain collector's (V8's own heap growing) in the same run.
 *
 * `--child-flags 'A;B'` (write it `--child-flags=…` when it starts with `--`): variants of
 * the collector child, each a space-separated list of node flags (`--single-threaded-gc`,
 * `--max-semi-space-size=16`) and environment settings (`LOGMETER_KAFKA_COMPRESSION_LEVEL=1`).
 * Each adds the methods `collector@N` and `producer@N` (N from 1, in the order given; packed
 * records), rotated with the others, and the report gives each round's CPU per line against
 * the plain `collector` / `producer` of the same round, the peak RSS and the gzip bytes per line.
 */
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { dockerOptions } from '../lib/docker.js';
import type { EventBus } from '../lib/bus/bus.js';
import type { ChildMessage, ChildParams, Gzipped } from './lib/collector-child.js';
import { MB, MiB, benchNamespace, cpuWindow, flags, fmt, header, median, onInterrupt, out, ratio, table, tempDir } from './lib/common.js';
import { docker, removeRunContainers, startContainers, waitPrinted } from './lib/containers.js';
import { writeLinesFile } from './lib/lines.js';
import { COLLECTOR_DEFAULTS } from '../ingest/config.js';

const f = flags(['rounds', 'containers', 'lines', 'line-bytes', 'log-driver', 'only', 'profile-dir', 'heap-growing-percent', 'child-flags'], ['heap-ab']);
if (f.bool('help')) {
  out('node --import tsx bench/collector.ts [--rounds 3] [--containers 2] [--line-bytes 120,1024] [--lines N] [--log-driver json-file|local] [--only collector|producer|docker|kcat]');
  process.exit(0);
}
const rounds = f.num('rounds', 3);
const containers = f.num('containers', 2);
const sizes = f.list('line-bytes', [120, 1024]);
const logDriver = f.str('log-driver', '') as '' | 'json-file' | 'local';
/** Methods whose names start with one of these (comma-separated), e.g. `collector,producer`; one ending in `$` is a whole name (`collector$`). */
const only = f.str('only', '').split(',').filter((o) => o !== '');
const chosen = (m: string) => only.length === 0 || only.some((o) => (o.endsWith('$') ? m === o.slice(0, -1) : m.startsWith(o)));
/** Writes a V8 CPU profile of each collector child here (`node --cpu-prof`). */
const profileDir = f.str('profile-dir', '');
const linesFor = (bytes: number) => f.num('lines', bytes <= 200 ? 200_000 : 50_000);

/** A variant of the collector child (`--child-flags`): node flags and environment settings. */
interface Variant {
  spec: string;
  execArgv: string[];
  env: Record<string, string>;
}
const variants: Variant[] = f
  .str('child-flags', '')
  .split(';')
  .map((v) => v.trim())
  .filter((v) => v !== '')
  .map((spec) => {
    const execArgv: string[] = [];
    const env: Record<string, string> = {};
    for (const word of spec.split(/\s+/)) {
      const kv = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(word);
      if (word.startsWith('--')) execArgv.push(word);
      else if (kv) env[kv[1]!] = kv[2]!;
      else throw new Error(`--child-flags: "${word}" is neither a node flag (--…) nor NAME=value`);
    }
    return { spec, execArgv, env };
  });
type VariantMethod = `collector@${number}` | `producer@${number}`;
type Method = 'collector' | 'collector+heap' | 'collector-unpacked' | 'producer' | 'producer-unpacked' | 'docker-dockerode' | 'docker-stream' | 'kcat' | VariantMethod;
const heapGrowingPercent = f.num('heap-growing-percent', COLLECTOR_DEFAULTS.heapGrowingPercent);
const variantMethods: VariantMethod[] = variants.flatMap((_, i) => [`collector@${i + 1}`, `producer@${i + 1}`] as const);
const METHODS: Method[] = (['collector', ...(f.bool('heap-ab') ? (['collector+heap'] as const) : []), 'producer', ...variantMethods, 'collector-unpacked', 'producer-unpacked', 'docker-dockerode', 'docker-stream', 'kcat'] as const).filter(chosen);
/** The variant of a `collector@N` / `producer@N` method. */
const variantOf = (m: Method): { kind: 'collector' | 'producer'; variant: Variant } | undefined => {
  const v = /^(collector|producer)@(\d+)$/.exec(m);
  return v ? { kind: v[1] as 'collector' | 'producer', variant: variants[Number(v[2]) - 1]! } : undefined;
};

interface Sample {
  seconds: number;
  lines: number;
  /** CPU seconds of this process, dockerd and the broker over the window. */
  cpu: { self: number; dockerd: number; kafka: number };
  peakRss?: number;
  peakAnon?: number;
  idleRss?: number;
  idleAnon?: number;
  /** Most encoded bytes the collector held for Kafka (its bound is maxBufferedBytes, 64 MiB by default). */
  peakBuffered?: number;
  dropped?: number;
  /** Failed Kafka sends the collector retried: > 0 means the broker was disturbed during the round. */
  kafkaErrors?: number;
  /** Kafka records the run added to the logs topic (packed: several lines per record). */
  records?: number;
  /** What the producer's gzip took in and gave out (lib/bus/kafkajs-gzip.ts). */
  gzip?: Gzipped;
}

const ns = benchNamespace('col');
const brokers = ns.config.kafka.brokers;
const codec = await AvroCodec.create(new ManifestSource());
const bus: EventBus = busFor(ns.config, codec, ns.logger);
const tmp = tempDir('logmeter-bench-lines-');
const cleanup = async () => {
  await removeRunContainers(ns.id);
  await bus.close();
  rmSync(tmp, { recursive: true, force: true });
  ns.cleanup();
};
onInterrupt(cleanup);

header('collector throughput: container stdout → Kafka acknowledged', { rounds, containers, 'line-bytes': sizes, lines: sizes.map(linesFor), 'log-driver': logDriver || 'daemon default', methods: METHODS });

await bus.ensureTopics(['logs', 'lifecycle', 'stats']);
// kcat's own topic, made like logmeter's logs topic (same partitions) by a bus with its own prefix.
const kcatTopic = `${ns.topicPrefix}kcat.logs`;
await busFor({ ...ns.config, kafka: { ...ns.config.kafka, topicPrefix: `${ns.topicPrefix}kcat.` } }, codec, ns.logger).ensureTopics(['logs']);

const socketPath = dockerOptions(process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').socketPath ?? '/var/run/docker.sock';

/** GET /containers/{id}/logs read as a stream, counting newlines: the Docker API's own rate. */
function streamLogs(id: string): Promise<{ bytes: number; newlines: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath, path: `/containers/${id}/logs?stdout=1&stderr=1&timestamps=1&follow=0` }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`docker logs ${id}: HTTP ${res.statusCode}`));
      let bytes = 0;
      let newlines = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) newlines++;
      });
      res.on('end', () => resolve({ bytes, newlines }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

function countNewlines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) n++;
  return n;
}

async function highWatermarks(topic: string): Promise<number> {
  const offsets = await bus.endOffsets(topic);
  return offsets.reduce((s, o) => s + Number(o.high), 0);
}

function runKcat(file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('kcat', ['-b', brokers.join(','), '-t', kcatTopic, '-P', '-z', ns.config.kafka.compression, '-X', 'acks=all', '-X', 'enable.idempotence=true', '-l', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`kcat exited ${code}: ${stderr.slice(0, 500)}`));
      resolve((performance.now() - t0) / 1000);
    });
  });
}

async function measure(method: Method, ids: string[], total: number, labelPrefix: string, kcatFile: string, lineBytes: number): Promise<Sample> {
  switch (method) {
    case 'docker-dockerode': {
      const w = cpuWindow();
      const t0 = performance.now();
      const bodies = await Promise.all(ids.map((id) => docker.getContainer(id).logs({ follow: false, stdout: true, stderr: true, timestamps: true })));
      const lines = bodies.reduce((s, b) => s + countNewlines(b), 0);
      return { seconds: (performance.now() - t0) / 1000, lines, cpu: w.end() };
    }
    case 'docker-stream': {
      const w = cpuWindow();
      const t0 = performance.now();
      const res = await Promise.all(ids.map(streamLogs));
      return { seconds: (performance.now() - t0) / 1000, lines: res.reduce((s, r) => s + r.newlines, 0), cpu: w.end() };
    }
    case 'kcat': {
      const before = await highWatermarks(kcatTopic);
      const w = cpuWindow();
      const seconds = await runKcat(kcatFile);
      const cpu = w.end();
      const lines = (await highWatermarks(kcatTopic)) - before;
      return { seconds, lines, cpu };
    }
    case 'collector':
      return measureCollector(total, labelPrefix, { pack: true });
    case 'collector+heap':
      return measureCollector(total, labelPrefix, { pack: true, heapGrowingPercent });
    case 'collector-unpacked':
      return measureCollector(total, labelPrefix, { pack: false });
    case 'producer':
      return measureCollector(total, labelPrefix, { mode: 'producer', lineBytes, containers, pack: true });
    case 'producer-unpacked':
      return measureCollector(total, labelPrefix, { mode: 'producer', lineBytes, containers, pack: false });
    default: {
      const v = variantOf(method);
      if (!v) throw new Error(`unknown method ${method}`);
      const params: Partial<ChildParams> = v.kind === 'producer' ? { mode: 'producer', lineBytes, containers, pack: true } : { pack: true };
      return measureCollector(total, labelPrefix, params, v.variant);
    }
  }
}

/** A fresh collector in a child process (see lib/collector-child.ts): CPU and RSS are its own. */
async function measureCollector(total: number, labelPrefix: string, extra: Partial<ChildParams> = {}, variant?: Variant): Promise<Sample> {
  const stateDir = mkdtempSync(path.join(tmp, 'state-'));
  const params: ChildParams = { topicPrefix: ns.topicPrefix, labelPrefix, stateDir, total, timeoutMs: Math.max(600_000, (total / 1000) * 1000), ...extra };
  const execArgv = [...(variant?.execArgv ?? []), '--import', 'tsx', ...(profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir] : [])];
  const child = fork(fileURLToPath(new URL('./lib/collector-child.ts', import.meta.url)), [], {
    execArgv,
    env: { ...process.env, ...variant?.env, BENCH_COLLECTOR_CHILD: JSON.stringify(params) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const messages: ChildMessage[] = [];
  let wake: (() => void) | undefined;
  child.on('message', (m: ChildMessage) => {
    messages.push(m);
    wake?.();
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const next = async (type: ChildMessage['type']): Promise<ChildMessage> => {
    for (;;) {
      const m = messages.shift();
      if (m?.type === 'error') throw new Error(`collector child: ${m.message}`);
      if (m?.type === type) return m;
      if (m) continue;
      const code = await Promise.race([new Promise<undefined>((r) => (wake = () => r(undefined))), exited]);
      if (code !== undefined && messages.length === 0) throw new Error(`collector child exited (${code}) before ${type}`);
    }
  };
  try {
    const ready = await next('ready');
    const recordsBefore = await highWatermarks(bus.topic('logs'));
    child.send('go');
    await next('started');
    const w = cpuWindow();
    const done = await next('done');
    const cpu = w.end();
    await exited;
    if (done.type !== 'done' || ready.type !== 'ready') throw new Error('unexpected message');
    const records = (await highWatermarks(bus.topic('logs'))) - recordsBefore;
    return { records, seconds: done.seconds, lines: done.produced, cpu: { ...cpu, self: done.cpuSeconds }, peakRss: done.peakRss, peakAnon: done.peakAnon, idleRss: ready.rss, idleAnon: ready.anon, dropped: done.dropped, peakBuffered: done.peakBuffered, kafkaErrors: done.kafkaErrors, gzip: done.gzip };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
  }
}

interface Result {
  bytes: number;
  method: Method;
  samples: Sample[];
}
const results: Result[] = [];

try {
  for (const bytes of sizes) {
    const lines = linesFor(bytes);
    const total = lines * containers;
    const linesFile = path.join(tmp, `lines-${bytes}.txt`);
    const kcatFile = path.join(tmp, `kcat-${bytes}.txt`);
    writeLinesFile(linesFile, lines, bytes);
    writeLinesFile(kcatFile, lines, bytes, containers);
    const labelPrefix = `${ns.labelPrefix}${bytes}.`;
    const t0 = performance.now();
    const started = await startContainers(
      Array.from({ length: containers }, (_, i) => ({
        runId: ns.id,
        labelPrefix,
        tenant: `tenant${i}`,
        app: 'bench',
        script: 'cat /bench/lines.txt; exec sleep 3600',
        binds: [`${linesFile}:/bench/lines.txt:ro`],
        ...(logDriver ? { logDriver } : {}),
      })),
    );
    const logBytes = await Promise.all(started.map((c) => waitPrinted(c)));
    process.stderr.write(`${bytes} B: ${containers} containers printed ${fmt(total)} lines in ${((performance.now() - t0) / 1000).toFixed(1)} s (log files ${fmt(logBytes.reduce((a, b) => a + b, 0) / MiB, 1)} MiB)\n`);
    const ids = started.map((c) => c.id);
    const byMethod = new Map<Method, Sample[]>(METHODS.map((m) => [m, []]));
    for (let r = 0; r < rounds; r++) {
      const order = METHODS.map((_, i) => METHODS[(i + r) % METHODS.length]!);
      for (const m of order) {
        const s = await measure(m, ids, total, labelPrefix, kcatFile, bytes);
        if (s.lines !== total) throw new Error(`${m}: ${s.lines} lines, expected ${total}`);
        byMethod.get(m)!.push(s);
        process.stderr.write(`  round ${r + 1} ${m}: ${fmt(s.lines / s.seconds)} lines/s (${s.seconds.toFixed(2)} s), ${fmt((s.cpu.self / s.lines) * 1e6, 2)} µs CPU/line${s.peakRss ? `, peak RSS ${fmt(s.peakRss / MiB)} MiB` : ''}${s.records !== undefined ? `, ${fmt(s.records)} Kafka records` : ''}${s.kafkaErrors ? `, ${s.kafkaErrors} Kafka send errors: the broker was disturbed` : ''}\n`);
      }
    }
    for (const m of METHODS) results.push({ bytes, method: m, samples: byMethod.get(m)! });
    await removeRunContainers(ns.id);
  }
} finally {
  await cleanup();
}

const LABEL: Record<Exclude<Method, VariantMethod>, string> = {
  collector: 'collector (createCollector → Kafka acked), logs packed',
  'collector-unpacked': 'collector, one Kafka record per line (packLogs off)',
  'producer-unpacked': "baseline: the collector's Kafka path alone, one record per line",
  'docker-dockerode': 'baseline: Docker logs API, dockerode follow:false',
  'docker-stream': 'baseline: Docker logs API, streamed (ceiling)',
  kcat: 'baseline: kcat -P gzip acks=all idempotent',
  producer: "baseline: the collector's Kafka path alone (Sender + kafkajs, events encoded beforehand), packed",
  'collector+heap': `collector with --heap-growing-percent=${heapGrowingPercent} (as \`logmeter collector\`)`,
};
const label = (m: Method): string => {
  const v = variantOf(m);
  return v ? `${v.kind === 'collector' ? 'collector, logs packed' : 'Kafka path alone, packed'}, with ${v.variant.spec}` : LABEL[m as Exclude<Method, VariantMethod>];
};
const rows: string[][] = [];
const gzipRows: string[][] = [];
for (const bytes of sizes) {
  const col = results.find((r) => r.bytes === bytes && r.method === 'collector');
  const colRate = col ? median(col.samples.map((s) => s.lines / s.seconds)) : NaN;
  for (const r of results.filter((x) => x.bytes === bytes)) {
    const rate = median(r.samples.map((s) => s.lines / s.seconds));
    const mbs = median(r.samples.map((s) => (s.lines * bytes) / s.seconds / MB));
    const selfCpu = median(r.samples.map((s) => (s.cpu.self / s.lines) * 1e6));
    const dockerd = median(r.samples.map((s) => s.cpu.dockerd / s.seconds));
    const kafka = median(r.samples.map((s) => s.cpu.kafka / s.seconds));
    const perCore = median(r.samples.map((s) => s.lines / s.cpu.self));
    const isCol = r.method.startsWith('collector') || r.method.startsWith('producer');
    const gz = r.samples.filter((s) => s.gzip && s.gzip.bytesOut > 0);
    if (gz.length > 0) gzipRows.push([`${bytes} B`, label(r.method), fmt(median(gz.map((s) => s.gzip!.bytesOut / s.lines)), 2), fmt(median(gz.map((s) => s.gzip!.bytesIn / s.lines)), 2), fmt(median(gz.map((s) => s.gzip!.bytesOut / s.gzip!.bytesIn)), 4)]);
    rows.push([
      `${bytes} B`,
      label(r.method),
      fmt(rate),
      fmt(mbs, 1),
      isCol ? fmt(selfCpu, 2) : '–',
      isCol ? fmt(perCore) : '–',
      isCol ? `${fmt(median(r.samples.map((s) => s.peakRss ?? NaN)) / MiB)} (${fmt(median(r.samples.map((s) => s.peakAnon ?? NaN)) / MiB)})` : '–',
      fmt(dockerd, 2),
      fmt(kafka, 2),
      r.method === 'collector' ? '100 %' : ratio(colRate, rate),
    ]);
  }
}
out(`median of ${rounds} round(s); ${containers} containers; lines/s and MB/s count the printed lines (newline included) over the wall time of each method`);
table(['line', 'what', 'lines/s', 'MB/s', 'CPU s / M lines', 'lines / CPU s', 'peak RSS (anon) MiB', 'dockerd cores', 'kafka cores', 'collector / this'], rows);
if (gzipRows.length > 0) table(['line', 'what', 'compressed bytes out / line (gzip or snappy)', 'bytes in / line', 'out / in'], gzipRows);
// Packed against unpacked, in the same run and rotation: CPU per line and lines/s.
for (const bytes of sizes) {
  for (const [packed, unpacked] of [['collector', 'collector-unpacked'], ['producer', 'producer-unpacked']] as const) {
    const a = results.find((r) => r.bytes === bytes && r.method === packed);
    const b = results.find((r) => r.bytes === bytes && r.method === unpacked);
    if (!a || !b) continue;
    const cpu = (x: Result) => median(x.samples.map((s) => (s.cpu.self / s.lines) * 1e6));
    const rate = (x: Result) => median(x.samples.map((s) => s.lines / s.seconds));
    const perRecord = (x: Result) => fmt(median(x.samples.map((s) => s.lines / (s.records ?? NaN))), 1);
    out(`${bytes} B ${packed}: packed ${fmt(cpu(a), 2)} CPU µs/line, ${fmt(rate(a))} lines/s, ${perRecord(a)} lines per Kafka record; unpacked ${fmt(cpu(b), 2)} µs/line, ${fmt(rate(b))} lines/s; CPU packed/unpacked ${ratio(cpu(a), cpu(b))}, lines/s packed/unpacked ${ratio(rate(a), rate(b))}`);
  }
}
const cols = results.filter((r) => r.method === 'collector');
if (cols.length > 0) {
  out('collector detail per round (lines/s): ' + cols.map((r) => `${r.bytes} B: ${r.samples.map((s) => fmt(s.lines / s.seconds)).join(', ')}`).join(' · '));
  out('collector process RSS (anon) before start, producer connected (MiB): ' + cols.map((r) => `${r.bytes} B: ${fmt(median(r.samples.map((s) => s.idleRss ?? NaN)) / MiB)} (${fmt(median(r.samples.map((s) => s.idleAnon ?? NaN)) / MiB)})`).join(' · '));
  out('RSS includes file-backed pages (code, mapped libraries); anon = RssAnon, what the process allocated itself');
  out('collector peak of encoded bytes held for Kafka, sender.peakBuffered (MiB; bound maxBufferedBytes = 64 MiB): ' + cols.map((r) => `${r.bytes} B: ${fmt(median(r.samples.map((s) => s.peakBuffered ?? NaN)) / MiB)}`).join(' · '));
  out('dropped lines: ' + cols.map((r) => `${r.bytes} B: ${r.samples.reduce((a, s) => a + (s.dropped ?? 0), 0)}`).join(' · ') + ' · Kafka send errors (retried; > 0 = broker disturbed): ' + cols.map((r) => `${r.bytes} B: ${r.samples.reduce((a, s) => a + (s.kafkaErrors ?? 0), 0)}`).join(' · '));
}
const heapRuns = results.filter((r) => r.method === 'collector+heap');
for (const h of heapRuns) {
  const plain = results.find((r) => r.bytes === h.bytes && r.method === 'collector')!;
  const perLine = (s: Sample) => (s.cpu.self / s.lines) * 1e6;
  const ratios = h.samples.map((s, i) => perLine(s) / perLine(plain.samples[i]!));
  out(
    `heap setting A/B, ${h.bytes} B: CPU µs/line with / without --heap-growing-percent=${heapGrowingPercent}, per round: ${ratios.map((x) => x.toFixed(3)).join(', ')} (median ${median(ratios).toFixed(3)}); ` +
      `µs/line ${fmt(median(h.samples.map(perLine)), 2)} vs ${fmt(median(plain.samples.map(perLine)), 2)}; peak RSS MiB ${fmt(median(h.samples.map((s) => s.peakRss ?? NaN)) / MiB)} vs ${fmt(median(plain.samples.map((s) => s.peakRss ?? NaN)) / MiB)}`,
  );
}
for (const bytes of sizes) {
  for (const m of variantMethods) {
    const v = results.find((r) => r.bytes === bytes && r.method === m);
    const base = results.find((r) => r.bytes === bytes && r.method === variantOf(m)!.kind);
    if (!v || !base) continue;
    const perLine = (s: Sample) => (s.cpu.self / s.lines) * 1e6;
    const ratios = v.samples.map((s, i) => perLine(s) / perLine(base.samples[i]!));
    const rss = (x: Result) => fmt(median(x.samples.map((s) => s.peakRss ?? NaN)) / MiB);
    out(
      `${m} (${variantOf(m)!.variant.spec}) against ${base.method}, ${bytes} B: CPU µs/line per round ${ratios.map((x) => x.toFixed(3)).join(', ')} (median ${median(ratios).toFixed(3)}); ` +
        `µs/line ${fmt(median(v.samples.map(perLine)), 2)} vs ${fmt(median(base.samples.map(perLine)), 2)}; peak RSS MiB ${rss(v)} vs ${rss(base)}`,
    );
  }
}
out('target (DESIGN.md): ≥ 100k lines/s per core for ≈120 B lines, and ≥ 90 % of the raw Docker logs API read rate');
