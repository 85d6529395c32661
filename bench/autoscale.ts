/**
 * Latency step → autoscale signal: how long after an app's latency jumps does the first
 * panic signal for it reach Kafka, on the path `logmeter up` runs in one process:
 * HAProxy's log → collector → logs topic → access-log parser → http topic → autoscale
 * processor (windows, policy, a signal every `intervalMs`) → autoscale topic.
 *
 *   node --import tsx bench/autoscale.ts [--steps 5] [--rate 40] [--from-ms 20] [--to-ms 1000]
 *        [--warmup-s 8] [--timeout-s 30] [--interval-ms N]
 *
 * Each step: a new app (new container, new host, so no earlier panic lingers in its
 * policy state) is routed through HAProxy and gets open-loop load (`--rate` requests per
 * second whatever their latency, from a process of its own: lib/load-client.ts) at
 * `--from-ms` per request for `--warmup-s` (longer than the panic window, so the window
 * holds only fast requests) plus a random part of the evaluation interval; then the latency file the app's CGI reads is switched to
 * `--to-ms` (the step) and the load goes on until the first signal in panic mode for
 * the app is acknowledged by Kafka. The autoscale settings are the product defaults
 * (target p95 300 ms, panic at 2 × the target in the 6 s panic window, one signal a
 * second).
 *
 * Baselines in the same run, from the client's own timings of the same requests:
 *   - the first answer with the new latency, i.e. the step plus the new latency. No
 *     system can know of the step earlier (a request's latency exists when it ends).
 *   - the same policy evaluated continuously, with no transport and no tick: the first
 *     moment the p95 of the requests that started in the last panic window and had
 *     ended by then reached panicThreshold × target p95 (with at least minRequests of
 *     them). Any signal on this policy comes at or after it; the delay beyond it is the
 *     pipeline's (transport, and waiting for the next one-second evaluation).
 *
 * Where the time goes (bench-side taps on the bus; the product code is unchanged): when
 * HAProxy's log line of the first slow request was acknowledged by Kafka (collector),
 * its http event was acknowledged (access-log parser), the autoscale processor received
 * it, and the panic signal was computed (its `ts`) and acknowledged.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { chmodSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, HttpRequest } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { parseAccessLine } from '../processors/access-log/parse.js';
import { startAutoscale } from '../processors/autoscale/processor.js';
import { benchNamespace, flags, fmt, header, median, nowMs, onInterrupt, out, sleep, table, tempDir, until } from './lib/common.js';
import { BENCH_LABEL, docker, removeRunContainers } from './lib/containers.js';
import type { LoadMessage, LoadRequest, LoadSample } from './lib/load-client.js';
import { startRoutePath, stopAll } from './lib/route-path.js';
import { tapBus } from './lib/tap.js';

const f = flags(['steps', 'rate', 'from-ms', 'to-ms', 'warmup-s', 'timeout-s', 'interval-ms']);
if (f.bool('help')) {
  out('node --import tsx bench/autoscale.ts [--steps 5] [--rate 40] [--from-ms 20] [--to-ms 1000] [--warmup-s 8] [--timeout-s 30] [--interval-ms N (autoscale intervalMs; default the product default)]');
  process.exit(0);
}
const steps = f.num('steps', 5);
const rate = f.num('rate', 40);
const fromMs = f.num('from-ms', 20);
const toMs = f.num('to-ms', 1000);
const warmupS = f.num('warmup-s', 8);
const timeoutS = f.num('timeout-s', 30);
/** A request at least this slow has the new latency. */
const slowMs = (fromMs + toMs) / 2;

