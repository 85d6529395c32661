/**
 * Traffic: stats samples → per-sample, per-network byte deltas in ClickHouse
 * (`traffic`), internal and external, plus block IO (rows.ts). The previous counters
 * of a container come from memory or the table (state.ts), so the same input always
 * gives the same deltas. Offsets are committed after the batched insert.
 *
 * Scale-out. Reads stats keyed by container (group `traffic`), so each container's
 * samples reach one instance in order. State: each container's previous counters, in
 * memory and recoverable from the `traffic` table; after a rebalance the new owner reads
 * them from the table (state.ts), so the deltas are the same. N instances split the stats
 * partitions. It writes ClickHouse: with the embedded store it stays in the process that
 * holds it; with `CLICKHOUSE_URL`, N.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { TableBatcher } from '../../lib/clickhouse/batcher.js';
import { TRAFFIC_DEFAULTS, type TrafficConfig } from './config.js';
import { trafficRows } from './rows.js';
import { TrafficState } from './state.js';
import { trafficMetrics } from './telemetry.js';

export interface TrafficDeps {
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
  /** Default {@link TRAFFIC_DEFAULTS}. */
  config?: TrafficConfig;
}

/** The consumer group (logical name) of every traffic instance. */
export const TRAFFIC_GROUP = 'traffic';

export async function startTraffic(deps: TrafficDeps): Promise<Subscription> {
  const config = deps.config ?? TRAFFIC_DEFAULTS;
  const log = deps.logger.child({ component: 'traffic' });
  const metrics = trafficMetrics(deps.registry);
  const state = new TrafficState(deps.ch);
  const table = new TableBatcher(deps.ch, 'traffic', undefined, { maxRows: config.batchRows, maxMs: config.batchMs });
  const sub = await deps.bus.subscribe({
    group: TRAFFIC_GROUP,
    topics: ['stats'],
    concurrency: config.concurrency,
    handle: async (batch, ctx) => {
      const counters = state.partition(ctx.partition);
      try {
        const rows: Record<string, unknown>[] = [];
        for (const m of batch) rows.push(...(await trafficRows(m.event, counters)));
        await table.add(rows, `${ctx.partition}`);
      } catch (err) {
        counters.discard();
        throw err;
      }
      counters.inserted();
      metrics.samples.inc(batch.length);
    },
    onRevoked: (partitions) => state.drop(partitions.map((p) => p.partition)),
  });
  log.info('traffic processor started');
  return sub;
}
