/**
 * The collector in the benchmark's process but on a thread of its own, through the
 * product's thread host (app/thread-host.ts, app/collector-thread.ts), as `logmeter up`
 * runs it by default (`collector.thread`): bench/end-to-end.ts `--collector thread`.
 * Default settings, the run's label prefix, a fresh state dir; its counts from the
 * thread's summary and metrics.
 */
import type { Registry } from 'prom-client';
import { startThread, type ThreadHost } from '../../app/thread-host.js';
import type { Config } from '../../app/config.js';
import type { CollectorSummary } from '../../app/collector-lane.js';
import type { BenchNamespace } from './common.js';

export interface BenchCollectorThread {
  host: ThreadHost;
  summary(): Promise<CollectorSummary>;
  /** Sum of a metric of the thread's registry (0 when absent). */
  metricSum(name: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startCollectorThread(o: { ns: BenchNamespace; registry: Registry }): Promise<BenchCollectorThread> {
  const config: Config = { ...o.ns.config, node: 'bench', collector: { ...o.ns.config.collector, labelPrefix: o.ns.labelPrefix } };
  // A busy machine may hold a call's answer longer than the host's default 2 s: the bench waits.
  const host = await startThread<Config>({ name: 'collector', module: new URL('../../app/collector-thread.ts', import.meta.url), config, logger: o.ns.logger, registry: o.registry, logLevel: config.log.level, callTimeoutMs: 30_000 });
  return {
    host,
    summary: async () => {
      const s = (await host.summary()) as CollectorSummary | undefined;
      if (!s) throw new Error(`the collector thread gave no summary (${host.state()})`);
      return s;
    },
    metricSum: async (name) => ((await host.metrics()).find((m) => m.name === name)?.values ?? []).reduce((a, v) => a + v.value, 0),
    stop: () => host.stop(),
  };
}
