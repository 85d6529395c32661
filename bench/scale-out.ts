/**
 * Scale-out: 1, 2 and 3 instances of the access-log parser and of the autoscale
 * processor, each instance a process of its own (bench/lib/scale-out-child.ts) and a
 * member of the processor's one consumer group, over the same pre-recorded topic.
 *
 *   node --import tsx bench/scale-out.ts [--instances 1,2,3] [--only access-log,autoscale]
 *        [--messages N (default 300000 lines for access-log, 1500000 requests for autoscale)] [--apps 120]
 *
 * Per processor, a namespace of its own (topic prefix `bscaleout…`, 6 partitions by
 * default) is recorded once before any instance starts: for access-log `--messages`
 * nginx access lines on the logs topic (`--apps` containers, one app each); for autoscale
 * the HttpRequest events those lines stand for (the parser's own `toHttpRequest`), keyed
 * by `tenant/app` as the parser writes them, their times spread over the 50 s before the
 * instances' fixed event-time clock. Then for each N the group is deleted (the next N
 * reads everything again), N instances are started together and run until the group has
 * committed every partition to its end:
 *
 * - **msgs/s**: the recorded messages over the time from the start to the last commit.
 *   It includes what scaling out costs: the joins and rebalances while the instances come
 *   up one after the other (the broker's group.initial.rebalance.delay.ms is 0 here, so the
 *   first member starts alone), and autoscale's replay of every partition a member gains.
 *   "all busy after" says when every instance first reported handled messages (an
 *   instance answers once its start returned; autoscale's start returns when its first
 *   assignment is rebuilt, i.e. after replaying its partitions, often most of the run).
 * - **CPU µs/msg**: the instances' CPU over the same span (process.cpuUsage, reported by
 *   each child) over the recorded messages; **share**: each instance's part of the
 *   messages handled (autoscale: replays included) and its own CPU µs per message.
 * - **once**: access-log: every line's http event (counted by event id among the events
 *   published during this N's run) exactly once; autoscale: every app signalled by exactly
 *   one instance, and the apps' stable windows hold exactly the recorded requests.
 *
 * On 2 cores, 2 and 3 instances share the cores with Kafka and with each other: the
 * gain is bounded by the CPU left, and the per-message cost shows what each instance
 * adds.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { TopicName } from '../schemas/events.js';
import { loadConfig } from '../app/config.js';
import { busFor } from '../lib/runtime.js';
import type { EventBus } from '../lib/bus/bus.js';
import { ACCESS_LOG_PROCESSOR } from '../processors/access-log/config.js';
import { toHttpRequest } from '../processors/access-log/http-event.js';
import { AUTOSCALE_HTTP_GROUP } from '../processors/autoscale/processor.js';
import { benchNamespace, flags, fmt, header, nowMs, out, sleep, table } from './lib/common.js';
import { makeLogEvents } from './lib/events.js';
import type { ScaleOutChildParams, ScaleOutReply, ScaleOutRequest, ScaledProcessor } from './lib/scale-out-child.js';

const f = flags(['instances', 'only', 'messages', 'apps']);
if (f.bool('help')) {
  out('node --import tsx bench/scale-out.ts [--instances 1,2,3] [--only access-log,autoscale] [--messages N (300000 access-log, 1500000 autoscale)] [--apps 120]');
  process.exit(0);
}
const counts = f.list('instances', [1, 2, 3]);
const processors = f.str('only', 'access-log,autoscale').split(',');
const isScaled = (p: string): p is ScaledProcessor => p === 'access-log' || p === 'autoscale';
for (const p of processors) if (!isScaled(p)) throw new Error(`--only: unknown processor "${p}"`);
/** Recorded messages per processor: autoscale handles each several times faster, so it gets more to run as long. */
const MESSAGES: Record<ScaledProcessor, number> = { 'access-log': f.num('messages', 300_000), autoscale: f.num('messages', 1_500_000) };
const apps = f.num('apps', 120);
const CHUNK = 20_000;

/** What each processor reads, writes and is grouped as. */
const SHAPE: Record<ScaledProcessor, { from: TopicName; group: string }> = {
  'access-log': { from: ACCESS_LOG_PROCESSOR.from, group: ACCESS_LOG_PROCESSOR.group },
  autoscale: { from: 'http', group: AUTOSCALE_HTTP_GROUP },
};

/** A forked instance: each request gets the next reply (the child answers in order). */
class Instance {
  private readonly waiting: { resolve(m: ScaleOutReply): void; reject(e: Error): void }[] = [];
  private readonly proc: ChildProcess;
  readonly ready: Promise<ScaleOutReply>;

