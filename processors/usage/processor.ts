/**
 * Usage: every interval, the meters of the last hours are computed from ClickHouse
 * (queries.ts, meters.ts) and published on the usage topic (the log sink writes them to
 * `usage`). Records are keyed by tenant, app, hour, meter and dimensions, so a
 * recomputation, a crash in the middle of one, or a replay of the usage topic from
 * offset 0 all end in the same totals.
 *
 * Scale-out. No consumer group and no Kafka input: it reads ClickHouse and publishes
 * usage keyed by tenant/app. State: none across intervals (each run recomputes the last
 * hours). N instances compute the same records with the same ids (they merge away), so N
 * buys availability, not throughput; one is enough. It reads the store: with the
 * embedded ClickHouse it runs in the process that holds it; with `CLICKHOUSE_URL`, any
 * number, anywhere. Nothing happens on a rebalance (there is none).
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import type { UsageConfig } from './config.js';
import { toUsageRecord, usageWindow } from './meters.js';
import { computeMeters } from './queries.js';
import { usageMetrics } from './telemetry.js';

export interface UsageDeps {
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
  config: UsageConfig;
  /** Node named in the records. */
  node: string;
  clock?: () => number;
}

export interface UsageProcessor {
  /** One computation now (also what the timer runs). */
  runOnce(): Promise<number>;
  stop(): Promise<void>;
}

export function startUsage(deps: UsageDeps): UsageProcessor {
  const { config } = deps;
  const log = deps.logger.child({ component: 'usage' });
  const metrics = usageMetrics(deps.registry);
  const clock = deps.clock ?? Date.now;
  let running: Promise<number> | undefined;
  const runOnce = () => {
    running ??= (async () => {
      const now = clock();
      const { from, to } = usageWindow(now, config.lookbackHours);
      const values = await computeMeters(deps.ch, from, to, now);
      const records = values.map((v) => ({ event: toUsageRecord(v, deps.node) }));
      await deps.bus.publish('usage', records);
      metrics.published.inc(records.length);
      log.debug({ records: records.length, from: new Date(from).toISOString() }, 'usage computed');
      return records.length;
    })().finally(() => {
      running = undefined;
    });
    return running;
  };
  const runLogged = () => {
    runOnce().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'usage computation failed; next interval retries'));
  };
  const timer = setInterval(runLogged, config.intervalSeconds * 1000);
  // A first computation right away: a restarted processor catches up without waiting an interval.
  setImmediate(runLogged);
  log.info({ everySeconds: config.intervalSeconds }, 'usage processor started');
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running?.catch(() => undefined);
    },
  };
}
