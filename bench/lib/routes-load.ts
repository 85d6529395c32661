/**
 * `bench/routes.ts --load`: container start → first 200 through HAProxy on a busy node.
 *
 *   node --import tsx bench/routes.ts --load [--containers 50] [--rate 6000] [--starts 60]
 *        [--warmup 2] [--gap-ms 300] [--window-s 15] [--probe-gap-ms 1] [--request-timeout-ms 250]
 *        [--no-baseline]   (without the by-hand HAProxy below)
 *        [--same-thread]   (the routes lane on the measuring thread, as `up` ran it before
 *                           its routes thread; default: a thread of its own, as `logmeter up`
 *                           runs it, with its start hints; `--routes-thread` is accepted, a no-op)
 *
 * One pipeline in this process, as `logmeter up` runs it (collector, access-log parser,
 * route table processor, HAProxy + applier, autoscale; not the ClickHouse sink), with
 * `--containers` tenant containers logging `--rate` lines/s in total: half of them
 * nginx-combined access lines for the containers' own lb-host (so the parser makes http
 * events and autoscale counts them), half application lines. Then `--starts` starts of
 * a new busybox httpd container with an lb-host, one after the other; for each, a client
 * in a process of its own (lib/route-client.ts) calls `docker start` and, from the
 * moment it returns, asks both HAProxy (Host header) and the container's own published
 * port until each answered 200 with the container's name: the container's port is the
 * same start's baseline (when the app itself answers), the difference is what the
 * route path adds. A second HAProxy with the same config and no applier (the by-hand
 * baseline) is given the applier's commands for the new host by the client itself as soon
 * as `docker start` returns, and asked the same way: what HAProxy and the app need on this
 * busy node with no pipeline at all; logmeter − by hand is the pipeline's own share. Then the container is killed and HAProxy asked until an answer is
 * not the container's (the removal path), and the time the applier took the server out.
 *
 * The collector's throughput is its acknowledged lines/s over `--window-s` before the
 * starts and after them (no starts) and over the starts themselves.
 *
 * Everything of the run is named after its namespace (topics, labels, container names
 * `<run id>-load-<i>` / `<run id>-start-<n>`); the containers are removed at the end.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { busFor } from '../../lib/runtime.js';
import { createRegistry } from '../../lib/metrics.js';
import { BASE_IMAGE } from '../../lib/docker.js';
import { startAutoscale } from '../../processors/autoscale/processor.js';
import { startLoadBalancer } from '../../processors/routes/haproxy.js';
import { HaproxyRuntimeApi } from '../../processors/routes/runtime-api.js';
import { join } from 'node:path';
import { benchNamespace, flags, fmt, freePort, header, nowMs, onInterrupt, out, percentileSorted, sleep, table } from './common.js';
import { BENCH_LABEL, docker, removeRunContainers } from './containers.js';
import type { ClientMessage, ClientRequest } from './route-client.js';
import { startRoutePath, stopAll } from './route-path.js';
import { healthReasons, startRoutePathThread, threadHintCounts, threadLoopDelay, type AppliedFeed } from './route-thread.js';
import type { HintTrace } from '../../processors/routes/hints.js';

const f = flags(['containers', 'rate', 'starts', 'warmup', 'gap-ms', 'window-s', 'probe-gap-ms', 'request-timeout-ms'], ['load', 'routes-thread', 'same-thread', 'no-baseline']);
/** The by-hand baseline (a second HAProxy, the applier's commands sent by the client); `--no-baseline`: without. */
const withHand = !f.bool('no-baseline');
/** The routes lane on a thread of its own, as `logmeter up` runs it (bench/lib/route-thread.ts); without: on this thread, as before. */
const routesThread = !f.bool('same-thread');
const containers = f.num('containers', 50);
const rate = f.num('rate', 6000);
const starts = f.num('starts', 60);
const warmup = f.num('warmup', 2);
const gapMs = f.num('gap-ms', 300);
const windowS = f.num('window-s', 15);
const probeGapMs = f.num('probe-gap-ms', 1);
/** A probe request not answered within this is abandoned and another sent (longer than the quiet bench's 50 ms: on a busy node the app's own answer can take that long). */
const requestTimeoutMs = f.num('request-timeout-ms', 250);
/** Apps of the load containers (each with its own lb-host; containers spread over them). */
const APPS = 10;
/** How long a probe asks before the start counts as not served. */
const PROBE_TIMEOUT_MS = 30_000;
let timeouts = 0;

