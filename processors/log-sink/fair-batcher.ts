/**
 * A table batcher that shares each insert fairly among tenants (issue 20). The log sink
 * uses it for `logs` and `http_requests`, the tables a tenant floods.
 *
 * Like lib/clickhouse/batcher.ts, `add()` resolves only once every one of its rows is in
 * an insert that succeeded, so the consumer commits a partition's offsets after its rows
 * are durable. What differs is what an insert holds and when it is made:
 *
 * 1. Rows wait in one FIFO lane per tenant, whichever partition they came from.
 * 2. An insert takes at most `maxRows` rows, shared max-min fairly over the lanes
 *    (`fairTake`): a tenant with fewer rows than an equal share has all of them in it; the
 *    rest of the room goes to the bigger lanes evenly. A flood's backlog therefore makes
 *    more inserts, never a later insert for the quiet tenants.
 * 3. Inserts are made one at a time. An insert is made: when `maxRows` rows wait; when
 *    every source (topic-partition handler) active lately is waiting here (no more rows
 *    can come before an insert) but not sooner than `minGapMs` after the previous one;
 *    `maxMs` after the first waiting row; and right after an insert that left rows behind
 *    (their handlers wait, and kafkajs fetches again only when every handler of the
 *    fetch returned).
 * 4. Never in the same turn of the event loop as the `add()` that made it due: kafkajs
 *    hands every partition of a fetch to its handlers in one turn, so all of them are in
 *    the insert (a sink resuming after a pause fetches every partition's backlog at once;
 *    the quiet partitions' rows are in its first insert).
 *
 * A failed insert rejects the `add()` of every batch that had rows in it and withdraws
 * those batches' other rows: the consumer retries the whole batch (rows already inserted
 * come again with the same event ids and merge away).
 */
import { LogmeterError, errorMessage, isRetriable } from '../../lib/errors.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import type { BatcherTiming } from '../../lib/clickhouse/batcher.js';
import { TsvWriter, type RowEncoder } from '../../lib/clickhouse/tsv.js';

interface Pending {
  /** Rows of this batch not yet in a successful insert. */
  left: number;
  failed: boolean;
  source: string;
  resolve(): void;
  reject(e: unknown): void;
}

interface Lane<R> {
  items: Array<{ row: R; batch: Pending }>;
  head: number;
}

/**
 * How many rows each lane gives to an insert of at most `room` rows: max-min fair (water
 * filling). Lanes are given by their waiting rows; the result has the same order. Pure.
 */
export function fairTake(waiting: readonly number[], room: number): number[] {
  const take = waiting.map(() => 0);
  const order = waiting.map((n, i) => ({ n, i })).sort((a, b) => a.n - b.n);
  let left = Math.max(0, Math.floor(room));
  order.forEach(({ n, i }, k) => {
    const t = Math.min(n, Math.floor(left / (order.length - k)));
    take[i] = t;
    left -= t;
  });
  // What rounding left (fewer rows than lanes): one more row each to the bigger lanes.
  for (let k = order.length - 1; k >= 0 && left > 0; k--) {
    const { n, i } = order[k]!;
    if (take[i]! < n) {
      take[i]!++;
      left--;
    }
  }
  return take;
}

export class FairBatcher<R = Record<string, unknown>> {
  private readonly lanes = new Map<string, Lane<R>>();
  private readonly columns: readonly string[] | undefined;
  private readonly encoder: RowEncoder<R> | undefined;
  /** With an encoder: the insert body, reused from one insert to the next. */
  private writer: TsvWriter | undefined;
  private waitingRows = 0;
  private inserting = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private firstWaitingAt = 0;
  private lastInsertAt = 0;
  private carryOver = false;
  /** Sources by the time they last added rows, and those with a batch waiting. */
  private readonly seen = new Map<string, number>();
  private readonly waiting = new Map<string, number>();
  private readonly minGapMs: number;
  private readonly activeMs: number;

  constructor(
    private readonly ch: ClickHouse,
    private readonly table: string,
    /** Column names of the JSONEachRow rows (undefined: every column), or the row encoder (lib/clickhouse/tsv.ts). */
    format: readonly string[] | RowEncoder<R> | undefined,
    private readonly timing: BatcherTiming,
    private readonly tenantOf: (row: R) => string,
    private readonly onInsert?: (rows: number) => void,
  ) {
    if (format !== undefined && 'write' in format) this.encoder = format;
    else this.columns = format;
    this.minGapMs = timing.minGapMs ?? Math.floor(timing.maxMs / 5);
    this.activeMs = timing.activeMs ?? 2000;
  }

  /** Rows waiting for an insert. */
  get pending(): number {
    return this.waitingRows;
  }

