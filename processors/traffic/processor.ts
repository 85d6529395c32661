/**
 * Traffic: stats samples → per-sample, per-network byte deltas in ClickHouse
 * (`traffic`), internal and external, plus block IO (rows.ts). A sample's predecessor
 * comes from memory or the table (state.ts), so the same input always gives the same
 * deltas, copies of a sample included. Offsets are committed after the batched insert.
 *
 * Scale-out. Keys: the stats topic is keyed by container id, so each container's samples
 * reach one member of the group `traffic`, in order. State: per stats partition, each
 * container's last reading inserted and the readings handled since; all of it can be
 * read back from the `traffic` table. N instances split the stats partitions (the
 * per-sample work: deltas, the previous-counter lookups, the rows). On a rebalance a
 * member forgets the partitions it loses; the new owner starts from the group's
 * committed offset and finds each container's predecessor in the table, so a batch the
 * old owner inserted and did not commit (it was killed) is computed again into the same
 * rows. Writers of ClickHouse: with the embedded store (chDB admits one process) the N
 * instances run in the process that holds it; with `CLICKHOUSE_URL`, N processes.
 * test/metering-scaleout.test.ts checks 1, 3, and 3 with one killed give the same rows.
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
