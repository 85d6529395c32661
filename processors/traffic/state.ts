/**
 * The previous counters of each container and network, kept per partition of the stats
 * topic (a container's samples all come through one partition, in order).
 *
 * A sample's predecessor is the latest reading of its container and network with an
 * earlier time, among the `traffic` table and the readings its partition handled since
 * the last insert (not in the table yet). So a sample gets the same delta whenever it is
 * computed: a copy of a sample (two overlapping stats rounds, a redelivered batch) gets
 * the delta of its first copy, and its row, with the same key, replaces the first one
 * with the same numbers — billed once — whether the copy comes in the same handler call
 * or after the insert. Memory keeps, per key, the last reading inserted and those
 * handled since, so the table is read only for a key this partition has not seen since
 * it was assigned, or for a sample older than what it has seen.
 *
 * A partition's memory is dropped when the partition is revoked (the next owner may
 * have written newer rows), and when its insert failed (the batch comes again and is
 * computed from the table).
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { PrevCounters, PreviousCounters } from './rows.js';

export class TrafficState {
  private readonly partitions = new Map<number, PartitionCounters>();

  constructor(private readonly ch: ClickHouse) {}

  /** The counters of one stats partition (created empty: the table answers until it has seen its keys). */
  partition(partition: number): PartitionCounters {
    let p = this.partitions.get(partition);
    if (!p) this.partitions.set(partition, (p = new PartitionCounters(this.ch)));
    return p;
  }

  /** The partitions are no longer this instance's: what it remembered of them is forgotten. */
  drop(partitions: readonly number[]): void {
    for (const p of partitions) this.partitions.delete(p);
  }
}

export class PartitionCounters implements PreviousCounters {
  /** Per container and network: the last reading inserted, then the readings handled since. */
  private readonly readings = new Map<string, PrevCounters[]>();

  constructor(private readonly ch: ClickHouse) {}

  async before(container: string, network: string, ts: number): Promise<PrevCounters | undefined> {
    let best: PrevCounters | undefined;
    for (const r of this.readings.get(key(container, network)) ?? []) if (r.ts < ts && (best === undefined || r.ts > best.ts)) best = r;
    return best ?? (await this.fromTable(container, network, ts));
  }

  remember(container: string, network: string, p: PrevCounters): void {
    const k = key(container, network);
    const list = this.readings.get(k);
    if (list) list.push(p);
    else this.readings.set(k, [p]);
  }

  /** Everything remembered is in the table now: per key only the latest reading is kept. */
  inserted(): void {
    for (const [k, list] of this.readings) {
      if (list.length < 2) continue;
      this.readings.set(k, [list.reduce((a, b) => (b.ts > a.ts ? b : a))]);
    }
  }

  /** The insert failed: nothing remembered is trusted (the batch comes again and reads the table). */
  discard(): void {
    this.readings.clear();
  }

  private async fromTable(container: string, network: string, ts: number): Promise<PrevCounters | undefined> {
    try {
      const rows = await this.ch.query<{ ts_ms: number | string; rx: number | string; tx: number | string; blkio: number | string }>(
        // Not `AS ts`: in ClickHouse an alias shadows the column in WHERE, and the lookup found nothing.
        `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, rx_total AS rx, tx_total AS tx, blkio_total AS blkio FROM ${this.ch.table('traffic')} FINAL
         WHERE container_id = {c:String} AND network = {n:String} AND ts < fromUnixTimestamp64Milli({ts:Int64}) ORDER BY ts DESC LIMIT 1`,
        { c: container, n: network, ts },
      );
      const r = rows[0];
      return r && { ts: Number(r.ts_ms), rx: Number(r.rx), tx: Number(r.tx), blkio: Number(r.blkio) };
    } catch (err) {
      // The handle classified it (retriable or not); the context is added here.
      const retriable = err instanceof LogmeterError ? err.retriable : true;
      throw new LogmeterError('clickhouse_query_failed', `previous counters: ${errorMessage(err)}`, { retriable, cause: err });
    }
  }
}

function key(container: string, network: string): string {
  return `${container}\0${network}`;
}
