/**
 * Container start → route live: from Docker's `start` event of a container with an
 * `lb-host` label to the first request it answers through HAProxy, on the real path
 * that `logmeter up` runs in one process: Docker events → collector → lifecycle topic
 * → route table processor → routes topic → route applier → HAProxy runtime API.
 *
 *   node --import tsx bench/routes.ts [--rounds 3] [--starts 60] [--warmup 2] [--gap-ms 200]
 *        [--probe-gap-ms 1] [--no-baseline] [--no-probe]
 *   node --import tsx bench/routes.ts --load [...]   (a busy node: see bench/lib/routes-load.ts)
 *
 * Each start: a new busybox httpd container (a new host name each time, so the path
 * includes handing a backend to a new host), its port published on a port chosen
 * beforehand, is created. A client in a process of its own (lib/route-client.ts)
 * starts asking for it, then starts it; the time of the first 200 with the container's
 * own name in the body is compared with the time of Docker's `start` event (read from
 * Docker's event stream by this script). Afterwards the container is removed and the
 * next start waits until the removal reached HAProxy, so starts do not overlap.
 *
 * Baselines, on the same container in the same start:
 *   - direct: the container's published port asked directly (no HAProxy, no pipeline)
 *     from the moment `docker start` returned: when the app itself answers. No route can
 *     serve earlier.
 *   - by hand: a second HAProxy with the same generated config, no applier: as soon as
 *     `docker start` returns, the client sends the applier's commands for a new host
 *     itself (`add server`, `enable server`, `add map`) through the same runtime API
 *     client. What HAProxy and the app need without any pipeline.
 * The pipeline's share is the difference to the by-hand baseline.
 *
 * Where the time goes: the collector's Docker client, the bus and the processor's and
 * applier's hooks are tapped (bench-side wrappers; the product code is unchanged), so
 * each start also gives the time, from the start event, at which the collector asked
 * Docker to inspect the container, sent the lifecycle event, had it acknowledged, the
 * route processor received it and had the route set acknowledged, the applier received
 * the set and had applied it to HAProxy.
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LifecycleEvent, RouteSet } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import type { EventBus } from '../lib/bus/bus.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { HaproxyRuntimeApi } from '../processors/routes/runtime-api.js';
import { benchNamespace, flags, fmt, freePort, header, median, nowMs, onInterrupt, out, percentileSorted, sleep, table, until } from './lib/common.js';
import { BENCH_LABEL, docker, removeRunContainers } from './lib/containers.js';
import type { ClientMessage, ClientRequest, ProbeTarget } from './lib/route-client.js';
import { startRoutePath, stopAll } from './lib/route-path.js';
import { tapBus } from './lib/tap.js';

// The busy node (issue 15): a benchmark of its own, bench/lib/routes-load.ts.
if (process.argv.includes('--load')) {
  await import('./lib/routes-load.js');
  process.exit(process.exitCode ?? 0);
}

const f = flags(['rounds', 'starts', 'warmup', 'gap-ms', 'probe-gap-ms'], ['no-baseline', 'no-probe']);
if (f.bool('help')) {
  out('node --import tsx bench/routes.ts [--rounds 3] [--starts 60] [--warmup 2] [--gap-ms 200] [--probe-gap-ms 1] [--no-baseline] [--no-probe]');
  process.exit(0);
}
const rounds = f.num('rounds', 3);
const starts = f.num('starts', 60);
const warmup = f.num('warmup', 2);
const gapMs = f.num('gap-ms', 200);
const probeGapMs = f.num('probe-gap-ms', 1);
const withBaseline = !f.bool('no-baseline');
/** No HTTP probes: route live in HAProxy only, on a quiet node (the probes' requests are logged by HAProxy and keep the collector busy). */
const probe = !f.bool('no-probe');