/** Times of one step, epoch ms; the step (latency file switched) is the origin. */
interface Marks {
  app: string;
  host: string;
  step?: number;
  /** First answer with the new latency at the client (the baseline). */
  clientSlow?: number;
  /** The policy's panic condition first true on the client's timings (the second baseline). */
  oracle?: number;
  /** HAProxy's log line of a slow request acknowledged by Kafka (the collector's request). */
  collected?: number;
  /** Its http event acknowledged by Kafka (the access-log parser). */
  parsed?: number;
  /** The autoscale processor's http handler got it. */
  autoscale?: number;
  /** The first panic signal: computed (its ts), acknowledged by Kafka. */
  signalTs?: number;
  signal?: number;
  reason?: string;
  recommended?: number;
  /** A panic signal before the step (the step is then not counted). */
  panicBefore?: boolean;
  /** Signals seen for the app before the step (it was active and stable). */
  stableBefore: number;
  requests?: number;
  failed?: number;
}

const ns = benchNamespace('autoscale');
/** The autoscale settings: the product defaults, but for `--interval-ms` when given. */
const autoscaleConfig = { ...ns.config.autoscale, intervalMs: f.num('interval-ms', ns.config.autoscale.intervalMs) };
const codec = await AvroCodec.create(new ManifestSource());
const realBus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const byHost = new Map<string, Marks>();
const byApp = new Map<string, Marks>();
let lbContainer = '';

const set = (m: Marks | undefined, key: 'collected' | 'parsed' | 'autoscale', at: number) => {
  if (m?.step !== undefined && m[key] === undefined) m[key] = at;
};
const slow = (r: Pick<HttpRequest, 'host' | 'request_time_ms'>) => r.request_time_ms !== null && r.request_time_ms >= slowMs;

const bus = tapBus(realBus, {
  rawBatch(batches, _sent, acked) {
    const logs = realBus.topic('logs');
    for (const b of batches) {
      if (b.topic !== logs) continue;
      for (const msg of b.messages) {
        if (msg.key !== lbContainer) continue;
        const r = parseAccessLine('haproxy', codec.decode('logs', msg.value).line.toString('utf8'));
        if (r.ok && slow(r.request)) set(byHost.get(r.request.host), 'collected', acked);
      }
    }
  },
  published(topic, messages, _sent, acked) {
    if (topic === 'http') {
      for (const { event } of messages) {
        const r = event as HttpRequest;
        if (slow(r)) set(byHost.get(r.host), 'parsed', acked);
      }
    } else if (topic === 'autoscale') {
      for (const { event } of messages) {
        const s = event as AutoscaleSignal;
        const m = byApp.get(s.app);
        if (!m) continue;
        if (m.step === undefined) {
          if (s.mode === 'panic') m.panicBefore = true;
          else m.stableBefore++;
        } else if (s.mode === 'panic' && m.signal === undefined) {
          m.signal = acked;
          m.signalTs = s.ts;
          m.reason = s.reason;
          m.recommended = s.recommended_replicas;
        }
      }
    }
  },
  handled(group, batch, at) {
    if (!group.startsWith('autoscale-') || !group.endsWith('-http')) return;
    for (const msg of batch) {
      const r = msg.event as HttpRequest;
      if (slow(r)) set(byHost.get(r.host), 'autoscale', at);
    }
  },
});

const stops: Array<() => Promise<unknown>> = [];
let load: ChildProcess | undefined;

const cleanup = async () => {
  if (load?.connected) load.send({ type: 'exit' } satisfies LoadRequest);
  await removeRunContainers(ns.id).catch(() => 0);
  await stopAll(stops, ns);
  await realBus.close();
  ns.cleanup();
};
onInterrupt(cleanup);

const policy = ns.config.autoscale.policy;
header('autoscale: latency step → first panic signal on Kafka', {
  steps,
  'rate req/s': rate,
  'latency ms': `${fromMs}→${toMs}`,
  'warm-up s': warmupS,
  'target p95 ms': policy.targetP95Ms,
  panicThreshold: policy.panicThreshold,
  'panic window ms': ns.config.autoscale.panicWindowMs,
  'interval ms': autoscaleConfig.intervalMs,
  'collector lingerMs': ns.config.collector.lingerMs,
});

const pending = new Map<number, (m: LoadMessage) => void>();
let requestId = 0;
const ask = (m: LoadRequest & { id: number }) =>
  new Promise<LoadMessage>((resolve) => {
    pending.set(m.id, resolve);
    load!.send(m);
  });

