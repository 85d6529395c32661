/**
 * The collector's memory while it reads at full speed (issue 19, item 2): the real
 * `logmeter collector` process (bin/logmeter.mjs, as deployed, so the heap settings the
 * command applies are in force) attached to N containers, which then print `--lines`
 * 120-byte lines in total as fast as busybox can; the collector reads them to Kafka as
 * fast as it can (rate limit lifted: a policy, not a throughput).
 *
 *   node --import tsx bench/memory-full-speed.ts [--containers 2,50,200] [--lines 400000]
 *        [--variants default,off] [--settle 5]
 *
 * Per count and variant, a fresh set of containers and a fresh collector process:
 *   1. N containers (Docker `local` driver) start and wait, idle, for SIGUSR1;
 *   2. the collector starts and follows all N; after `--settle` seconds its RSS is sampled
 *      every 100 ms for 3 s: the median is the IDLE BASELINE — the process attached to
 *      the same N containers, not logging (its Docker streams and per-container state
 *      included: that memory is not the buffer);
 *   3. VmHWM is reset (/proc/PID/clear_refs), every container gets SIGUSR1 and prints
 *      its share; the clock runs until Kafka acknowledged every line
 *      (`logmeter_collector_lines_produced_total`);
 *   4. peak RSS = max(VmHWM, 100 ms samples) over the load; target = 2 ×
 *      LOGMETER_MAX_BUFFERED_BYTES + baseline; CPU = the process's utime + stime (all
 *      threads: GC helpers, zlib in the thread pool) over the load, per line.
 * V8 heap used and external memory come from the process's own /metrics (scraped every
 * 500 ms, so their peaks are coarse).
 *
 * Variants (comma-separated; alternated in order per count so the load of a shared
 * machine falls on both):
 *   default          the command as shipped (its default heap setting)
 *   off              LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT=0: V8's own heap growing
 *   gp<N>            LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT=N
 *   --flag[+--flag]  extra node/V8 flags on the collector's command line (exploration),
 *                    with the heap setting off, e.g. --optimize-for-size or
 *                    --max-semi-space-size=4+--heap-growing-percent=30
 *
 * Not a test: figures go to BENCHMARKS.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ROOT, benchNamespace, flags, fmt, header, median, metricSum, onInterrupt, out, procCpuSeconds, procRss, sleep, table, until, MiB } from './lib/common.js';
import { docker, removeRunContainers, startContainers } from './lib/containers.js';

const f = flags(['containers', 'lines', 'variants', 'settle', 'max-buffered-bytes']);
if (f.bool('help')) {
  out('node --import tsx bench/memory-full-speed.ts [--containers 2,50,200] [--lines 400000] [--variants default,off] [--settle 5] [--max-buffered-bytes 67108864]');
  process.exit(0);
}
const counts = f.list('containers', [2, 50, 200]);
const total = f.num('lines', 400_000);
const variants = f.str('variants', 'default,off').split(',').filter(Boolean);
const settleSeconds = f.num('settle', 5);
const maxBufferedBytes = f.num('max-buffered-bytes', 64 * MiB);

const ns = benchNamespace('memfs');
let child: ChildProcess | undefined;
const runIds: string[] = [];
const cleanup = async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  for (const id of runIds) await removeRunContainers(id);
  ns.cleanup();
};
onInterrupt(cleanup);

header('collector memory at full speed: peak RSS of `logmeter collector` against 2 × buffer bound + idle baseline', {
  containers: counts,
  lines: total,
  'line bytes': 120,
  variants,
  'max buffered bytes': maxBufferedBytes,
  'settle s': settleSeconds,
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The collector's environment and node arguments for a variant. */
function variantSetup(v: string): { env: Record<string, string>; nodeArgs: string[] } {
  if (v === 'default') return { env: {}, nodeArgs: [] };
  if (v === 'off') return { env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: '0' }, nodeArgs: [] };
  const gp = /^gp(\d+)$/.exec(v);
  if (gp) return { env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: gp[1]! }, nodeArgs: [] };
  if (v.startsWith('--')) return { env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: '0' }, nodeArgs: v.split('+') };
  throw new Error(`--variants: unknown variant "${v}"`);
}