/** Times of one start, epoch ms; the start event is the origin of every figure. */
interface Marks {
  /** Docker's `start` event (its timeNano). */
  event?: number;
  /** This script's own Docker event stream delivered it (how late dockerd hands events out). */
  eventSeen?: number;
  /** The client: `docker start` called, returned; the by-hand commands done. */
  startCalled?: number;
  startReturned?: number;
  manualDone?: number;
  /** The collector asked Docker to inspect the (running) container, and had the answer. */
  inspect?: number;
  inspected?: number;
  /** The collector's Kafka request holding the `start` lifecycle event: sent, acknowledged. */
  sent?: number;
  acked?: number;
  /** The route processor's handler got the `start` event. */
  processor?: number;
  /** The route set with the container acknowledged by Kafka (the processor's onPublished). */
  published?: number;
  /** The applier's reader got that set. */
  applier?: number;
  /** The applier applied it to HAProxy (its onApplied). */
  applied?: number;
  /** First 200 from the container: through HAProxy (pipeline), through the by-hand HAProxy, directly. */
  served?: number;
  manualServed?: number;
  directServed?: number;
}

const ns = benchNamespace('routes');
const codec = await AvroCodec.create(new ManifestSource());
const realBus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const marks = new Map<string, Marks>();
const mark = (id: string, key: keyof Marks, at: number) => {
  const m = marks.get(id);
  if (m && m[key] === undefined) m[key] = at;
};
/**
 * The collector's inspects of a running benchmark container (begin, end). The collector
 * handles Docker's events one at a time, so the `start` event's inspect is the last one
 * that ended before its lifecycle event was sent (create and network events come first).
 */
const inspects = new Map<string, Array<[number, number]>>();

/** The bus as the collector, processor and applier see it, with the times of the start path noted. */
const bus: EventBus = tapBus(realBus, {
  rawBatch(batches, sent, acked) {
    const lifecycle = realBus.topic('lifecycle');
    for (const b of batches) {
      if (b.topic !== lifecycle) continue;
      for (const m of b.messages) {
        const e = codec.decode('lifecycle', m.value);
        if (e.action !== 'start') continue;
        mark(e.container_id, 'sent', sent);
        mark(e.container_id, 'acked', acked);
      }
    }
  },
  handled(group, batch, at) {
    for (const m of batch) {
      if (m.topic === 'lifecycle' && group === 'routes') {
        const e = m.event as LifecycleEvent;
        if (e.action === 'start') mark(e.container_id, 'processor', at);
      } else if (m.topic === 'routes' && group.startsWith('route-applier')) {
        for (const u of (m.event as RouteSet).upstreams) mark(u.container_id, 'applier', at);
      }
    }
  },
});

/** The collector's Docker client, noting when it inspects a benchmark container that is running (the `start` event's inspect). */
const collectorDocker: Docker = new Proxy(docker, {
  get(target, prop, receiver) {
    if (prop === 'getContainer') {
      return (id: string) => {
        const c = target.getContainer(id);
        if (!marks.has(id)) return c;
        const inspect = async () => {
          const begin = nowMs();
          const info = await c.inspect();
          if (info.State?.Running) inspects.get(id)?.push([begin, nowMs()]);
          return info;
        };
        return Object.assign(Object.create(c) as Docker.Container, { inspect });
      };
    }
    const v: unknown = Reflect.get(target, prop, receiver);
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
  },
});

const stops: Array<() => Promise<unknown>> = [];
let client: ChildProcess | undefined;
let events: (NodeJS.ReadableStream & { destroy(): void }) | undefined;

const cleanup = async () => {
  events?.destroy();
  if (client?.connected) client.send({ type: 'exit' } satisfies ClientRequest);
  await removeRunContainers(ns.id).catch(() => 0);
  await stopAll(stops, ns);
  await realBus.close();
  ns.cleanup();
};
onInterrupt(cleanup);

header('routes: container start event → first request served through HAProxy', {
  rounds,
  'starts per round': starts,
  warmup,
  'gap ms': gapMs,
  'probe gap ms': probeGapMs,
  baseline: withBaseline,
  probes: probe,
  'collector lingerMs': ns.config.collector.lingerMs,
  'applier checkIntervalMs': ns.config.routes.applier.checkIntervalMs,
});

const pending = new Map<number, (m: ClientMessage) => void>();
let requestId = 0;
/** Event-loop delay of this process (collector, route processor and applier share it, as in `logmeter up`). */
const loopDelay = monitorEventLoopDelay({ resolution: 1 });

