/**
 * The previous counters of each container and network: from memory, or after a
 * restart or replay from the `traffic` table itself, so the same input always gives
 * the same deltas.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { PrevCounters, PreviousCounters } from './rows.js';

export class TrafficState implements PreviousCounters {
  private readonly prev = new Map<string, PrevCounters>();

  constructor(private readonly ch: ClickHouse) {}

  async before(container: string, network: string, ts: number): Promise<PrevCounters | undefined> {
    const hit = this.prev.get(`${container}\0${network}`);
    if (hit && hit.ts < ts) return hit;
    try {
      const rows = await this.ch.query<PrevCounters>(
        `SELECT toUnixTimestamp64Milli(ts) AS ts, rx_total AS rx, tx_total AS tx, blkio_total AS blkio FROM ${this.ch.table('traffic')} FINAL
         WHERE container_id = {c:String} AND network = {n:String} AND ts < fromUnixTimestamp64Milli({ts:Int64}) ORDER BY ts DESC LIMIT 1`,
        { c: container, n: network, ts },
      );
      return rows[0];
    } catch (err) {
      // The handle classified it (retriable or not); the context is added here.
      const retriable = err instanceof LogmeterError ? err.retriable : true;
      throw new LogmeterError('clickhouse_query_failed', `previous counters: ${errorMessage(err)}`, { retriable, cause: err });
    }
  }

  remember(container: string, network: string, p: PrevCounters): void {
    this.prev.set(`${container}\0${network}`, p);
  }
}
