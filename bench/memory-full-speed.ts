/**
 * Where the collector's memory goes while it reads at full speed (issue 19): N containers
 * that have already printed `--lines` 120-byte lines in total (Docker's `local` driver), then
 * the real collector (`createCollector`, in this process so `process.memoryUsage()` splits
 * the figure) reads them all to Kafka as fast as it can. Sampled every 100 ms: RSS, anonymous
 * RSS, V8 heap used, ArrayBuffers (Buffers: Docker chunks, Avro frames, kafkajs requests),
 * other external memory, and the sender's buffered bytes. Peaks are reported against the
 * baseline taken just before the collector starts, and against the issue's target
 * RSS ≤ 2 × maxBufferedBytes + baseline.
 *
 *   node --expose-gc --import tsx bench/memory-full-speed.ts [--containers 2,50,200] [--lines 400000]
 *
 * The rate limit is lifted (a policy, not a throughput). Not a test: figures go to BENCHMARKS.md.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { collectorConfigSchema } from '../ingest/config.js';
import { createCollector } from '../ingest/collector.js';
import { namespace } from '../test/helpers/env.js';
import { docker, runContainer, removeTestContainers } from '../test/helpers/docker.js';
import { flags, out, MiB } from './lib/common.js';

const f = flags(['containers', 'lines', 'live-every-ms', 'max-buffered-bytes']);
const counts = f.list('containers', [2, 50, 200]);
const total = f.num('lines', 400_000);
/** Diagnosis, not the figure: a full GC this often, and the heap left after it (what is live, not garbage waiting). */
const liveEveryMs = f.num('live-every-ms', 0);
/** The collector's bound (LOGMETER_MAX_BUFFERED_BYTES); default its default, 64 MiB. */
const maxBufferedBytes = f.num('max-buffered-bytes', 64 * MiB);

const anonBytes = () => Number(/RssAnon:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) * 1024;
const sample = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, anon: anonBytes(), heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, otherExternal: m.external - m.arrayBuffers };
};
type Sample = ReturnType<typeof sample>;

async function run(containers: number): Promise<void> {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = busFor(ns.config, codec, ns.logger);
  try {
    await bus.ensureTopics();
    const per = Math.ceil(total / containers);
    for (let i = 0; i < containers; i++) await runContainer({ prefix, tenant: 'acme', app: 'm', logDriver: 'local', script: `yes "$(printf '%0119d' 7)" | head -n ${per}; exec sleep 3600` });
    await new Promise((r) => setTimeout(r, 5000 + containers * 100)); // every line printed before the clock starts
    global.gc?.();
    const base = sample();
    const cfg = collectorConfigSchema.parse({ labelPrefix: prefix, statsIntervalSeconds: 3600, maxBufferedBytes, rateLimit: { linesPerSecond: 1e9, bytesPerSecond: 1e12 } });
    const c = createCollector({ cfg, node: 'bench', stateDir: path.join(ns.dataDir, 'collector'), docker, bus, codec, logger: ns.logger, registry: createRegistry(false) });
    const peak: Sample = { ...base };
    let buffered = 0;
    let events = 0;
    let live = base.heapUsed;
    const timer = setInterval(() => {
      const s = sample();
      for (const k of Object.keys(s) as Array<keyof Sample>) peak[k] = Math.max(peak[k], s[k]);
      buffered = Math.max(buffered, c.sender.buffered);
      events = Math.max(events, c.sender.bufferedEvents);
    }, 100);
    const liveTimer =
      liveEveryMs > 0
        ? setInterval(() => {
            global.gc?.();
            live = Math.max(live, process.memoryUsage().heapUsed);
          }, liveEveryMs)
        : undefined;
    const t0 = Date.now();
    await c.start();
    for (let i = 1; (await c.summary()).linesProduced < per * containers; i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (i % 25 === 0) process.stderr.write(`progress ${JSON.stringify(await c.summary())} events ${c.sender.bufferedEvents}\n`);
    }
    const seconds = (Date.now() - t0) / 1000;
    clearInterval(timer);
    clearInterval(liveTimer);
    await c.stop();
    const mib = (x: number) => (x / MiB).toFixed(0);
    const bound = 2 * cfg.maxBufferedBytes + base.rss;
    out(
      `| ${containers} | ${per * containers} | ${((per * containers) / seconds / 1000).toFixed(1)}k | ${mib(base.rss)} | ${mib(peak.rss)} | ${mib(peak.anon)} | +${mib(peak.heapUsed - base.heapUsed)} | +${mib(peak.arrayBuffers - base.arrayBuffers)} | +${mib(peak.otherExternal - base.otherExternal)} | ${mib(buffered)} | ${events} |${liveEveryMs > 0 ? ` +${mib(live - base.heapUsed)} |` : ''} ${mib(bound)} | ${peak.rss <= bound ? 'yes' : 'no'} |`,
    );
  } finally {
    await removeTestContainers(prefix);
    await bus.close();
    ns.cleanup();
  }
}

if (counts.length === 1) {
  await run(counts[0]!);
  process.exit(0);
}
// A fresh process per count: a heap grown at one count would be the next one's baseline.
out(`| containers | lines | lines/s | baseline RSS MiB | peak RSS MiB | peak anon MiB | V8 heap used | ArrayBuffers | other external | sender buffered MiB (max, charged) | events buffered (max) |${liveEveryMs > 0 ? ' live heap after GC |' : ''} target 2 × bound + baseline MiB | within |`);
out(`| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |${liveEveryMs > 0 ? ' ---: |' : ''} ---: | --- |`);
for (const n of counts) spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--containers', String(n), '--lines', String(total), '--live-every-ms', String(liveEveryMs), '--max-buffered-bytes', String(maxBufferedBytes)], { stdio: ['ignore', 'inherit', 'ignore'] });
