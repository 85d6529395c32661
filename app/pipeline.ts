/**
 * The composition of processors (app/ is the composition root: the only layer that
 * knows every component). The processors by name, started on a runtime. `logmeter processor <name>` runs one;
 * `logmeter up` runs them all (with the collector and the API) in one process — in
 * embedded mode it has to, since only one process may open the embedded ClickHouse —
 * the routes lane on a thread of its own (`StartOptions.threads`).
 */
import type { AppRuntime } from './runtime.js';
import { LogmeterError } from '../lib/errors.js';
import { dataPath } from '../lib/config.js';
import type { Service } from '../lib/runtime.js';
import type { ThreadHost } from './thread-host.js';
import type { Config } from './config.js';
import type { AutoscaleSignal } from '../schemas/events.js';
import type { LogSinkConfig } from '../processors/log-sink/config.js';
import type { UsageConfig } from '../processors/usage/config.js';

export const PROCESSORS = ['log-sink', 'access-log', 'traffic', 'usage', 'billing', 'routes', 'autoscale', 'scaler', 'keda'] as const;
export type ProcessorName = (typeof PROCESSORS)[number];

export interface Running {
  name: string;
  stop(): Promise<void>;
  /** A line for the live summary of `logmeter up`, if the processor has one. */
  summary?: () => string | Promise<string>;
  /** The thread it runs on, if it has one of its own. */
  thread?: ThreadHost | undefined;
}

/** The services the named processors need besides Kafka and ClickHouse. */
export function processorServices(names: readonly ProcessorName[]): Service[] {
  const out = new Set<Service>();
  for (const n of names) {
    if (n === 'billing' || n === 'scaler') out.add('redis');
    if (n === 'routes' || n === 'scaler') out.add('docker');
  }
  return [...out];
}

/** Which processors need ClickHouse (the access-log parser and the scaler only need Kafka, Redis, Docker). */
export function needsClickHouse(names: readonly ProcessorName[]): boolean {
  return names.some((n) => n !== 'access-log' && n !== 'scaler' && n !== 'autoscale' && n !== 'routes' && n !== 'keda');
}

/** The log sink's config from the full config (its keys stay under `processors` and `kafka`). */
export function logSinkConfig(config: Config): LogSinkConfig {
  const p = config.processors;
  return { batchRows: p.sinkBatchRows, batchMs: p.sinkBatchMs, retentionDays: p.retentionDays, concurrency: config.kafka.partitions };
}

/** The usage processor's config from the full config (its keys stay under `processors`). */
export function usageConfig(config: Config): UsageConfig {
  return { intervalSeconds: config.processors.usageIntervalSeconds, lookbackHours: config.processors.usageLookbackHours };
}

/** Hosts shown one by one in the routes summary line; the rest are counted. */
const SUMMARY_HOSTS = 10;

/** The live summary's routes line: hosts with upstreams, then how many have none (kept until their grace is over). */
export function routesSummary(hosts: ReadonlyArray<{ host: string; version: number; upstreams: readonly unknown[] }>): string {
  const active = hosts.filter((h) => h.upstreams.length > 0);
  const shown = active.slice(0, SUMMARY_HOSTS).map((h) => `${h.host} v${h.version} ${h.upstreams.length} upstream(s)`);
  if (active.length > shown.length) shown.push(`${active.length - shown.length} more active`);
  const idle = hosts.length - active.length;
  if (hosts.length === 0) return 'routes: none yet';
  return `routes: ${shown.join(', ') || 'no active host'}${idle > 0 ? ` (+${idle} without upstreams)` : ''}`;
}

export interface StartOptions {
  /** Processors run on a thread of their own (app/thread-host.ts; only `routes` can be). Default none. */
  threads?: readonly ProcessorName[];
}

