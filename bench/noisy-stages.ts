/**
 * Where a quiet tenant's delay goes next to a flood (issue 20): the load of
 * bench/noisy-neighbor.ts (bench/lib/noisy.ts), the collector and the log sink in this
 * process as `logmeter up` runs them (bench/lib/collector-here.ts), every quiet line timed
 * at each stage it passes:
 *
 *   Docker ts → collector read → Kafka ack → sink handler → insert done
 *
 * - Docker ts: the line's Docker timestamp (the event's `ts`).
 * - collector read: the chunk of the Docker logs stream holding the line reached the
 *   collector (its Docker client, seen through a Proxy).
 * - Kafka ack: the collector's request holding the line was acknowledged (bench/lib/tap.ts).
 * - sink handler: the log sink's `logs` handler got the batch holding it (tap.ts).
 * - insert done: the sink's insert holding it into `logs` resolved (its ClickHouse, wrapped).
 *
 * The product code runs unchanged; only its Docker client, bus and ClickHouse are seen
 * through wrappers. Default settings (node budget, per-tenant limits, sink batching).
 * Wall-clock times of one host: every stage is a difference of two `Date.now()`-like
 * readings, the first against Docker's clock (the same host).
 *
 *   node --import tsx bench/noisy-stages.ts [--seconds 20] [--loud 0,1] [--loud-rate 1500] [--line-bytes 120]
 */
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
import { collectorConfigSchema } from '../ingest/config.js';
import type { LogLine } from '../schemas/events.js';
import { benchNamespace, flags, fmt, header, nowMs, onInterrupt, out, percentileSorted, sleep, table, tempDir } from './lib/common.js';
import { docker, removeRunContainers, startContainers } from './lib/containers.js';
import { noisyLoad } from './lib/noisy.js';
import { startCollectorHere } from './lib/collector-here.js';
import { tapBus } from './lib/tap.js';
import { encodedText, tapInserts } from '../test/helpers/clickhouse-tap.js';

const f = flags(['seconds', 'loud', 'loud-rate', 'line-bytes']);
if (f.bool('help')) {
  out('node --import tsx bench/noisy-stages.ts [--seconds 20] [--loud 0,1] [--loud-rate 1500] [--line-bytes 120]');
  process.exit(0);
}
const seconds = f.num('seconds', 20);
const louds = f.list('loud', [0, 1]);
const defaults = collectorConfigSchema.parse({});
const loudRate = f.num('loud-rate', defaults.rateLimit.linesPerSecond);
const lineBytes = f.num('line-bytes', 120);

const STAGES = ['read', 'ack', 'handler', 'insert'] as const;
type Stage = (typeof STAGES)[number];
/** Per quiet line number: its Docker timestamp and when it passed each stage (epoch ms). */
type Times = Map<number, { ts?: number } & Partial<Record<Stage, number>>>;

/** What the wrappers look for: the current phase's quiet text and where its times go. */
let current: { text: string; re: RegExp; times: Times } | undefined;
const note = (stage: Stage, n: number, at: number) => {
  const t = current!.times.get(n) ?? {};
  t[stage] ??= at;
  current!.times.set(n, t);
};
/** Every quiet line number in `text` (latin1 of a chunk, a Kafka value or an insert body). */
const quietNumbers = (text: string): number[] => (current ? [...text.matchAll(current.re)].map((m) => Number(m[1])) : []);

