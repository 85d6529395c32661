/**
 * The collector of `logmeter up`, started on the main thread next to the processors and
 * the API (`collector.thread: false`, as before) or on a worker thread of its own
 * (app/collector-thread.ts, the default; issue 13: at 20k lines/s the sink's, parsers'
 * and API's work on the main thread held the collector's reads and sends back, and with
 * them the lifecycle events routes wait for).
 *
 * Either way `/healthz` has the check `collector` and the detail `collector`
 * (ingest/diagnosis.ts `healthDetail`), `/metrics` the collector's metrics under their
 * usual names, and `summary()` the totals for `up`'s summary line. On a thread, the
 * thread is restarted if it dies (app/thread-host.ts); the new one goes on from the
 * checkpoints (at-least-once, same event ids).
 */
import { collectorFromConfig } from './collector.js';
import { healthDetail } from '../ingest/diagnosis.js';
import type { AppRuntime } from './runtime.js';
import type { ThreadHost } from './thread-host.js';

/** The collector's totals, for the summary line of `logmeter up` (ingest/collector.ts `summary`). */
export interface CollectorSummary {
  containers: number;
  linesProduced: number;
  linesDropped: number;
  bufferedBytes: number;
}

export interface CollectorLane {
  /** Flushes what was read to Kafka and checkpoints what was acknowledged; the thread, if any, ends. */
  stop(): Promise<void>;
  /** Undefined while the collector's thread does not run (restarting) or does not answer in time. */
  summary(): Promise<CollectorSummary | undefined>;
  /** The thread, when the collector runs on one. */
  thread?: ThreadHost;
}

/** Seconds the thread gets to stop beyond the collector's own Kafka flush, before it is terminated. */
const STOP_MARGIN_SECONDS = 45;

/** The collector on this thread (`collector.thread: false`). */
export async function startCollectorHere(rt: AppRuntime): Promise<CollectorLane> {
  const { config } = rt;
  const collector = collectorFromConfig(config, { bus: rt.bus, codec: rt.codec, logger: rt.logger, registry: rt.registry });
  try {
    await collector.start();
  } catch (err) {
    await collector.stop().catch(() => undefined);
    throw err;
  }
  rt.http.addHealthCheck('collector', () => collector.health());
  rt.http.addHealthDetail('collector', () => healthDetail(collector.diagnose()));
  return { stop: async () => void (await collector.stop()), summary: () => collector.summary() };
}

/** The collector on a thread of its own (app/collector-thread.ts): restarted if it dies; its health, detail and metrics served here. */
export async function startCollectorThread(rt: AppRuntime): Promise<CollectorLane> {
  const { startThread, serveThread } = await import('./thread-host.js');
  const thread = await startThread({
    name: 'collector',
    module: new URL('./collector-thread.ts', import.meta.url),
    config: rt.config,
    logger: rt.logger,
    registry: rt.registry,
    logLevel: rt.config.log.level,
    stopTimeoutMs: (rt.config.collector.stopFlushSeconds + STOP_MARGIN_SECONDS) * 1000,
  });
  // The check `collector` (degraded while the thread restarts), `thread:collector`, the thread's metrics.
  serveThread(rt.http, thread);
  rt.http.addHealthDetail('collector', () => thread.detail());
  return {
    thread,
    stop: () => thread.stop(),
    summary: async () => (await thread.summary()) as CollectorSummary | undefined,
  };
}

/** The collector as `collector.thread` says. */
export function startCollector(rt: AppRuntime): Promise<CollectorLane> {
  return rt.config.collector.thread ? startCollectorThread(rt) : startCollectorHere(rt);
}
