/**
 * Usage: every interval, the meters of the last hours are computed from ClickHouse
 * (queries.ts, meters.ts) and published on the usage topic (the log sink writes them to
 * `usage`). Records are per tenant, app, node (where the containers ran), hour, meter
 * and dimensions, their ids a function of those, so a recomputation, a crash in the
 * middle of one, or a replay of the usage topic from offset 0 all end in the same totals.
 *
 * Rows written before usage had a node (`node = ''` in the table, sql/011) had ids
 * without it: each computation first republishes those of its window that are not yet
 * 0 with quantity 0 (newer, so they win), then the per-node records that replace them.
 * After an upgrade, the hours of the first look-back window are counted once.
 *
 * Scale-out. Keys: no consumer group and no Kafka input; it reads ClickHouse and
 * publishes usage keyed by tenant/app, each record's id a function of tenant, app, node,
 * hour, meter and dimensions. State: none across intervals (each run recomputes the last
 * hours). N instances compute the same records with the same ids (they merge away in
 * `usage`), so N buys availability, not throughput; one that dies half-way through
 * publishing leaves some of the records, the same (ids, quantities) as any instance's
 * next computation publishes in full. It reads the store: with the embedded ClickHouse
 * (chDB admits one process) the N instances run in the process that holds it; with
 * `CLICKHOUSE_URL`, N processes, anywhere. A rebalance does not concern it (there is
 * none); the traffic and log-sink groups whose tables it reads keep their rows the same
 * across theirs. test/metering-scaleout.test.ts checks 1, 3, and 3 with one dying
 * mid-publish give the same records.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import type { UsageConfig } from './config.js';
import type { UsageRecord } from '../../schemas/events.js';
import { METERS, toUsageRecord, usageWindow } from './meters.js';
import { computeMeters } from './queries.js';
import { usageMetrics } from './telemetry.js';

export interface UsageDeps {
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
  config: UsageConfig;
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
      const retracted = await legacyRows(deps.ch, from, to);
      if (retracted.length > 0) {
        await deps.bus.publish('usage', retracted.map((event) => ({ event })));
        log.info({ rows: retracted.length }, 'usage rows without a node set to 0 (replaced by per-node rows)');
      }
      const records = values.map((v) => ({ event: toUsageRecord(v) }));
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

/** The hour rows of [from, to) written before usage had a node and not yet set to 0, as records with quantity 0 (same ids). */
async function legacyRows(ch: ClickHouse, from: number, to: number): Promise<UsageRecord[]> {
  type Row = { event_id: string; tenant: string; app: string; ts_ms: number; meter: string; unit: string; dimensions: Record<string, string> };
  const rows = await ch.query<Row>(
    // Not `AS ts`: in ClickHouse an alias shadows the column in WHERE.
    `SELECT event_id, tenant, app, toUnixTimestamp64Milli(ts) AS ts_ms, meter, unit, dimensions FROM ${ch.table('usage')} FINAL
     WHERE node = '' AND period = 'hour' AND quantity != 0 AND meter IN {meters:Array(String)}
       AND ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})`,
    { from, to, meters: Object.keys(METERS) },
  );
  return rows.map((r) => ({ event_id: r.event_id, tenant: r.tenant, app: r.app, node: '', container_id: '', ts: Number(r.ts_ms), period: 'hour', meter: r.meter, unit: r.unit, quantity: 0, dimensions: r.dimensions }));
}