  constructor(params: ScaleOutChildParams) {
    this.ready = new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
    this.proc = fork(fileURLToPath(new URL('./lib/scale-out-child.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_SCALE_OUT_CHILD: JSON.stringify(params) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.proc.on('message', (m: ScaleOutReply) => {
      if (m.type === 'error') this.failAll(new Error(`${params.node}: ${m.message}`));
      else this.waiting.shift()?.resolve(m);
    });
    this.proc.on('exit', (code) => this.failAll(new Error(`${params.node} exited (${code})`)));
  }

  private failAll(err: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  ask<T extends ScaleOutReply['type']>(req: ScaleOutRequest, reply: T): Promise<Extract<ScaleOutReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      this.waiting.push({
        resolve: (m) => (m.type === reply ? resolve(m as Extract<ScaleOutReply, { type: T }>) : reject(new Error(`expected ${reply}, got ${m.type}`))),
        reject,
      });
      this.proc.send(req);
    });
  }

  kill(): void {
    if (this.proc.exitCode === null) this.proc.kill('SIGKILL');
  }
}

interface Recording {
  processor: ScaledProcessor;
  messages: number;
  bus: EventBus;
  topicPrefix: string;
  clockMs: number;
  /** Requests per app (autoscale). */
  perApp: Map<string, number>;
  close(): Promise<void>;
}

async function record(processor: ScaledProcessor, codec: AvroCodec): Promise<Recording> {
  const ns = benchNamespace('scaleout');
  const bus = busFor(ns.config, codec, ns.logger);
  await bus.ensureTopics();
  const clockMs = Date.now();
  const perApp = new Map<string, number>();
  const t0 = nowMs();
  const messages = MESSAGES[processor];
  for (let from = 0; from < messages; from += CHUNK) {
    const lines = makeLogEvents(Math.min(CHUNK, messages - from), { accessShare: 1, containers: apps, apps, from, startMs: clockMs - 3_600_000 });
    if (processor === 'access-log') {
      await bus.publish('logs', lines.map((event) => ({ event })));
      continue;
    }
    const requests = lines.flatMap((line, i) => {
      const r = toHttpRequest(line);
      if (!('request' in r)) throw new Error(`bench line did not parse: ${JSON.stringify(r)}`);
      const key = `${r.request.tenant}/${r.request.app}`;
      perApp.set(key, (perApp.get(key) ?? 0) + 1);
      // Spread over the 50 s before the clock: inside the stable window (60 s) at the end.
      return [{ event: { ...r.request, ts: clockMs - 50_000 + Math.floor(((from + i) / messages) * 49_000) }, key }];
    });
    await bus.publish('http', requests);
  }
  const s = (nowMs() - t0) / 1000;
  process.stderr.write(`${processor}: ${fmt(messages)} messages recorded on ${ns.topicPrefix}${SHAPE[processor].from} in ${s.toFixed(1)} s\n`);
  return { processor, messages, bus, topicPrefix: ns.topicPrefix, clockMs, perApp, close: async () => (await bus.close(), ns.cleanup()) };
}

/** Whether the group committed every partition of its topic up to its end. */
async function drained(rec: Recording): Promise<boolean> {
  const topic = rec.bus.topic(SHAPE[rec.processor].from);
  const [ends, committed] = await Promise.all([rec.bus.endOffsets(topic), rec.bus.committedOffsets(`${rec.topicPrefix}${SHAPE[rec.processor].group}`, topic)]);
  const at = new Map(committed.map((c) => [c.partition, BigInt(c.offset)]));
  return ends.every((e) => (at.get(e.partition) ?? -1n) >= BigInt(e.high));
}

const sampleAll = (xs: readonly Instance[]) => Promise.all(xs.map((x) => x.ask({ type: 'sample' }, 'sample')));

interface Row {
  processor: ScaledProcessor;
  n: number;
  rate: number;
  cpuUsPerMsg: number;
  shares: { share: number; cpuUsPerMsg: number }[];
  /** Seconds from the start until every instance had handled messages (joins, rebalances, autoscale's replay). */
  allActiveS: number;
  drainS: number;
  once: string;
  ok: boolean;
}