export async function startProcessors(rt: AppRuntime, names: readonly ProcessorName[], opts: StartOptions = {}): Promise<Running[]> {
  const { bus, logger, registry, config } = rt;
  const ch = () => {
    if (!rt.clickhouse) throw new LogmeterError('clickhouse_missing', 'this processor needs ClickHouse');
    return rt.clickhouse;
  };
  const out: Running[] = [];
  // Each processor's modules are loaded when it starts: a process runs only what it was asked for.
  for (const name of names) {
    switch (name) {
      case 'log-sink': {
        const { startLogSink } = await import('../processors/log-sink/processor.js');
        const sub = await startLogSink({ config: logSinkConfig(config), bus, ch: ch(), logger, registry });
        out.push({ name, stop: () => sub.stop() });
        break;
      }
      case 'access-log': {
        const { startAccessLogParser } = await import('../processors/access-log/processor.js');
        // The load balancer's requests keyed by the app they were routed to: N autoscale instances split the apps.
        const sub = await startAccessLogParser({ bus, logger, registry, routing: { lbApp: config.autoscale.lbApp, labelPrefix: config.labelPrefix } });
        out.push({ name, stop: () => sub.stop() });
        break;
      }
      case 'traffic': {
        const { startTraffic } = await import('../processors/traffic/processor.js');
        const sub = await startTraffic({ bus, ch: ch(), logger, registry });
        out.push({ name, stop: () => sub.stop() });
        break;
      }
      case 'usage': {
        const { startUsage } = await import('../processors/usage/processor.js');
        const u = startUsage({ bus, ch: ch(), logger, registry, config: usageConfig(config) });
        out.push({ name, stop: () => u.stop() });
        break;
      }
      case 'routes': {
        // The route table, the load balancer (HAProxy in a container, logs through the collector) and its applier:
        // on a thread of their own when asked (`logmeter up`), see app/routes-lane.ts.
        const { startRoutesHere, startRoutesThread } = await import('./routes-lane.js');
        const lane = opts.threads?.includes('routes') ? await startRoutesThread(rt) : await startRoutesHere(rt);
        out.push({ name, stop: () => lane.stop(), summary: async () => routesSummary(await lane.current()), thread: lane.thread });
        break;
      }
      case 'autoscale': {
        const { startAutoscale } = await import('../processors/autoscale/processor.js');
        // ClickHouse is optional here: with it, signals are also stored in autoscale_signals.
        const a = await startAutoscale({ bus, ch: rt.clickhouse, logger, registry, config: config.autoscale, node: config.node, labelPrefix: config.labelPrefix });
        // The newest signal per app, for the live summary.
        const last = new Map<string, AutoscaleSignal>();
        const watch = await bus.subscribe({ group: `up-summary-${process.pid}`, topics: ['autoscale'], fromBeginning: false, handle: (b) => {
            for (const m of b) last.set(`${m.event.tenant}/${m.event.app}`, m.event);
            return Promise.resolve();
          } });
        // Apps without a signal for a stable window have no traffic: not repeated in the summary.
        const current = () => {
          const since = Date.now() - config.autoscale.stableWindowMs;
          for (const [k, s] of last) if (s.ts < since) last.delete(k);
          return [...last.values()];
        };
        out.push({
          name,
          stop: async () => {
            await watch.stop();
            await a.stop();
          },
          summary: () =>
            `signals: ${current().map((s) => `${s.tenant}/${s.app} ${s.mode} p95 ${s.panic.p95_ms === null ? '-' : Math.round(s.panic.p95_ms)} ms, ${s.current_replicas} → ${s.recommended_replicas} replica(s)`).join('; ') || 'none yet'}`,
        });
        break;
      }
      case 'scaler': {
        const [{ startScaler }, { dockerClient }] = await Promise.all([import('../processors/scaler/processor.js'), import('../lib/docker.js')]);
        // Apps with an autoscale.apps entry are opted in by the config file (the others by their labels).
        const sc = await startScaler({ bus, docker: dockerClient(config.docker.host), redisUrl: config.redis.url, logger, registry, config: config.scaler, optedInApps: Object.keys(config.autoscale.apps) });
        out.push({ name, stop: () => sc.close() });
        break;
      }
      case 'keda': {
        const { startKeda } = await import('../processors/keda/processor.js');
        const k = await startKeda({ bus, logger, registry, config: config.keda });
        out.push({ name, stop: () => k.stop() });
        break;
      }
      case 'billing': {
        const { startBilling } = await import('../processors/billing/processor.js');
        const b = await startBilling({
          config: {
            redisUrl: config.redis.url,
            queue: `${config.kafka.topicPrefix}billing`,
            priceList: config.processors.priceList,
            reportPeriods: config.processors.reportPeriods,
            reportsDir: dataPath(config, 'reports'),
          },
          ch: ch(),
          logger,
        });
        out.push({ name, stop: () => b.close() });
        break;
      }
    }
  }
  return out;
}

/** Runs one named part of a stop (see cli/signals.ts: what a slow stop waits for is logged by these names). */
export type StopStep = <T>(name: string, fn: () => Promise<T>) => Promise<T>;

/**
 * Stops the processors: the scaler first (it must not start replicas while the rest,
 * and the demo, go away), then all others at the same time. None of them waits for
 * another: each stops consuming, finishes or abandons its batch (uncommitted, so it is
 * read again at the next start) and leaves its group; one after the other, their
 * waits (a consumer's fetch in flight, a flush) added up to most of a slow stop.
 */
export async function stopAll(running: Running[], step: StopStep = (_name, fn) => fn()): Promise<void> {
  const stopOne = (r: Running) => step(`processor:${r.name}`, () => r.stop());
  const first = running.filter((r) => r.name === 'scaler');
  const results = await Promise.allSettled(first.map(stopOne));
  results.push(...(await Promise.allSettled(running.filter((r) => r.name !== 'scaler').map(stopOne))));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