/** The Docker client, with every logs stream's chunks seen as they reach the collector. */
const seenDocker = new Proxy(docker, {
  get(target, prop, receiver) {
    if (prop === 'getContainer') {
      return (id: string) =>
        new Proxy(target.getContainer(id), {
          get(c, p, r) {
            if (p === 'logs') {
              return async (opts: object) => {
                const stream = (await (c.logs as (o: object) => Promise<unknown>)(opts)) as NodeJS.ReadableStream & { destroy(): void };
                return {
                  destroy: () => stream.destroy(),
                  async *[Symbol.asyncIterator]() {
                    for await (const chunk of stream as AsyncIterable<Buffer>) {
                      if (current && chunk.includes(current.text)) for (const n of quietNumbers(chunk.toString('latin1'))) note('read', n, nowMs());
                      yield chunk;
                    }
                  },
                };
              };
            }
            const v: unknown = Reflect.get(c, p, r);
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(c) : v;
          },
        });
    }
    const v: unknown = Reflect.get(target, prop, receiver);
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});

const ns = benchNamespace('stages');
const tmp = tempDir('logmeter-bench-stages-');
const codec = await AvroCodec.create(new ManifestSource());
const realBus = busFor(ns.config, codec, ns.logger);
const GROUP = 'bench-stages';
const bus = tapBus(realBus, {
  rawBatch: (batches, _sent, acked) => {
    if (!current) return;
    for (const b of batches) for (const m of b.messages) if (m.value?.includes(current.text)) for (const n of quietNumbers(m.value.toString('latin1'))) note('ack', n, acked);
  },
  handled: (group, batch, at) => {
    if (!current || group !== `${GROUP}.logs`) return;
    for (const m of batch) {
      const e = m.event as LogLine;
      if (!e.line.includes(current.text)) continue;
      for (const n of quietNumbers(e.line.toString('latin1'))) {
        note('handler', n, at);
        current.times.get(n)!.ts = e.ts;
      }
    }
  },
});
const ch = openClickHouse({ database: ns.database, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
/** The sink's ClickHouse: every insert into `logs` timed for the quiet lines in it. */
const sinkCh: ClickHouse = tapInserts(ch, {
  insertEncoded: async (t, enc) => {
    const text = t === 'logs' && current ? encodedText(enc) : '';
    const found = current && text.includes(current.text) ? quietNumbers(text) : [];
    await ch.insertEncoded(t, enc);
    const at = nowMs();
    for (const n of found) note('insert', n, at);
  },
});
let stopAll: () => Promise<void> = () => Promise.resolve();
const cleanup = async () => {
  await removeRunContainers(ns.id);
  await stopAll();
  await realBus.close();
  await ch.close();
  rmSync(tmp, { recursive: true, force: true });
  ns.cleanup();
};
onInterrupt(cleanup);

header('noisy stages: where a quiet tenant\'s line waits next to a flood (collector and log sink in one process, as `logmeter up`)', {
  seconds,
  loud: louds,
  'loud lines/s each (offered)': loudRate,
  'line-bytes': lineBytes,
  sinkBatchRows: ns.config.processors.sinkBatchRows,
  sinkBatchMs: ns.config.processors.sinkBatchMs,
});

await realBus.ensureTopics();
await migrate(ch, ns.logger);
const registry = createRegistry(false);
const sink = await startLogSink({ config: logSinkConfig(ns.config), bus, ch: sinkCh, logger: ns.logger, registry, group: GROUP });
const collector = await startCollectorHere({ ns, bus, codec, registry, docker: seenDocker });
stopAll = async () => {
  await collector.stop();
  await sink.stop();
};

interface PhaseResult {
  loud: number;
  complete: number;
  expected: number;
  /** Per stage (from the one before it; `total`: Docker ts → insert done): sorted ms. */
  spans: Record<Stage | 'total', number[]>;
}

async function phase(loud: number, k: number): Promise<PhaseResult> {
  const load = noisyLoad({ runId: ns.id, labelPrefix: ns.labelPrefix, tag: `s${k}x${loud}`, loud, seconds, loudRate, lineBytes, dir: tmp, seed: 11 + k });
  const times: Times = new Map();
  current = { text: load.quietText, re: new RegExp(`${load.quietText} (\\d+) end`, 'g'), times };
  await startContainers(load.specs);
  await sleep(seconds * 1000);
  const seen = () => STAGES.map((s) => [...times.values()].filter((t) => t[s] !== undefined).length);
  const deadline = Date.now() + 300_000;
  for (let i = 1; seen()[STAGES.length - 1]! < load.quietLines && Date.now() < deadline; i++) {
    await sleep(500);
    if (i % 20 === 0) process.stderr.write(`  quiet lines seen at ${STAGES.map((s, j) => `${s} ${seen()[j]}`).join(', ')} of ${load.quietLines}\n`);
  }
  // The floods' backlog drains before the next phase: loud rows stop growing.
  let prev = -1;
  while (Date.now() < deadline) {
    const [row] = await ch.query<{ c: string }>(`SELECT count() AS c FROM ${ch.table('logs')} WHERE startsWith(tenant, {p:String})`, { p: load.loudPrefix });
    if (Number(row?.c) === prev) break;
    prev = Number(row?.c);
    await sleep(2000);
  }
  await removeRunContainers(ns.id);
  current = undefined;
  const complete = [...times.values()].filter((t) => t.ts !== undefined && STAGES.every((s) => t[s] !== undefined));
  const span = (from: (t: (typeof complete)[number]) => number, to: (t: (typeof complete)[number]) => number) => complete.map((t) => to(t) - from(t)).sort((a, b) => a - b);
  return {
    loud,
    complete: complete.length,
    expected: load.quietLines,
    spans: {
      read: span((t) => t.ts!, (t) => t.read!),
      ack: span((t) => t.read!, (t) => t.ack!),
      handler: span((t) => t.ack!, (t) => t.handler!),
      insert: span((t) => t.handler!, (t) => t.insert!),
      total: span((t) => t.ts!, (t) => t.insert!),
    },
  };
}

const results: PhaseResult[] = [];
try {
  let k = 0;
  for (const loud of louds) {
    process.stderr.write(`phase: ${loud} flooding tenant(s)…\n`);
    const r = await phase(loud, k++);
    results.push(r);
    process.stderr.write(`  ${r.complete}/${r.expected} quiet lines timed at every stage; total p99 ${fmt(percentileSorted(r.spans.total, 99))} ms\n`);
  }
} finally {
  await cleanup();
}

out('Quiet tenant, ms per stage (from the stage before): p50 / p99 / max over the lines timed at every stage.');
out('read = Docker ts → collector read; ack = → Kafka ack; handler = → sink handler; insert = → insert done; total = Docker ts → insert done.');
out();
const cell = (xs: number[]) => `${fmt(percentileSorted(xs, 50))} / ${fmt(percentileSorted(xs, 99))} / ${fmt(xs[xs.length - 1] ?? NaN)}`;
table(
  ['floods', 'quiet lines timed', 'read', 'ack', 'handler', 'insert', 'total'],
  results.map((r) => [r.loud === 0 ? 'alone' : `${r.loud} × ${fmt(loudRate)}/s`, `${r.complete} / ${r.expected}`, cell(r.spans.read), cell(r.spans.ack), cell(r.spans.handler), cell(r.spans.insert), cell(r.spans.total)]),
);
if (results.some((r) => r.complete < r.expected)) process.stderr.write('some quiet lines were not timed at every stage (a line split across two Docker chunks is not seen at `read`)\n');