async function runN(rec: Recording, n: number): Promise<Row> {
  await rec.bus.deleteGroups([`${rec.topicPrefix}${SHAPE[rec.processor].group}`]).catch(() => undefined);
  const runStart = Date.now();
  const xs = Array.from({ length: n }, (_, i) => new Instance({ processor: rec.processor, topicPrefix: rec.topicPrefix, node: `bench-i${i + 1}`, clockMs: rec.clockMs }));
  try {
    await Promise.all(xs.map((x) => x.ready));
    const a = await sampleAll(xs);
    const t0 = nowMs();
    await Promise.all(xs.map((x) => x.ask({ type: 'go' }, 'started')));
    // Until the group committed everything; noting when every instance first had work.
    let allActiveS = NaN;
    for (;;) {
      const now = await sampleAll(xs);
      if (process.env.BENCH_TRACE) process.stderr.write(`${now.map((x) => `${x.handled}/${(x.cpuUs / 1e6).toFixed(1)}s/[${x.owned.join(',')}]${x.settled ? '' : '*'}`).join('  ')}\n`);
      if (Number.isNaN(allActiveS) && now.every((x, i) => x.handled > a[i]!.handled)) allActiveS = (nowMs() - t0) / 1000;
      if (await drained(rec)) break;
      if (nowMs() - t0 > 1_800_000) throw new Error(`${n} × ${rec.processor}: not drained in 30 min`);
      await sleep(250);
    }
    const drainS = (nowMs() - t0) / 1000;
    const b = await sampleAll(xs);
    const cpu = b.map((x, i) => x.cpuUs - a[i]!.cpuUs);
    const handled = b.map((x, i) => x.handled - a[i]!.handled);
    const allHandled = handled.reduce((x, y) => x + y, 0);
    process.stderr.write(`${rec.processor} × ${n}: drained in ${drainS.toFixed(1)} s; checking…\n`);
    const finals = await Promise.all(xs.map((x) => x.ask({ type: 'final' }, 'final')));
    await Promise.all(xs.map((x) => x.ask({ type: 'stop' }, 'stopped')));
    const check = rec.processor === 'access-log' ? await accessOnce(rec, runStart) : autoscaleOnce(rec, finals.map((fi) => fi.signals));
    return {
      processor: rec.processor,
      n,
      rate: rec.messages / drainS,
      cpuUsPerMsg: cpu.reduce((x, y) => x + y, 0) / rec.messages,
      shares: handled.map((h, i) => ({ share: h / allHandled, cpuUsPerMsg: cpu[i]! / h })),
      allActiveS,
      drainS,
      ...check,
    };
  } finally {
    for (const x of xs) x.kill();
  }
}

/** Every recorded line's http event among those published since `since` (this run's), exactly once. */
async function accessOnce(rec: Recording, since: number): Promise<{ once: string; ok: boolean }> {
  const seen = new Map<string, number>();
  const reader = await rec.bus.readToEnd({
    topic: 'http',
    group: `scaleout-check-${since}`,
    follow: false,
    handle: (batch) => {
      for (const m of batch) if (m.timestamp >= since) seen.set(m.event.event_id, (seen.get(m.event.event_id) ?? 0) + 1);
      return Promise.resolve();
    },
  });
  await reader.caughtUp;
  await reader.stop();
  const doubled = [...seen.values()].filter((c) => c > 1).length;
  const missing = rec.messages - seen.size;
  return { once: `${fmt(seen.size)} ids, ${fmt(doubled)} doubled, ${fmt(missing)} missing`, ok: doubled === 0 && missing === 0 };
}

/** Every app signalled by one instance, with every recorded request of it in its stable window. */
function autoscaleOnce(rec: Recording, signals: { app: string; requests: number }[][]): { once: string; ok: boolean } {
  const by = new Map<string, number>();
  let wrong = 0;
  for (const list of signals) {
    for (const s of list) {
      by.set(s.app, (by.get(s.app) ?? 0) + 1);
      if (s.requests !== rec.perApp.get(s.app)) wrong++;
    }
  }
  const twice = [...by.values()].filter((c) => c > 1).length;
  const missing = [...rec.perApp.keys()].filter((app) => !by.has(app)).length;
  return { once: `${fmt(by.size)} apps, ${twice} by 2 instances, ${missing} unsignalled, ${wrong} with other counts`, ok: twice === 0 && missing === 0 && wrong === 0 };
}

header('Scale-out: N instances of one consumer group (bench/scale-out.ts)', { instances: counts, only: processors, messages: `${MESSAGES['access-log']} access-log, ${MESSAGES.autoscale} autoscale`, apps, partitions: loadConfig({ env: process.env }).kafka.partitions });
const codec = await AvroCodec.create(new ManifestSource());
const rows: Row[] = [];
for (const processor of processors.filter(isScaled)) {
  const rec = await record(processor, codec);
  try {
    for (const n of counts) {
      process.stderr.write(`${processor} × ${n}…\n`);
      rows.push(await runN(rec, n));
    }
  } finally {
    await rec.close();
  }
}

for (const processor of processors.filter(isScaled)) {
  const mine = rows.filter((r) => r.processor === processor);
  const one = mine.find((r) => r.n === 1)?.rate ?? NaN;
  out(`## ${processor} (reads ${SHAPE[processor].from}, group ${SHAPE[processor].group})`);
  table(
    ['N', 'msgs/s', '× of N=1', 'CPU µs/msg (all instances)', 'per instance: share of msgs · own CPU µs/msg', 'all busy after s', 'drained in s', 'handled once'],
    mine.map((r) => [
      String(r.n),
      fmt(r.rate),
      Number.isFinite(one) ? `${(r.rate / one).toFixed(2)} ×` : '–',
      fmt(r.cpuUsPerMsg, 1),
      r.shares.map((s) => `${(s.share * 100).toFixed(0)} % · ${fmt(s.cpuUsPerMsg, 1)}`).join(' / '),
      fmt(r.allActiveS, 1),
      fmt(r.drainS, 1),
      `${r.ok ? 'yes' : 'NO'}: ${r.once}`,
    ]),
  );
}
if (rows.some((r) => !r.ok)) {
  process.stderr.write('a message was not handled exactly once (see the tables)\n');
  process.exit(1);
}
process.exit(0);
