/**
 * Collector memory with many idle-but-logging containers: the RSS of the real
 * `logmeter collector` process (bin/logmeter.mjs, as deployed: tsx, HTTP server,
 * metrics, stats sampling every 10 s) following N containers that each print one line
 * per second, after `--steady` seconds of steady state.
 *
 *   node --import tsx bench/memory.ts [--counts 0,10,50,200] [--steady 20] [--no-lean]
 *        [--full-speed 2,50,200] [--full-speed-lines 400000] [--full-speed-variants default,off] [--no-full-speed]
 *
 * For each count a FRESH collector process is started (so a count is not measured on
 * a heap grown at an earlier, larger one), containers are added up to the count first,
 * the process is waited for until it follows all of them, then its /proc status is
 * sampled every second for `--steady` seconds; the table shows the median sample. Count 0 is the baseline: the same
 * process following nothing; growth per container = (RSS(N) − RSS(0)) / N.
 * RSS is reported whole and split into anonymous memory (what the process allocated)
 * and file-backed pages (mapped code and libraries).
 *
 * Comparison in the same run (at count 0 and the largest count; `--no-lean` skips it):
 * lib/collector-lean.ts, the same collector, metrics and HTTP server without the CLI's
 * other imports (chDB, bullmq, API, processors): what loading them costs the collector.
 *
 * Then at full speed (issue 19; `--no-full-speed` skips it): bench/memory-full-speed.ts,
 * the same `logmeter collector` process attached to 2, 50 and 200 idle containers (the idle
 * baseline), which then print 400,000 lines that it reads to Kafka as fast as it can: peak
 * RSS against 2 × LOGMETER_MAX_BUFFERED_BYTES + that baseline, lines/s and CPU µs per line,
 * with its heap setting as shipped and off (its own table).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { ROOT, benchNamespace, flags, fmt, header, median, onInterrupt, out, metricSum, procRss, sleep, table, until, MiB } from './lib/common.js';
import { removeRunContainers, startContainers } from './lib/containers.js';

const f = flags(['counts', 'steady', 'full-speed', 'full-speed-lines', 'full-speed-variants'], ['no-lean', 'no-full-speed']);
if (f.bool('help')) {
  out('node --import tsx bench/memory.ts [--counts 0,10,50,200] [--steady 20] [--no-lean] [--full-speed 2,50,200] [--full-speed-lines 400000] [--full-speed-variants default,off] [--no-full-speed]');
  process.exit(0);
}
const counts = [...new Set([0, ...f.list('counts', [0, 10, 50, 200])])].sort((a, b) => a - b);
const steady = f.num('steady', 20);
const lean = !f.bool('no-lean');

const ns = benchNamespace('mem');
let child: ChildProcess | undefined;
const cleanup = async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  const n = await removeRunContainers(ns.id);
  process.stderr.write(`removed ${n} containers\n`);
  ns.cleanup();
};
onInterrupt(cleanup);

header('collector memory: RSS of `logmeter collector` with N containers printing 1 line/s', { counts, 'steady seconds': steady, 'stats interval s': ns.config.collector.statsIntervalSeconds });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Child processes of `pid` (tsx may run esbuild as a service process). */
function descendants(pid: number): number[] {
  const outList: number[] = [];
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop()!;
    try {
      const tasks = readdirSync(`/proc/${p}/task`);
      for (const t of tasks) {
        for (const c of readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').split(' ').filter(Boolean).map(Number)) {
          outList.push(c);
          stack.push(c);
        }
      }
    } catch {
      // Gone.
    }
  }
  return outList;
}

interface Measurement {
  count: number;
  variant: 'cli' | 'lean';
  rss: number;
  anon: number;
  file: number;
  peak: number;
  heapUsed: number;
  children: number;
  followed: number;
  linesPerSecond: number;
  startSeconds: number;
}