/**
 * The collector's rate limits lifted for the run (a policy, not a throughput; as bench/end-to-end.ts):
 * at the defaults one tenant gets 1,500 lines/s, and the node must carry `--rate` lines/s
 * (issue 15: at least 5k). A limit given in the environment is kept.
 */
const lifted = Object.fromEntries(
  (['LOGMETER_TENANT_LINES_PER_SECOND', 'LOGMETER_NODE_LINES_PER_SECOND', 'LOGMETER_TENANT_BYTES_PER_SECOND', 'LOGMETER_NODE_BYTES_PER_SECOND'] as const).map((k) => [k, process.env[k] ?? (k.includes('LINES') ? '1000000' : '1000000000')]),
);
const ns = benchNamespace('rload', lifted);
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const stops: Array<() => Promise<unknown>> = [];
let client: ChildProcess | undefined;

const cleanup = async () => {
  if (client?.connected) client.send({ type: 'exit' } satisfies ClientRequest);
  await removeRunContainers(ns.id).catch(() => 0);
  await stopAll(stops, ns);
  await bus.close();
  ns.cleanup();
};
onInterrupt(cleanup);

header('routes under load: `docker start` returned → first 200 through HAProxy vs. the container port, on a busy node', {
  containers,
  'lines/s asked': rate,
  starts,
  warmup,
  'gap ms': gapMs,
  'request timeout ms': requestTimeoutMs,
  'throughput window s': windowS,
  'collector lingerMs': ns.config.collector.lingerMs,
  'routes lane': routesThread ? 'own thread (as `logmeter up`)' : 'this thread',
  'rate limits (tenant / node lines/s)': `${ns.config.collector.rateLimit.linesPerSecond} / ${ns.config.collector.rateLimit.node?.linesPerSecond ?? "default"}`,
});

/** The shell loop of a load container: every 0.1 s, `per` access lines (now, its host) and `per` application lines. */
function loadScript(host: string, per: number): string {
  return [
    'n=0',
    'while :; do',
    "  t=$(date -u '+%d/%b/%Y:%H:%M:%S +0000')",
    '  i=0',
    `  while [ $i -lt ${per} ]; do`,
    `    echo "10.1.0.$i - - [$t] \\"GET /api/items/$n HTTP/1.1\\" 200 $((512 + i)) \\"-\\" \\"bench\\" 0.0$((i % 9 + 1)) 0.0$((i % 9 + 1)) \\"${host}\\""`,
    '    echo "$t INFO [worker-$i] handled request $n items=$i cache=miss user=u$n region=eu"',
    '    i=$((i+1)); n=$((n+1))',
    '  done',
    '  sleep 0.1',
    'done',
  ].join('\n');
}

const pending = new Map<number, (m: ClientMessage) => void>();
let requestId = 0;
const ask = (m: ClientRequest & { id: number }) => {
  const answer = new Promise<ClientMessage>((resolve) => pending.set(m.id, resolve));
  client!.send(m);
  return answer;
};

interface Start {
  startReturned: number;
  lb: number;
  /** First 200 through the by-hand HAProxy (its commands sent by the client when `docker start` returned). */
  hand?: number;
  direct: number;
  applied?: number;
  /** On the routes thread, per hop: the collector sent / Kafka acknowledged its `start` lifecycle event (main thread); the route set's ts (routes thread). */
  lifecycleSent?: number;
  lifecycleAcked?: number;
  published?: number;
  /** On the routes thread: when the applier took the set (Kafka acknowledged its publish). */
  received?: number;
  /** On the routes thread: when the applier began sending the set to HAProxy. */
  started?: number;
  /** On the routes thread: when a start hint (Docker's event seen by the routes thread) brought the server in. */
  hinted?: number;
  /** The hint's own marks (routes thread): Docker's event time, seen by the routes thread, its inspect returned. */
  hintTrace?: HintTrace;
  /** The HAProxy probe's last requests (route-client.ts), for the tail's report. */
  lbTrail?: Array<{ sent: number; took: number; what: string }>;
  killReturned?: number;
  killCalled?: number;
  gone?: number;
  removed?: number;
  /** An applied set without it before its kill, if any (time). */
  removedEarly?: number;
}

