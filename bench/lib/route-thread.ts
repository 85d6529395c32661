/**
 * The routing path as `logmeter up` runs it since issue 15's thread: the collector (and,
 * with `accessLog`, the access-log parser) on this thread, the routes lane (route table
 * processor, HAProxy on a free port, applier) on a thread of its own through the product's
 * thread host (app/thread-host.ts, app/routes-thread.ts), with the run's label prefix.
 * The applier's applied versions come over the thread's `applied` events.
 */
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { EventBus } from '../../lib/bus/bus.js';
import type { AvroCodec } from '../../schemas/codec.js';
import { collectorConfigSchema } from '../../ingest/config.js';
import { createCollector, type Collector } from '../../ingest/collector.js';
import { startAccessLogParser } from '../../processors/access-log/processor.js';
import { startThread, type ThreadHost } from '../../app/thread-host.js';
import type { Config } from '../../app/config.js';
import type { RoutesEvent } from '../../app/routes-lane.js';
import type { HintTrace } from '../../processors/routes/hints.js';
import { createBus } from '../../lib/bus/create.js';
import { freePort, type BenchNamespace } from './common.js';
import { tapBus } from './tap.js';
import { docker as benchDocker } from './containers.js';

/** What the benchmarks use of an applier: its applied versions (`at`: epoch ms when the thread saw it applied). */
export interface AppliedFeed {
  /** `published`: the set's `ts` (when the route processor published it); `received`: when the applier took it; `started`: when it began sending it to HAProxy; where known. */
  onApplied(listener: (r: { host: string; upstreams: Array<{ container_id: string }>; at: number; published?: number; received?: number; started?: number }) => void): void;
  /** Each start hint the applier brought into HAProxy (`at`: epoch ms), where the feed knows them. */
  onHinted?(listener: (containerId: string, at: number, trace?: HintTrace) => void): void;
  /** Resolves once an applied version of `host` satisfies `pred` (the last one known, or a later one). */
  waitFor(host: string, pred: (r: { upstreams: Array<{ container_id: string }> }) => boolean, timeoutMs: number): Promise<void>;
}

export interface ThreadRoutePath {
  collector: Collector;
  thread: ThreadHost;
  applier: AppliedFeed;
  lbPort: number;
}

export async function startRoutePathThread(
  o: { ns: BenchNamespace; bus: EventBus; codec: AvroCodec; registry: Registry; accessLog?: boolean; onLifecycle?: (containerId: string, sent: number, acked: number) => void },
  stops: Array<() => Promise<unknown>>,
): Promise<ThreadRoutePath> {
  const { ns, bus, codec, registry } = o;
  // The collector's lifecycle producer (its own bus, as it makes one by default), tapped: when each `start` event was sent and acknowledged.
  const lifecycleBus = createBus(bus.config, codec, ns.logger);
  stops.push(() => lifecycleBus.close());
  const lifecycleTopic = bus.topic('lifecycle');
  const tapped = tapBus(lifecycleBus, {
    rawBatch(batches, sent, acked) {
      for (const b of batches) {
        if (b.topic !== lifecycleTopic) continue;
        for (const m of b.messages) {
          const e = codec.decode('lifecycle', m.value);
          if (e.action === 'start') o.onLifecycle?.(e.container_id, sent, acked);
        }
      }
    },
  });
  const collector = createCollector({
    lifecycleBus: tapped,
    cfg: collectorConfigSchema.parse({ ...ns.config.collector, labelPrefix: ns.labelPrefix }),
    node: 'bench',
    stateDir: path.join(ns.dataDir, 'collector'),
    docker: benchDocker,
    bus,
    codec,
    logger: ns.logger,
    registry,
  });
  await collector.start();
  stops.push(() => collector.stop());
  if (o.accessLog) {
    const parser = await startAccessLogParser({ bus, logger: ns.logger, registry });
    stops.push(() => parser.stop());
  }
  const lbPort = await freePort();
  const last = new Map<string, { upstreams: Array<{ container_id: string }> }>();
  const listeners = new Set<(r: { host: string; upstreams: Array<{ container_id: string }>; at: number; published?: number; received?: number; started?: number }) => void>();
  const hintListeners = new Set<(containerId: string, at: number, trace?: HintTrace) => void>();
  const config: Config = { ...ns.config, node: 'bench', routes: { ...ns.config.routes, labelPrefix: ns.labelPrefix, lb: { ...ns.config.routes.lb, bind: `127.0.0.1:${lbPort}` } } };
  const thread = await startThread<Config>({
    name: 'routes',
    module: new URL('../../app/routes-thread.ts', import.meta.url),
    config,
    logger: ns.logger,
    registry,
    logLevel: ns.config.log.level,
    // As the benchmark's own logger: stderr, the tables on stdout.
    logDestination: 2,
    onEvent: (event, payload) => {
      const e = { event, payload } as RoutesEvent;
      if (e.event === 'hinted') for (const l of hintListeners) l(e.payload.container, e.payload.at, e.payload.trace);
      if (e.event === 'published') for (const set of e.payload.sets) if (/ejected|probation/.test(set.reason)) healthReasons.push(`${set.host} v${set.version}: ${set.reason}`);
      if (e.event !== 'applied') return;
      const r = { host: e.payload.host, upstreams: e.payload.containers.map((container_id) => ({ container_id })), at: e.payload.appliedAt, published: e.payload.publishedTs, received: e.payload.receivedTs, started: e.payload.startedTs };
      last.set(r.host, r);
      for (const l of listeners) l(r);
    },
  });
  stops.push(() => thread.stop());
  const applier: AppliedFeed = {
    onApplied: (l) => void listeners.add(l),
    onHinted: (l) => void hintListeners.add(l),
    waitFor: (host, pred, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const now = last.get(host);
        if (now && pred(now)) return resolve();
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`${host}: not applied within ${timeoutMs} ms`));
        }, timeoutMs);
        function check(r: { host: string; upstreams: Array<{ container_id: string }> }) {
          if (r.host !== host || !pred(r)) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve();
        }
        listeners.add(check);
      }),
  };
  return { collector, thread, applier, lbPort };
}

/** Route sets the thread published because of the table's HTTP health (an upstream ejected or put on probation): host, version, reason. */
export const healthReasons: string[] = [];

/** The thread's event-loop delay since the last call (its `logmeter_thread_event_loop_delay_seconds`), ms. */
export async function threadLoopDelay(thread: ThreadHost): Promise<{ p50: number; p99: number; max: number } | undefined> {
  const m = (await thread.metrics()).find((x) => x.name === 'logmeter_thread_event_loop_delay_seconds');
  if (!m) return undefined;
  const q = (quantile: string) => (m.values.find((v) => v.labels.quantile === quantile)?.value ?? NaN) * 1000;
  return { p50: q('0.5'), p99: q('0.99'), max: q('1') };
}

/** The routes thread's start-hint counters (`logmeter_routes_start_events_seen_total` by result, `logmeter_routes_start_hints_total` by outcome). */
export async function threadHintCounts(thread: ThreadHost): Promise<string> {
  const all = await thread.metrics();
  const part = (name: string, label: string) =>
    (all.find((x) => x.name === name)?.values ?? [])
      .filter((v) => v.value > 0)
      .map((v) => `${String(v.labels[label])} ${v.value}`)
      .join(', ') || 'none';
  return `starts seen: ${part('logmeter_routes_start_events_seen_total', 'result')}; hints: ${part('logmeter_routes_start_hints_total', 'outcome')}`;
}