/** A fresh collector process (the real command, or the lean variant) following `count` containers. */
async function measure(count: number, variant: 'cli' | 'lean'): Promise<Measurement> {
  const port = await freePort();
  const t0 = Date.now();
  const argv = variant === 'cli' ? [path.join(ROOT, 'bin/logmeter.mjs'), 'collector'] : ['--import', 'tsx', path.join(ROOT, 'bench/lib/collector-lean.ts')];
  child = spawn(process.execPath, argv, {
    cwd: ROOT,
    env: {
      ...process.env,
      LOGMETER_TOPIC_PREFIX: ns.topicPrefix,
      LOGMETER_LABEL_PREFIX: ns.labelPrefix,
      LOGMETER_DATA_DIR: path.join(ns.dataDir, `collector-${variant}-${count}`),
      LOGMETER_HTTP: `127.0.0.1:${port}`,
      LOGMETER_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const pid = child.pid!;
  try {
    await until(`collector follows ${count} containers`, async () => {
      if (child!.exitCode !== null) throw new Error(`collector exited (${child!.exitCode}): ${stderr}`);
      try {
        return (await metricSum(port, 'logmeter_collector_containers_followed')) >= count;
      } catch {
        return false;
      }
    }, 180_000, 250);
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${stderr}`);
  }
  const startSeconds = (Date.now() - t0) / 1000;
  const produced0 = await metricSum(port, 'logmeter_collector_lines_produced_total');
  const samples: Array<ReturnType<typeof procRss>> = [];
  for (let s = 0; s < steady; s++) {
    await sleep(1000);
    samples.push(procRss(pid));
  }
  const produced1 = await metricSum(port, 'logmeter_collector_lines_produced_total');
  // RSS moves with each GC: the median of the window's samples, not one reading.
  const mid = (k: 'rss' | 'anon' | 'file') => median(samples.map((x) => x[k]));
  const kids = descendants(pid);
  const m: Measurement = {
    count,
    variant,
    rss: mid('rss'),
    anon: mid('anon'),
    file: mid('file'),
    peak: procRss(pid).peak,
    heapUsed: await metricSum(port, 'logmeter_nodejs_heap_size_used_bytes'),
    children: kids.reduce((a, k) => a + (procRss(k).rss || 0), 0),
    followed: await metricSum(port, 'logmeter_collector_containers_followed'),
    linesPerSecond: (produced1 - produced0) / steady,
    startSeconds,
  };
  process.stderr.write(`${variant} ${count} containers: RSS ${fmt(m.rss / MiB)} MiB (anon ${fmt(m.anon / MiB)}, file ${fmt(m.file / MiB)}), heap ${fmt(m.heapUsed / MiB)} MiB, ${fmt(m.linesPerSecond, 1)} lines/s\n`);
  child.kill('SIGTERM');
  await Promise.race([new Promise((r) => child!.once('exit', r)), sleep(20_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
  // Samples in the middle of the window, too: RSS should be flat at steady state.
  process.stderr.write(`  RSS over the window (MiB): ${samples.map((x) => fmt(x.rss / MiB)).join(' ')} (median ${fmt(median(samples.map((x) => x.rss)) / MiB)})\n`);
  return m;
}

let running = 0;
const results: Measurement[] = [];
try {
  for (const count of counts) {
    if (count > running) {
      const t0 = Date.now();
      await startContainers(
        Array.from({ length: count - running }, (_, i) => ({
          runId: ns.id,
          labelPrefix: ns.labelPrefix,
          tenant: `tenant${(running + i) % 10}`,
          app: `app${running + i}`,
          script: 'i=0; while true; do i=$((i+1)); echo "$(date -Iseconds) INFO heartbeat seq=$i worker=$HOSTNAME status=ok queue=0 latency_ms=3"; sleep 1; done',
        })),
      );
      process.stderr.write(`started ${count - running} containers (now ${count}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      running = count;
    }
    results.push(await measure(count, 'cli'));
    if (lean && (count === 0 || count === counts[counts.length - 1])) results.push(await measure(count, 'lean'));
  }
} finally {
  await cleanup();
}

const baseOf = (v: Measurement['variant']) => results.find((r) => r.count === 0 && r.variant === v);
out(`RSS of the collector process over ${steady} s of steady state (median of one sample a second; fresh process per count); MiB = 2^20 bytes`);
table(
  ['process', 'containers', 'followed', 'lines/s', 'RSS MiB', 'anon MiB', 'file-backed MiB', 'peak (VmHWM) MiB', 'V8 heap used MiB', 'RSS growth / container', 'anon growth / container', 'child processes MiB', 'time to follow all'],
  results.map((r) => {
    const base = baseOf(r.variant);
    return [
      r.variant === 'cli' ? 'logmeter collector' : 'lean (no chDB/CLI imports)',
      fmt(r.count),
      fmt(r.followed),
      fmt(r.linesPerSecond, 1),
      fmt(r.rss / MiB),
      fmt(r.anon / MiB),
      fmt(r.file / MiB),
      fmt(r.peak / MiB),
      fmt(r.heapUsed / MiB, 1),
      base && r.count > 0 ? `${fmt((r.rss - base.rss) / r.count / 1024)} KiB` : '–',
      base && r.count > 0 ? `${fmt((r.anon - base.anon) / r.count / 1024)} KiB` : '–',
      fmt(r.children / MiB),
      `${r.startSeconds.toFixed(1)} s`,
    ];
  }),
);
out('target (DESIGN.md): collector memory with 200 containers < 200 MB RSS (200 MB = 190.7 MiB)');

if (!f.bool('no-full-speed')) {
  out();
  out('At full speed: peak RSS while reading lines to Kafka as fast as possible (bench/memory-full-speed.ts, fresh containers and collector process per count and variant)');
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/memory-full-speed.ts'), '--containers', f.list('full-speed', [2, 50, 200]).join(','), '--lines', String(f.num('full-speed-lines', 400_000)), '--variants', f.str('full-speed-variants', 'default,off')],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (r.status !== 0) process.exitCode = r.status ?? 1;
}