interface Row {
  containers: number;
  variant: string;
  lines: number;
  seconds: number;
  cpuSeconds: number;
  baseline: number;
  baselineAnon: number;
  peak: number;
  peakAnon: number;
  heapBase: number;
  heapPeak: number;
  externalBase: number;
  externalPeak: number;
  bufferedPeak: number;
  heldPeak: number;
}

async function run(containers: number, variant: string, k: number): Promise<Row> {
  const runId = `${ns.id}r${k}`;
  runIds.push(runId);
  const labelPrefix = `${runId}.`;
  const per = Math.ceil(total / containers);
  const lines = per * containers;
  const t0 = performance.now();
  const started = await startContainers(
    Array.from({ length: containers }, (_, i) => ({
      runId,
      labelPrefix,
      tenant: `tenant${i % 10}`,
      app: `app${i}`,
      logDriver: 'local' as const,
      // Idle until SIGUSR1 (docker-init forwards it to sh; `wait` returns on a trapped signal), then print.
      script: `trap ':' USR1; sleep 86400 & wait $!; kill $! 2>/dev/null; yes "$(printf '%0119d' 7)" | head -n ${per}; exec sleep 3600`,
    })),
  );
  process.stderr.write(`${containers} containers (${variant}): started in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

  const port = await freePort();
  const { env, nodeArgs } = variantSetup(variant);
  child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'bin/logmeter.mjs'), 'collector'], {
    cwd: ROOT,
    env: {
      ...process.env,
      LOGMETER_TOPIC_PREFIX: ns.topicPrefix,
      LOGMETER_LABEL_PREFIX: labelPrefix,
      LOGMETER_DATA_DIR: path.join(ns.dataDir, runId),
      LOGMETER_HTTP: `127.0.0.1:${port}`,
      LOGMETER_LOG_LEVEL: 'warn',
      LOGMETER_STATS_INTERVAL: '3600',
      LOGMETER_MAX_BUFFERED_BYTES: String(maxBufferedBytes),
      // The rate limit is a policy, not a throughput: lifted.
      LOGMETER_TENANT_LINES_PER_SECOND: '1000000000',
      LOGMETER_TENANT_BYTES_PER_SECOND: '1000000000000',
      LOGMETER_NODE_LINES_PER_SECOND: '1000000000',
      LOGMETER_NODE_BYTES_PER_SECOND: '1000000000000',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const pid = child.pid!;
  const proc = child;
  const scrape = async (name: string) => metricSum(port, name).catch(() => NaN);
  try {
    await until(`collector follows ${containers} containers`, async () => {
      if (proc.exitCode !== null) throw new Error(`collector exited (${proc.exitCode}): ${stderr}`);
      return (await scrape('logmeter_collector_containers_followed')) >= containers;
    }, 300_000, 250);
    await sleep(settleSeconds * 1000);
    const idle: Array<ReturnType<typeof procRss>> = [];
    for (let i = 0; i < 30; i++) {
      idle.push(procRss(pid));
      await sleep(100);
    }
    const baseline = median(idle.map((s) => s.rss));
    const baselineAnon = median(idle.map((s) => s.anon));
    const heapBase = await scrape('logmeter_nodejs_heap_size_used_bytes');
    const externalBase = await scrape('logmeter_nodejs_external_memory_bytes');
    const produced0 = await scrape('logmeter_collector_lines_produced_total');
    if (produced0 > 0) throw new Error(`${produced0} lines produced before the load: the containers were not idle`);

    // The load: reset the peak, signal every container, run until Kafka acknowledged every line.
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    let peak = 0;
    let peakAnon = 0;
    const sampler = setInterval(() => {
      const s = procRss(pid);
      peak = Math.max(peak, s.rss);
      peakAnon = Math.max(peakAnon, s.anon);
    }, 100);
    const cpu0 = procCpuSeconds(pid);
    const l0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < started.length) await docker.getContainer(started[next++]!.id).kill({ signal: 'SIGUSR1' });
      }),
    );
    let heapPeak = heapBase;
    let externalPeak = externalBase;
    let bufferedPeak = 0;
    let heldPeak = 0;
    const end = Date.now() + Math.max(300_000, lines / 2);
    for (;;) {
      await sleep(500);
      if (proc.exitCode !== null) throw new Error(`collector exited (${proc.exitCode}): ${stderr}`);
      const [produced, dropped, heap, external, buffered, held] = await Promise.all(
        ['lines_produced_total', 'lines_dropped_total'].map((m) => scrape(`logmeter_collector_${m}`)).concat([scrape('logmeter_nodejs_heap_size_used_bytes'), scrape('logmeter_nodejs_external_memory_bytes'), scrape('logmeter_collector_buffered_bytes'), scrape('logmeter_collector_held_bytes')]),
      );
      heapPeak = Math.max(heapPeak, heap!);
      externalPeak = Math.max(externalPeak, external!);
      bufferedPeak = Math.max(bufferedPeak, buffered!);
      // NaN (an older collector without the gauge) counts as 0.
      heldPeak = Math.max(heldPeak, held || 0);
      if (produced! + (dropped || 0) >= lines) break;
      if (Date.now() > end) throw new Error(`timed out: ${produced} of ${lines} lines produced`);
    }
    const seconds = (performance.now() - l0) / 1000;
    const cpuSeconds = procCpuSeconds(pid) - cpu0;
    clearInterval(sampler);
    const hwm = procRss(pid).peak;
    const row: Row = { containers, variant, lines, seconds, cpuSeconds, baseline, baselineAnon, peak: Math.max(peak, hwm), peakAnon, heapBase, heapPeak, externalBase, externalPeak, bufferedPeak, heldPeak };
    process.stderr.write(`  ${variant}: baseline ${fmt(baseline / MiB)} MiB, peak ${fmt(row.peak / MiB)} MiB, ${fmt(lines / seconds)} lines/s, ${fmt((cpuSeconds / lines) * 1e6, 1)} µs CPU/line\n`);
    return row;
  } finally {
    proc.kill('SIGTERM');
    await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(20_000)]);
    if (proc.exitCode === null) proc.kill('SIGKILL');
    await removeRunContainers(runId);
  }
}

const rows: Row[] = [];
try {
  let k = 0;
  for (const n of counts) {
    // Alternate which variant goes first from one count to the next.
    const order = k % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) rows.push(await run(n, v, k++));
  }
} finally {
  await cleanup();
}

out(`peak RSS of the collector process reading ${fmt(total)} lines of 120 B at full speed; baseline = the same process attached to the same N idle containers, just before the load (median of 3 s); MiB = 2^20 bytes`);
table(
  ['containers', 'variant', 'lines/s', 'CPU µs / line', 'baseline RSS MiB', 'peak RSS MiB', 'peak − baseline', 'peak anon MiB', 'V8 heap used (base → peak)', 'external (base → peak)', 'buffered MiB (max, charged)', 'held MiB (max, charged)', 'target 2 × bound + baseline MiB', 'within'],
  rows.map((r) => {
    const target = 2 * maxBufferedBytes + r.baseline;
    return [
      fmt(r.containers),
      r.variant,
      fmt(r.lines / r.seconds),
      fmt((r.cpuSeconds / r.lines) * 1e6, 1),
      fmt(r.baseline / MiB),
      fmt(r.peak / MiB),
      fmt((r.peak - r.baseline) / MiB),
      fmt(r.peakAnon / MiB),
      `${fmt(r.heapBase / MiB)} → ${fmt(r.heapPeak / MiB)}`,
      `${fmt(r.externalBase / MiB)} → ${fmt(r.externalPeak / MiB)}`,
      fmt(r.bufferedPeak / MiB),
      fmt(r.heldPeak / MiB, 1),
      fmt(target / MiB),
      r.peak <= target ? 'yes' : 'no',
    ];
  }),
);