try {
  await realBus.ensureTopics();
  // Docker's own time of each start event (the origin of every figure).
  events = (await docker.getEvents({ filters: { type: ['container'], event: ['start'], label: [`${BENCH_LABEL}=${ns.id}`] } })) as unknown as NodeJS.ReadableStream & { destroy(): void };
  let buf = '';
  events.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const e = JSON.parse(line) as { Actor?: { ID?: string }; timeNano?: number };
      if (e.Actor?.ID && e.timeNano) {
        mark(e.Actor.ID, 'event', e.timeNano / 1e6);
        mark(e.Actor.ID, 'eventSeen', nowMs());
      }
    }
  });
  events.on('error', () => undefined);

  const { processor, applier, lbPort } = await startRoutePath({ ns, bus, codec, registry, collectorDocker }, stops);
  const manualPort = await freePort();
  let manualLb: LoadBalancer | undefined;
  if (withBaseline) {
    const by = await startLoadBalancer({ docker, dataDir: path.join(ns.dataDir, 'by-hand'), bind: `127.0.0.1:${manualPort}`, labelPrefix: ns.labelPrefix, logger: ns.logger });
    stops.push(() => by.close());
    manualLb = by;
  }
  const manualApi = manualLb ? new HaproxyRuntimeApi(manualLb.adminSocket) : undefined;
  const manualMap = manualLb?.mapFile ?? '';
  processor.onPublished((sets) => {
    const at = nowMs();
    for (const s of sets) {
      for (const u of s.upstreams) {
        mark(u.container_id, 'published', at);
        // The applier takes the set from here too (`local`, as in `logmeter up`), or from its fetch if that was first.
        mark(u.container_id, 'applier', at);
      }
    }
  });
  applier.onApplied((r) => {
    for (const u of r.upstreams) mark(u.container_id, 'applied', r.appliedAt);
  });

  client = fork(fileURLToPath(new URL('./lib/route-client.ts', import.meta.url)), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  client.on('message', (m: ClientMessage) => {
    pending.get(m.id)?.(m);
    pending.delete(m.id);
  });

  /** One start, measured; the container is gone again (also from HAProxy) when it returns. */
  async function oneStart(round: number, n: number): Promise<Marks> {
    const host = `r${round}s${n}-${ns.id}.test`;
    const port = await freePort();
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www'],
      Labels: { [BENCH_LABEL]: ns.id, [`${ns.labelPrefix}tenant`]: 'acme', [`${ns.labelPrefix}app`]: 'web', [`${ns.labelPrefix}lb-host`]: host, [`${ns.labelPrefix}lb-port`]: '80' },
      ExposedPorts: { '80/tcp': {} },
      HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: String(port) }] } },
    });
    const m: Marks = {};
    marks.set(c.id, m);
    inspects.set(c.id, []);
    const short = c.id.slice(0, 12);
    const id = ++requestId;
    const targets: ProbeTarget[] = [];
    if (probe) targets.push({ name: 'pipeline', port: lbPort, host, expect: short });
    if (probe && manualLb) targets.push({ name: 'manual', port: manualPort, host, expect: short }, { name: 'direct', port, host, expect: short, afterStart: true });
    const answer = new Promise<ClientMessage>((resolve) => pending.set(id, resolve));
    client!.send({
      type: 'start',
      id,
      containerId: c.id,
      targets,
      ...(manualLb ? { byHand: { adminSocket: manualLb.adminSocket, mapFile: manualMap, backend: 'be_slot_0', server: short, port, host } } : {}),
      timeoutMs: 30_000,
      gapMs: probeGapMs,
      requestTimeoutMs: 50,
    } satisfies ClientRequest);
    const a = await answer;
    if (a.type !== 'result') throw new Error(`route client: ${a.type === 'error' ? a.message : a.type}`);
    const r = a.results;
    m.startCalled = a.startCalled;
    m.startReturned = a.startReturned;
    m.manualDone = a.byHandDone ?? undefined;
    m.served = r.pipeline?.servedAt ?? undefined;
    m.manualServed = r.manual?.servedAt ?? undefined;
    m.directServed = r.direct?.servedAt ?? undefined;
    for (const [name, x] of Object.entries(r)) if (x.servedAt === null) throw new Error(`${host}: ${name} never answered 200 within 30 s (${x.requests} requests, last: ${x.last})`);
    await until(`every mark of ${short}`, () => m.event !== undefined && m.applied !== undefined && m.published !== undefined, 10_000, 5);
    const own = inspects.get(c.id)!.filter(([, end]) => m.sent !== undefined && end <= m.sent);
    const last = own[own.length - 1];
    if (last) [m.inspect, m.inspected] = last;
    inspects.delete(c.id);
    // Gone again: the container, its by-hand route, and (awaited) its route in HAProxy.
    await c.remove({ force: true });
    if (manualApi) {
      await manualApi.delMapEntry(manualMap, host);
      await manualApi.setServerState('be_slot_0', short, 'maint');
      await manualApi.shutdownSessions('be_slot_0', short);
      await until(`by-hand server ${short} deleted`, () => manualApi.delServer('be_slot_0', short).then(() => true, () => false), 10_000, 50);
    }
    await applier.waitFor(host, (a) => !a.upstreams.some((u) => u.container_id === c.id), 30_000);
    marks.delete(c.id);
    return m;
  }

  const byRound: Marks[][] = [];
  loopDelay.enable();
  for (let round = 0; round < rounds; round++) {
    const list: Marks[] = [];
    for (let n = round === 0 ? -warmup : 0; n < starts; n++) {
      const m = await oneStart(round, n);
      if (n >= 0) list.push(m);
      const since = (k: keyof Marks) => (m[k] ?? NaN) - m.event!;
      const served = probe ? `, first 200 +${since('served').toFixed(1)} ms (by hand +${since('manualServed').toFixed(1)}, direct +${since('directServed').toFixed(1)})` : '';
      if (n < 0 || (n + 1) % 10 === 0) process.stderr.write(`  round ${round + 1} start ${n < 0 ? `warm-up ${n + warmup + 1}` : n + 1}: route live +${since('applied').toFixed(1)} ms${served}\n`);
      await sleep(gapMs);
    }
    byRound.push(list);
  }
  loopDelay.disable();
  manualApi?.close();
  report(byRound);
} finally {
  await cleanup();
}