  /** Adds rows from `source` (a topic-partition) and resolves once all of them are inserted. */
  add(rows: R[], source = ''): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const batch: Pending = { left: rows.length, failed: false, source, resolve, reject };
      for (const row of rows) {
        const tenant = this.tenantOf(row);
        let lane = this.lanes.get(tenant);
        if (!lane) this.lanes.set(tenant, (lane = { items: [], head: 0 }));
        lane.items.push({ row, batch });
      }
      if (this.waitingRows === 0) this.firstWaitingAt = Date.now();
      this.waitingRows += rows.length;
      this.seen.set(source, Date.now());
      this.waiting.set(source, (this.waiting.get(source) ?? 0) + 1);
      this.plan();
    });
  }

  /** Schedules the next insert by the rules in the header (never in this turn). */
  private plan(): void {
    if (this.inserting || this.waitingRows === 0) return;
    const now = Date.now();
    let due: number;
    if (this.carryOver || this.waitingRows >= this.timing.maxRows) due = now;
    else if (this.everyoneWaiting(now)) due = Math.max(now, this.lastInsertAt + this.minGapMs);
    else due = this.firstWaitingAt + this.timing.maxMs;
    if (this.timer !== undefined && this.timerAt <= due) return;
    this.clearTimer();
    this.timerAt = due;
    const run = () => {
      this.timer = undefined;
      void this.insertOnce();
    };
    // A timer even when due now: it fires after every handler of this fetch added its rows (rule 4).
    this.timer = setTimeout(run, Math.max(0, due - now));
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private async insertOnce(): Promise<void> {
    if (this.inserting || this.waitingRows === 0) return;
    this.inserting = true;
    this.clearTimer();
    let taken = this.take();
    this.lastInsertAt = Date.now();
    try {
      if (this.encoder) {
        taken = this.encode(taken, this.encoder);
        if (taken.length > 0) await this.ch.insertEncoded(this.table, { columns: this.encoder.columns, body: this.writer!.bytes(), rows: taken.length });
      } else {
        await this.ch.insert(
          this.table,
          taken.map((t) => t.row as Record<string, unknown>),
          this.columns,
        );
      }
      this.onInsert?.(taken.length);
      for (const t of taken) {
        if (t.batch.failed) continue;
        if (--t.batch.left === 0) this.settle(t.batch, undefined);
      }
    } catch (err) {
      // Classified by ClickHouse's code (lib/clickhouse/errors.ts), as in TableBatcher.
      const e = new LogmeterError('clickhouse_insert_failed', `insert into ${this.table}: ${errorMessage(err)}`, { retriable: isRetriable(err), cause: err });
      for (const t of taken) if (!t.batch.failed) this.settle(t.batch, e);
      this.withdrawFailed();
    } finally {
      this.inserting = false;
      this.carryOver = this.waitingRows > 0 && this.carryOver;
      this.plan();
    }
  }

  /**
   * Writes the insert's rows into the reused body. A row that cannot be written rejects its
   * own batch (not retriable: the same event fails again) and the body is written again
   * without that batch's rows; the other batches are not held up.
   */
  private encode(taken: Array<{ row: R; batch: Pending }>, encoder: RowEncoder<R>): Array<{ row: R; batch: Pending }> {
    const w = (this.writer ??= new TsvWriter());
    for (;;) {
      w.reset();
      let bad: { batch: Pending; err: unknown } | undefined;
      for (const t of taken) {
        try {
          encoder.write(t.row, w);
        } catch (err) {
          bad = { batch: t.batch, err };
          break;
        }
      }
      if (!bad) return taken;
      this.settle(bad.batch, new LogmeterError('row_not_encodable', `a row for ${this.table} cannot be written: ${errorMessage(bad.err)}`, { retriable: false, cause: bad.err }));
      this.withdrawFailed();
      taken = taken.filter((t) => !t.batch.failed);
    }
  }

  /** Takes the next insert's rows from the lanes (rule 2) and notes whether rows are left behind. */
  private take(): Array<{ row: R; batch: Pending }> {
    const lanes = [...this.lanes.entries()];
    const counts = lanes.map(([, l]) => l.items.length - l.head);
    const share = fairTake(counts, this.timing.maxRows);
    const out: Array<{ row: R; batch: Pending }> = [];
    lanes.forEach(([tenant, lane], i) => {
      const n = share[i]!;
      for (let k = 0; k < n; k++) out.push(lane.items[lane.head + k]!);
      lane.head += n;
      if (lane.head === lane.items.length) this.lanes.delete(tenant);
      else if (lane.head > 4096 && lane.head * 2 > lane.items.length) {
        lane.items = lane.items.slice(lane.head);
        lane.head = 0;
      }
    });
    this.waitingRows -= out.length;
    this.carryOver = this.waitingRows > 0;
    if (this.waitingRows > 0) this.firstWaitingAt = Date.now();
    return out;
  }

  private settle(batch: Pending, err: unknown): void {
    batch.failed = err !== undefined;
    const n = (this.waiting.get(batch.source) ?? 1) - 1;
    if (n === 0) this.waiting.delete(batch.source);
    else this.waiting.set(batch.source, n);
    if (err === undefined) batch.resolve();
    else batch.reject(err);
  }

  /** Drops the waiting rows of batches whose add() was rejected (the consumer sends them again). */
  private withdrawFailed(): void {
    for (const [tenant, lane] of this.lanes) {
      const keep = lane.items.slice(lane.head).filter((t) => !t.batch.failed);
      this.waitingRows -= lane.items.length - lane.head - keep.length;
      if (keep.length === 0) this.lanes.delete(tenant);
      else this.lanes.set(tenant, { items: keep, head: 0 });
    }
  }

  /** True when every source active lately has rows waiting here (forgetting sources gone quiet). */
  private everyoneWaiting(now: number): boolean {
    for (const [source, at] of this.seen) {
      if (now - at > this.activeMs) this.seen.delete(source);
      else if (!this.waiting.has(source)) return false;
    }
    return true;
  }
}