const loopDelay = monitorEventLoopDelay({ resolution: 1 });
/** Per container: when the collector sent its `start` lifecycle event and Kafka acknowledged it (routes thread). */
const lifecycleSent = new Map<string, [number, number]>();
/** The routes thread's own event-loop delay during the starts (routes thread). */
let threadDelay: { p50: number; p99: number; max: number } | undefined;
/** The routes thread's start-hint counters after the starts (routes thread). */
let hintCounts: string | undefined;

try {
  await bus.ensureTopics();
  const onLifecycle = (id: string, sent: number, acked: number) => {
    if (!lifecycleSent.has(id)) lifecycleSent.set(id, [sent, acked]);
  };
  const path = routesThread ? await startRoutePathThread({ ns, bus, codec, registry, accessLog: true, onLifecycle }, stops) : await startRoutePath({ ns, bus, codec, registry, accessLog: true }, stops);
  const { collector, lbPort } = path;
  const thread = 'thread' in path ? path.thread : undefined;
  const applier: AppliedFeed =
    'thread' in path
      ? path.applier
      : {
          onApplied: (l) => void path.applier.onApplied((r) => l({ host: r.host, upstreams: r.upstreams, at: nowMs() })),
          waitFor: (host, pred, timeoutMs) => path.applier.waitFor(host, pred, timeoutMs).then(() => undefined),
        };
  // The by-hand baseline: a second HAProxy with the same generated config and no applier; the
  // client sends it the applier's commands for the new host itself as soon as `docker start`
  // returns (route-client.ts). What HAProxy and the app need on this busy node without any pipeline.
  const handPort = await freePort();
  const hand = withHand ? await startLoadBalancer({ docker, dataDir: join(ns.dataDir, 'by-hand'), bind: `127.0.0.1:${handPort}`, labelPrefix: ns.labelPrefix, logger: ns.logger }) : undefined;
  if (hand) stops.push(() => hand.close());
  const handApi = hand ? new HaproxyRuntimeApi(hand.adminSocket) : undefined;
  if (handApi) stops.push(() => Promise.resolve(handApi.close()));
  const autoscale = await startAutoscale({ bus, logger: ns.logger, registry, config: ns.config.autoscale, node: 'bench', labelPrefix: ns.labelPrefix });
  stops.push(() => autoscale.stop());

  /** Per started container: its host, when the applier first had it in HAProxy, and when it had it out again. */
  const hostOf = new Map<string, string>();
  const applied = new Map<string, number>();
  const published = new Map<string, number>();
  const received = new Map<string, number>();
  const started = new Map<string, number>();
  const hinted = new Map<string, number>();
  const hintTraces = new Map<string, HintTrace>();
  applier.onHinted?.((id, at, trace) => {
    if (!hinted.has(id)) hinted.set(id, at);
    if (trace && !hintTraces.has(id)) hintTraces.set(id, trace);
  });
  /** Per container: when an applied set of its host no longer listed it (after one that did). */
  const removals = new Map<string, number[]>();
  applier.onApplied((r) => {
    const at = r.at;
    for (const u of r.upstreams) if (!applied.has(u.container_id)) {
      applied.set(u.container_id, at);
      if (r.published !== undefined) published.set(u.container_id, r.published);
      if (r.received !== undefined) received.set(u.container_id, r.received);
      if (r.started !== undefined) started.set(u.container_id, r.started);
    }
    for (const [id, host] of hostOf) if (host === r.host && applied.has(id) && !r.upstreams.some((u) => u.container_id === id)) removals.set(id, [...(removals.get(id) ?? []), at]);
  });

  // The load: containers logging at `rate` lines/s in total (half access lines).
  const per = Math.max(1, Math.round(rate / containers / 10 / 2));
  process.stderr.write(`  starting ${containers} load containers (${per} access + ${per} app lines every 0.1 s each)\n`);
  for (let i = 0; i < containers; i++) {
    const app = `load${i % APPS}`;
    const host = `${app}-${ns.id}.test`;
    const c = await docker.createContainer({
      name: `${ns.id}-load-${i}`,
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', loadScript(host, per)],
      Labels: { [BENCH_LABEL]: ns.id, [`${ns.labelPrefix}tenant`]: 'acme', [`${ns.labelPrefix}app`]: app, [`${ns.labelPrefix}log-format`]: 'nginx-combined', [`${ns.labelPrefix}lb-host`]: host },
      HostConfig: { Init: true },
    });
    await c.start();
  }

  client = fork(fileURLToPath(new URL('./route-client.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  client.on('message', (m: ClientMessage) => {
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });

  const lines = async () => (await collector.summary()).linesProduced;
  const throughput = async (seconds: number) => {
    const a = await lines();
    const t = nowMs();
    await sleep(seconds * 1000);
    return ((await lines()) - a) / ((nowMs() - t) / 1000);
  };
  await sleep(5000);
  process.stderr.write(`  collector lines/s without starts (before): measuring ${windowS} s\n`);
  const before = await throughput(windowS);

  const list: Start[] = [];
  const startLines = await lines();
  const startsBegan = nowMs();
  loopDelay.enable();
  if (thread) await threadLoopDelay(thread);
  for (let n = -warmup; n < starts; n++) {
    const host = `s${n + warmup}-${ns.id}.test`;
    const port = await freePort();
    const c = await docker.createContainer({
      name: `${ns.id}-start-${n + warmup}`,
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'],
      Labels: { [BENCH_LABEL]: ns.id, [`${ns.labelPrefix}tenant`]: 'acme', [`${ns.labelPrefix}app`]: 'web', [`${ns.labelPrefix}lb-host`]: host, [`${ns.labelPrefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
    });
    hostOf.set(c.id, host);
    const short = c.id.slice(0, 12);
    const lbTarget = { name: 'lb', port: lbPort, host, expect: short, afterStart: true };
    const targets = [lbTarget, { name: 'direct', port, host, expect: short, afterStart: true }, ...(hand ? [{ name: 'hand', port: handPort, host, expect: short, afterStart: true }] : [])];
    const byHand = hand ? { byHand: { adminSocket: hand.adminSocket, mapFile: hand.mapFile, backend: 'be_slot_0', server: short, port, host } } : {};
    const a = await ask({ type: 'start', id: ++requestId, containerId: c.id, targets, ...byHand, timeoutMs: PROBE_TIMEOUT_MS, gapMs: probeGapMs, requestTimeoutMs });
    if (a.type !== 'result') throw new Error(`route client: ${a.type === 'error' ? a.message : a.type}`);
    // No 200 within the probe's 30 s: counted as 30 s (and reported), the run goes on.
    const lb = a.results.lb?.servedAt ?? a.startReturned + PROBE_TIMEOUT_MS;
    const direct = a.results.direct?.servedAt ?? a.startReturned + PROBE_TIMEOUT_MS;
    if (a.results.lb?.servedAt == null || a.results.direct?.servedAt == null) {
      if (n >= 0) timeouts++;
      process.stderr.write(`  ${host}: no 200 within ${PROBE_TIMEOUT_MS} ms (HAProxy: ${a.results.lb?.last}; direct: ${a.results.direct?.last})\n`);
    }
    const s: Start = { startReturned: a.startReturned, lb, direct, hand: a.results.hand?.servedAt ?? undefined, lbTrail: a.results.lb?.trail };
    // The removal path: killed → no request reaches it; and the applier took it out.
    const k = await ask({ type: 'kill', id: ++requestId, containerId: c.id, target: { ...lbTarget, afterStart: false }, timeoutMs: PROBE_TIMEOUT_MS, gapMs: probeGapMs, requestTimeoutMs });
    if (k.type !== 'killed') throw new Error(`route client: ${k.type === 'error' ? k.message : k.type}`);
    s.killReturned = k.killReturned;
    s.killCalled = k.killCalled;
    if (handApi && hand) {
      await handApi.delMapEntry(hand.mapFile, host);
      await handApi.setServerState('be_slot_0', short, 'maint');
      await handApi.shutdownSessions('be_slot_0', short);
      const end = nowMs() + 10_000;
      while (!(await handApi.delServer('be_slot_0', short).then(() => true, () => false))) {
        if (nowMs() > end) throw new Error(`by-hand server ${short} not deletable within 10 s`);
        await sleep(50);
      }
    }
    s.gone = k.goneAt ?? undefined;
    // Only a container some applied set listed has a set to wait for: one only hinted, whose start and
    // end reached the route table in one pass, never gets a set (its hint was retracted in HAProxy).
    if (applied.has(c.id)) await applier.waitFor(host, (r) => !r.upstreams.some((u) => u.container_id === c.id), 60_000).catch(() => process.stderr.write(`  ${host}: its server still in HAProxy 60 s after the kill\n`));
    // Read only now: from a thread, the applier's events may come after the probe's answer.
    s.applied = applied.get(c.id);
    s.published = published.get(c.id);
    s.received = received.get(c.id);
    s.started = started.get(c.id);
    s.hinted = hinted.get(c.id);
    s.hintTrace = hintTraces.get(c.id);
    [s.lifecycleSent, s.lifecycleAcked] = lifecycleSent.get(c.id) ?? [undefined, undefined];
    // The first after the kill; one before it (the container taken out while it ran) is reported apart.
    const times = removals.get(c.id) ?? [];
    s.removed = times.find((t) => t >= k.killCalled);
    s.removedEarly = times.find((t) => t < k.killCalled);
    await c.remove({ force: true });
    hostOf.delete(c.id);
    if (n >= 0) list.push(s);
    if (n < 0 || (n + 1) % 10 === 0) process.stderr.write(`  start ${n < 0 ? `warm-up ${n + warmup + 1}` : n + 1}: HAProxy +${(lb - a.startReturned).toFixed(1)} ms, direct +${(direct - a.startReturned).toFixed(1)} ms, gone after kill +${((s.gone ?? NaN) - k.killReturned).toFixed(1)} ms\n`);
    await sleep(gapMs);
  }
  loopDelay.disable();
  threadDelay = thread ? await threadLoopDelay(thread) : undefined;
  hintCounts = thread ? await threadHintCounts(thread) : undefined;
  const during = ((await lines()) - startLines) / ((nowMs() - startsBegan) / 1000);
  process.stderr.write(`  collector lines/s without starts (after): measuring ${windowS} s\n`);
  const after = await throughput(windowS);
  report(list, { before, during, after });
} finally {
  await cleanup();
}

function report(list: Start[], tp: { before: number; during: number; after: number }): void {
  const stats = (xs: number[]) => {
    const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
    return { n: s.length, p50: percentileSorted(s, 50), p90: percentileSorted(s, 90), p99: percentileSorted(s, 99), max: s[s.length - 1] ?? NaN };
  };
  const ms = (x: number) => fmt(x, 1);
  const row = (label: string, xs: number[]) => {
    const s = stats(xs);
    return [label, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max)];
  };
  out(`${list.length} starts on a node with ${containers} logging containers; ms from \`docker start\` returned (p = nearest rank)`);
  table(
    ['what', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
    [
      row('via HAProxy (Host header): first 200', list.map((s) => s.lb - s.startReturned)),
      row('container port directly: first 200 (baseline)', list.map((s) => s.direct - s.startReturned)),
      row('added by logmeter (HAProxy − direct, same start)', list.map((s) => s.lb - s.direct)),
      ...(withHand
        ? [
            row('by-hand HAProxy (commands sent when `docker start` returned): first 200', list.map((s) => (s.hand ?? NaN) - s.startReturned)),
            row('by hand − direct (HAProxy and the app alone, no pipeline)', list.map((s) => (s.hand ?? NaN) - s.direct)),
            row('logmeter − by hand (the pipeline\'s own share)', list.map((s) => s.lb - (s.hand ?? NaN))),
          ]
        : []),
      ...(routesThread
        ? [
            row('hop: collector sent the start lifecycle event (main thread)', list.map((s) => (s.lifecycleSent ?? NaN) - s.startReturned)),
            row('hop: … Kafka acknowledged it', list.map((s) => (s.lifecycleAcked ?? NaN) - s.startReturned)),
            row("hint: Docker's start event (its own time)", list.map((s) => (s.hintTrace?.event ?? NaN) - s.startReturned)),
            row('hint: … seen by the routes thread', list.map((s) => (s.hintTrace?.seen ?? NaN) - s.startReturned)),
            row('hint: … its inspect returned', list.map((s) => (s.hintTrace?.inspected ?? NaN) - s.startReturned)),
            row('hop: start hint in HAProxy (Docker event seen by the routes thread)', list.map((s) => (s.hinted ?? NaN) - s.startReturned)),
            row('hop: route set published (its ts; routes thread)', list.map((s) => (s.published ?? NaN) - s.startReturned)),
            row('hop: … the applier took it (Kafka acknowledged the set)', list.map((s) => (s.received ?? NaN) - s.startReturned)),
            row('hop: … the applier began sending it to HAProxy', list.map((s) => (s.started ?? NaN) - s.startReturned)),
          ]
        : []),
      row('route applied in HAProxy (applier done)', list.map((s) => (s.applied ?? NaN) - s.startReturned)),
      row('removal: kill returned → no request reaches it', list.map((s) => (s.gone ?? NaN) - (s.killReturned ?? NaN))),
      row('removal: `docker kill` called → returned (dockerd waits for the end)', list.map((s) => (s.killReturned ?? NaN) - (s.killCalled ?? NaN))),
      row('removal: kill called → server taken out by the applier', list.map((s) => (s.removed ?? NaN) - (s.killCalled ?? NaN))),
    ],
  );
  if (routesThread) {
    // The tail, start by start: where the slowest starts' time went (ms from `docker start` returned).
    const rel = (x: number | undefined, s: Start) => (x == null ? '-' : ms(x - s.startReturned));
    const slow = [...list].sort((a, b) => b.lb - b.direct - (a.lb - a.direct)).slice(0, 5);
    out('the 5 starts with the most added, ms from `docker start` returned:');
    table(
      ['added', 'direct 200', 'by-hand 200', 'HAProxy 200', 'docker event', 'seen (thread)', 'inspected', 'hint in HAProxy', 'set applied'],
      slow.map((s) => [ms(s.lb - s.direct), ms(s.direct - s.startReturned), rel(s.hand, s), ms(s.lb - s.startReturned), rel(s.hintTrace?.event, s), rel(s.hintTrace?.seen, s), rel(s.hintTrace?.inspected, s), rel(s.hinted, s), rel(s.applied, s)]),
    );
    out("their HAProxy probe's last requests (sent, ms from `docker start` returned; took ms; answer):");
    for (const s of slow) out(`  +${ms(s.lb - s.direct)}: ${(s.lbTrail ?? []).map((r) => `[${ms(r.sent - s.startReturned)} ${ms(r.took)} ${r.what}]`).join(' ')}`);
  }
  const early = list.filter((s) => s.removedEarly !== undefined);
  if (early.length > 0) out(`${early.length} start(s): an applied set without the container before its kill, ${early.map((s) => `+${ms(s.removedEarly! - s.startReturned)}`).join(', ')} ms after \`docker start\` returned`);
  if (timeouts > 0) out(`${timeouts} start(s) not served within ${PROBE_TIMEOUT_MS} ms by HAProxy or directly: counted as ${PROBE_TIMEOUT_MS} ms above`);
  const without = (tp.before + tp.after) / 2;
  out(`collector lines/s: without starts ${fmt(without)} (before ${fmt(tp.before)}, after ${fmt(tp.after)}); during the starts ${fmt(tp.during)} (${fmt((tp.during / without) * 100, 1)} % of without)`);
  out(`event-loop delay of the pipeline process${routesThread ? "'s main thread" : ''} during the starts: p50 ${ms(loopDelay.percentile(50) / 1e6)}, p99 ${ms(loopDelay.percentile(99) / 1e6)}, max ${ms(loopDelay.max / 1e6)} ms`);
  if (hintCounts) out(`start hints (routes thread, warm-up included): ${hintCounts}`);
  if (routesThread) out(`route sets published for HTTP health (upstreams ejected for 5xx or back on probation): ${healthReasons.length}${healthReasons.slice(0, 3).map((r) => `\n  ${r}`).join('')}`);
  if (threadDelay) out(`event-loop delay of the routes thread during the starts: p50 ${ms(threadDelay.p50)}, p99 ${ms(threadDelay.p99)}, max ${ms(threadDelay.max)} ms (5 ms resolution)`);
  out('target (issue 15): added p50 ≤ 10 ms, p99 ≤ 100 ms; lines/s during the starts ≥ 90 % of without');
}