try {
  await realBus.ensureTopics();
  const { lb, lbPort, applier } = await startRoutePath({ ns, bus, codec, registry, accessLog: true }, stops);
  lbContainer = lb.containerId;
  const autoscale = await startAutoscale({ bus, logger: ns.logger, registry, config: autoscaleConfig, node: 'bench', labelPrefix: ns.labelPrefix });
  stops.push(() => autoscale.stop());

  load = fork(fileURLToPath(new URL('./lib/load-client.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  load.on('message', (m: LoadMessage) => {
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });

  const dir = tempDir('logmeter-bench-latency-');
  writeFileSync(path.join(dir, 'work'), '#!/bin/sh\nsleep $(cat /latency/latency 2>/dev/null || echo 0.02)\nprintf "Content-Type: text/plain\\r\\n\\r\\nok\\n"\n');
  chmodSync(path.join(dir, 'work'), 0o755);
  /** Switches the latency every later request sleeps (written whole: a CGI never reads half a file). */
  const setLatency = (ms: number) => {
    writeFileSync(path.join(dir, 'latency.tmp'), `${ms / 1000}\n`);
    renameSync(path.join(dir, 'latency.tmp'), path.join(dir, 'latency'));
  };

  const results: Marks[] = [];
  for (let i = 0; i < steps; i++) {
    const app = `web${i}`;
    const host = `as${i}-${ns.id}.test`;
    const m: Marks = { app, host, stableBefore: 0 };
    byHost.set(host, m);
    byApp.set(app, m);
    setLatency(fromMs);
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', 'mkdir -p /www/cgi-bin && cp /latency/work /www/cgi-bin/work && exec httpd -f -p 80 -h /www'],
      Labels: { [BENCH_LABEL]: ns.id, [`${ns.labelPrefix}tenant`]: 'acme', [`${ns.labelPrefix}app`]: app, [`${ns.labelPrefix}lb-host`]: host, [`${ns.labelPrefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, Binds: [`${dir}:/latency:ro`], PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
    });
    await c.start();
    await applier.waitFor(host, (r) => r.upstreams.some((u) => u.container_id === c.id), 30_000);
    const id = ++requestId;
    await ask({ type: 'run', id, port: lbPort, host, path: '/cgi-bin/work', rate, requestTimeoutMs: Math.max(5000, toMs * 4) });
    // Plus a random part of the evaluation interval: every step cycle takes about as long
    // as the last, so without it each step would meet the one-second evaluations at the
    // same phase, and the median would show that phase instead of the average wait.
    await sleep(warmupS * 1000 + Math.random() * autoscaleConfig.intervalMs);
    setLatency(toMs);
    m.step = nowMs();
    await until(`a panic signal for ${app}`, () => m.signal !== undefined, timeoutS * 1000, 10).catch((err: unknown) => {
      process.stderr.write(`  step ${i + 1}: ${err instanceof Error ? err.message : String(err)}\n`);
    });
    const done = await ask({ type: 'stop', id });
    const samples: LoadSample[] = done.type === 'done' ? done.samples : [];
    m.requests = samples.length;
    m.failed = samples.filter(([, , status]) => status !== 200).length;
    const firstSlow = samples.filter(([start, end, status]) => status === 200 && end >= m.step! && end - start >= slowMs).sort((a, b) => a[1] - b[1])[0];
    m.clientSlow = firstSlow?.[1];
    m.oracle = panicCondition(samples, m.step);
    await c.remove({ force: true });
    results.push(m);
    const d = (x: number | undefined) => (x === undefined ? '–' : `+${fmt(x - m.step!)} ms`);
    process.stderr.write(`  step ${i + 1} (${app}): first slow answer ${d(m.clientSlow)}, panic signal ${d(m.signal)}${m.panicBefore ? ' (panic already before the step: not counted)' : ''}; ${m.requests} requests, ${m.failed} failed\n`);
    await sleep(500);
  }
  report(results);
} finally {
  await cleanup();
}

/**
 * The first end time after `step` at which the requests that started within the panic
 * window before it, and had ended, have a p95 (lower nearest rank, as the windows' DDSketch
 * estimates) of at least panicThreshold × targetP95Ms, with at least minRequests of them.
 */
function panicCondition(samples: readonly LoadSample[], step: number): number | undefined {
  if (policy.targetP95Ms === null) return undefined;
  const limit = policy.panicThreshold * policy.targetP95Ms;
  const windowMs = ns.config.autoscale.panicWindowMs;
  const done = samples.filter(([, , status]) => status === 200);
  for (const t of done.map(([, end]) => end).filter((e) => e >= step).sort((a, b) => a - b)) {
    const lat = done.filter(([start, end]) => start > t - windowMs && end <= t).map(([start, end]) => end - start).sort((a, b) => a - b);
    if (lat.length >= policy.minRequests && lat[Math.floor(0.95 * (lat.length - 1))]! >= limit) return t;
  }
  return undefined;
}

function report(all: Marks[]): void {
  const ok = all.filter((m) => !m.panicBefore && m.signal !== undefined && m.clientSlow !== undefined);
  const since = (k: 'clientSlow' | 'oracle' | 'collected' | 'parsed' | 'autoscale' | 'signalTs' | 'signal', origin: 'step' | 'clientSlow' | 'oracle' = 'step') => ok.map((m) => (m[k] ?? NaN) - (m[origin] ?? NaN)).filter(Number.isFinite);
  const row = (label: string, xs: number[], ratioTo?: number) => [label, String(xs.length), fmt(median(xs)), fmt(Math.min(...xs)), fmt(Math.max(...xs)), ratioTo === undefined ? '–' : `${fmt(median(since('signal')) / ratioTo, 1)} ×`];
  const signal = since('signal');
  const baseline = since('clientSlow');
  out(`${ok.length} of ${all.length} steps counted (a step whose signal timed out or whose app panicked before it is not); ms from the step (the latency file switched)`);
  const oracle = since('oracle');
  table(['what', 'steps', 'median ms', 'min ms', 'max ms', 'signal / this'], [
    row('pipeline: step → first panic signal acknowledged by Kafka', signal, median(signal)),
    row('baseline: step → first answer with the new latency at the client', baseline, median(baseline)),
    row('baseline: step → panic condition true on the client timings (same policy, no transport, no tick)', oracle, median(oracle)),
    row("pipeline's part: panic condition true → panic signal", since('signal', 'oracle')),
  ]);
  const STAGES: Array<['clientSlow' | 'oracle' | 'collected' | 'parsed' | 'autoscale' | 'signalTs' | 'signal', string]> = [
    ['clientSlow', 'client: first answer with the new latency'],
    ['collected', "collector: HAProxy's log line of a slow request acknowledged by Kafka"],
    ['parsed', 'access-log parser: its http event acknowledged by Kafka'],
    ['autoscale', 'autoscale processor: a slow request received'],
    ['oracle', 'client timings: panic condition first true (baseline)'],
    ['signalTs', 'autoscale processor: first panic signal computed (its ts)'],
    ['signal', 'autoscale processor: that signal acknowledged by Kafka'],
  ];
  out('where the time goes (median over the counted steps, ms from the step)');
  table(
    ['mark', 'median ms', 'max ms'],
    STAGES.map(([k, label]) => {
      const xs = since(k);
      return [label, fmt(median(xs)), fmt(Math.max(...xs))];
    }),
  );
  for (const m of all) out(`- ${m.app}: signal ${m.signal === undefined ? 'none' : `+${fmt(m.signal - m.step!)} ms`}, first slow answer +${fmt((m.clientSlow ?? NaN) - m.step!)} ms, panic condition +${fmt((m.oracle ?? NaN) - m.step!)} ms, ${m.stableBefore} stable signal(s) before the step, ${m.requests} requests (${m.failed} failed); ${m.reason ?? ''} (recommended ${m.recommended ?? '–'})`);
  out(`target (DESIGN.md): latency step → autoscale signal < 2 s`);
}