function report(byRound: Marks[][]): void {
  const all = byRound.flat();
  /** Per round p50/p99/max of `fn`, then the median of each over the rounds; and over all starts together. */
  const stats = (fn: (m: Marks) => number) => {
    const per = byRound.map((ms) => {
      const s = ms.map(fn).filter(Number.isFinite).sort((a, b) => a - b);
      return { p50: percentileSorted(s, 50), p99: percentileSorted(s, 99), max: s[s.length - 1] ?? NaN };
    });
    const pooled = all.map(fn).filter(Number.isFinite).sort((a, b) => a - b);
    return {
      p50: median(per.map((p) => p.p50)),
      p99: median(per.map((p) => p.p99)),
      max: median(per.map((p) => p.max)),
      per,
      pooled: { n: pooled.length, p50: percentileSorted(pooled, 50), p99: percentileSorted(pooled, 99), max: pooled[pooled.length - 1] ?? NaN },
    };
  };
  const from = (k: keyof Marks, origin: keyof Marks = 'event') => (m: Marks) => (m[k] ?? NaN) - (m[origin] ?? NaN);
  const live = stats(from('applied'));
  const pipeline = stats(from('served'));
  const manualLive = stats(from('manualDone'));
  const manual = stats(from('manualServed'));
  const direct = stats(from('directServed'));
  const ms = (x: number) => fmt(x, 1);
  const row = (label: string, x: ReturnType<typeof stats>, vs: ReturnType<typeof stats>) => [label, ms(x.p50), ms(x.p99), ms(x.max), `${fmt(vs.p50 / x.p50, 1)} ×`];
  const rows: string[][] = [row('pipeline: start event → route live in HAProxy (applier done)', live, live)];
  if (withBaseline) rows.push(row('baseline: runtime API by hand on `docker start` returning → route live', manualLive, live));
  if (probe) {
    rows.push(row('pipeline: start event → first 200 through HAProxy', pipeline, pipeline));
    if (withBaseline) {
      rows.push(
        row('baseline: runtime API by hand on `docker start` returning → first 200 through HAProxy', manual, pipeline),
        row('baseline: start event → first 200 from the container port directly', direct, pipeline),
      );
    }
  }
  out(`median over ${byRound.length} round(s) of ${starts} starts each (per round: p50, p99 = nearest rank, max); ms from Docker's start event; the ratio is the pipeline's p50 (route live, or first 200) over this row's`);
  table(['what', 'p50 ms', 'p99 ms', 'max ms', 'pipeline / this'], rows);

  const STAGES: Array<[keyof Marks, string]> = [
    ['startReturned', '`docker start` returned (client)'],
    ['eventSeen', 'Docker event stream delivers the start event (to this script)'],
    ['inspect', 'collector: inspect of the started container begins (event read)'],
    ['inspected', 'collector: inspect answered'],
    ['sent', 'collector: Kafka request with the lifecycle event sent'],
    ['acked', 'collector: lifecycle event acknowledged by Kafka'],
    ['processor', 'route processor: event received (consumer fetch)'],
    ['published', 'route processor: route set acknowledged by Kafka'],
    ['applier', 'applier: route set received (in-process hand-off or its fetch)'],
    ['applied', 'applier: add server / enable / add map done'],
    ['served', 'client: first 200 through HAProxy'],
  ];
  const stageRows: string[][] = [];
  let prev: keyof Marks = 'event';
  for (const [k, label] of STAGES) {
    const cum = stats(from(k));
    const step = stats((m) => (m[k] ?? NaN) - (m[prev] ?? NaN));
    stageRows.push([label, ms(cum.p50), ms(cum.p99), ms(step.p50), ms(step.p99)]);
    if (k !== 'startReturned' && k !== 'eventSeen') prev = k;
  }
  out('where the time goes: each mark as time since the start event (cumulative) and since the mark before it (step); median over rounds');
  table(['mark', 'at p50 ms', 'at p99 ms', 'step p50 ms', 'step p99 ms'], stageRows);

  out(`per round, route live p50 / p99 / max (ms): ${live.per.map((p) => `${ms(p.p50)} / ${ms(p.p99)} / ${ms(p.max)}`).join(' · ')}`);
  out(`all ${live.pooled.n} starts together, route live: p50 ${ms(live.pooled.p50)}, p99 ${ms(live.pooled.p99)}, max ${ms(live.pooled.max)} ms`);
  if (probe) {
    out(`per round, first 200 p50 / p99 / max (ms): ${pipeline.per.map((p) => `${ms(p.p50)} / ${ms(p.p99)} / ${ms(p.max)}`).join(' · ')}`);
    out(`all ${pipeline.pooled.n} starts together, first 200: p50 ${ms(pipeline.pooled.p50)}, p99 ${ms(pipeline.pooled.p99)}, max ${ms(pipeline.pooled.max)} ms`);
  }
  if (withBaseline && probe) {
    out(`all starts together, by hand: p50 ${ms(manual.pooled.p50)}, p99 ${ms(manual.pooled.p99)}; direct: p50 ${ms(direct.pooled.p50)}, p99 ${ms(direct.pooled.p99)} ms`);
    const share = stats((m) => (m.served ?? NaN) - (m.manualServed ?? NaN));
    out(`pipeline's own share (pipeline − by hand, same start): p50 ${ms(share.p50)}, p99 ${ms(share.p99)} ms`);
  }
  if (withBaseline) {
    const handCmds = stats(from('manualDone', 'startReturned'));
    out(`by-hand commands (add server, enable server, add map) after \`docker start\` returned: p50 ${ms(handCmds.p50)}, p99 ${ms(handCmds.p99)} ms`);
  }
  const startApi = stats(from('startReturned'));
  const directAfterStart = stats(from('directServed', 'startReturned'));
  out(`\`docker start\` returned after the start event: p50 ${ms(startApi.p50)} ms${probe && withBaseline ? `; app answering directly after \`docker start\` returned: p50 ${ms(directAfterStart.p50)}, p99 ${ms(directAfterStart.p99)} ms` : ''}`);
  out(`event-loop delay of the pipeline process over the rounds: p50 ${ms(loopDelay.percentile(50) / 1e6)}, p99 ${ms(loopDelay.percentile(99) / 1e6)}, max ${ms(loopDelay.max / 1e6)} ms`);
  out('target (DESIGN.md): container start → route live in HAProxy p99 < 100 ms (aim 20 ms)');
}
