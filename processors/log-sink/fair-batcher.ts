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
 * 3. Inserts are made one at a time, as soon as rows wait, but no two start closer than
 *    `minGapMs` (default `maxMs / 5`): a trickle of rows makes at most that many inserts
 *    (parts for ClickHouse to merge), never a wait for other partitions' rows. Waiting for
 *    every recently active partition to have rows cost a quiet line next to a flood up to
 *    `maxMs`: kafkajs fetches again only when every handler of a fetch returned, so the
 *    flood's partition often had nothing more to add (second round of the sink, see
 *    docs/decisions/2026-12-04-tenant-fairness.md).
 * 4. Never in the same turn of the event loop as the `add()` that made it due: kafkajs
 *    hands every partition of a fetch to its handlers in one turn, so all of them are in
 *    the same insert (a sink resuming after a pause fetches every partition's backlog at
 *    once; the quiet partitions' rows are in its first insert).
 *
 * Backpressure is the consumer's: a handler waits for its rows' inserts, and kafkajs
 * fetches again only when every handler returned, so at most one fetch waits here; a
 * handler that defers its commit to the insert (the sink's logs, bus.ts `deferCommit`)
 * returns at once, and the bus bounds what waits (`maxDeferredMessages`, 100,000 rows).
 *
 * A failed insert rejects the `add()` of every batch that had rows in it and withdraws
 * those batches' other rows: the consumer retries the whole batch (rows already inserted
 * come again with the same event ids and merge away).
 */
import { LogmeterError, errorMessage, isRetriable } from '../../lib/errors.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import type { BatcherTiming } from '../../lib/clickhouse/batcher.js';
import { TsvWriter, type RowEncoder } from '../../lib/clickhouse/tsv.js';
import { ColumnarWriter, type ColumnarEncoder } from '../../lib/clickhouse/columnar.js';

interface Pending {
  /** Rows of this batch not yet in a successful insert. */
  left: number;
  failed: boolean;
  resolve(): void;
  reject(e: unknown): void;
}

/**
 * A tenant's waiting rows, each with the batch it came in, as two arrays side by side rather
 * than an object per row: the rows of a backlog wait here for hundreds of milliseconds, long
 * enough to be copied by the young-generation GC and promoted, so every object per row costs
 * (BENCHMARKS.md "Log sink: CPU per row").
 */
interface Lane<R> {
  rows: R[];
  batches: Pending[];
  head: number;
}

/** The rows of one insert, with the batch of each (same places). */
interface Taken<R> {
  rows: R[];
  batches: Pending[];
}

/** The rows from `from` on whose batch has not failed, with their batches. */
function live<R>(rows: readonly R[], batches: readonly Pending[], from: number): Taken<R> {
  const out: Taken<R> = { rows: [], batches: [] };
  for (let i = from; i < rows.length; i++) {
    if (batches[i]!.failed) continue;
    out.rows.push(rows[i]!);
    out.batches.push(batches[i]!);
  }
  return out;
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

/** Time for the batcher: the wall clock by default; tests drive their own. */
export interface BatchClock {
  now(): number;
  /** Calls `fn` after `ms` milliseconds, always in a later turn of the event loop (also for 0). */
  after(ms: number, fn: () => void): void;
}

export const SYSTEM_CLOCK: BatchClock = {
  now: () => Date.now(),
  after: (ms, fn) => void setTimeout(fn, Math.max(0, ms)),
};

export interface FairBatcherOptions<R> {
  /** The tenant whose lane a row waits in. */
  tenantOf: (row: R) => string;
  /** Told the row count of each successful insert (metrics). */
  onInsert?: (rows: number) => void;
  /** Default SYSTEM_CLOCK. */
  clock?: BatchClock;
}

export class FairBatcher<R = Record<string, unknown>> {
  private readonly lanes = new Map<string, Lane<R>>();
  private readonly columns: readonly string[] | undefined;
  private readonly encoder: RowEncoder<R> | ColumnarEncoder<R> | undefined;
  private readonly tenantOf: (row: R) => string;
  private readonly onInsert: ((rows: number) => void) | undefined;
  private readonly clock: BatchClock;
  /** With an encoder: the insert body (TabSeparated bytes or binary columns), reused from one insert to the next. */
  private writer: TsvWriter | ColumnarWriter | undefined;
  private waitingRows = 0;
  private inserting = false;
  /** An insert is planned (a timer runs). */
  private planned = false;
  private lastStartAt = -Infinity;
  private readonly minGapMs: number;

  constructor(
    private readonly ch: ClickHouse,
    private readonly table: string,
    /** Column names of the JSONEachRow rows (undefined: every column), or the row encoder (TabSeparated, tsv.ts; binary columns, columnar.ts). */
    format: readonly string[] | RowEncoder<R> | ColumnarEncoder<R> | undefined,
    private readonly timing: BatcherTiming,
    opts: FairBatcherOptions<R>,
  ) {
    if (format !== undefined && 'write' in format) this.encoder = format;
    else this.columns = format;
    this.tenantOf = opts.tenantOf;
    this.onInsert = opts.onInsert;
    this.clock = opts.clock ?? SYSTEM_CLOCK;
    this.minGapMs = timing.minGapMs ?? Math.floor(timing.maxMs / 5);
  }

  /** Rows waiting for an insert. */
  get pending(): number {
    return this.waitingRows;
  }

  /** Adds rows and resolves once all of them are inserted. */
  add(rows: R[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const batch: Pending = { left: rows.length, failed: false, resolve, reject };
      // A batch's rows mostly come in runs of one tenant (a container's lines): one lookup per run.
      let tenant: string | undefined;
      let lane: Lane<R> | undefined;
      for (const row of rows) {
        const t = this.tenantOf(row);
        if (t !== tenant || !lane) {
          tenant = t;
          lane = this.lanes.get(t);
          if (!lane) this.lanes.set(t, (lane = { rows: [], batches: [], head: 0 }));
        }
        lane.rows.push(row);
        lane.batches.push(batch);
      }
      this.waitingRows += rows.length;
      this.plan();
    });
  }

  /**
   * Plans the next insert by rules 3 and 4: at once, or `minGapMs` after the last one
   * began; always through the clock, so never in this turn. A planned insert is never
   * moved: its time depends only on the last start, which does not change until it runs.
   */
  private plan(): void {
    if (this.inserting || this.waitingRows === 0 || this.planned) return;
    const now = this.clock.now();
    this.planned = true;
    this.clock.after(Math.max(0, this.lastStartAt + this.minGapMs - now), () => {
      this.planned = false;
      void this.insertOnce();
    });
  }

  private async insertOnce(): Promise<void> {
    if (this.inserting || this.waitingRows === 0) return;
    this.inserting = true;
    this.lastStartAt = this.clock.now();
    let taken = this.take();
    try {
      if (this.encoder) {
        taken = this.encode(taken, this.encoder);
        const w = this.writer!;
        const n = taken.rows.length;
        if (n === 0) {
          // Every row of this insert was refused by the encoder.
        } else if (w instanceof ColumnarWriter) await this.ch.insertEncoded(this.table, { format: 'columns', columns: w.columns, writer: w, rows: n });
        else await this.ch.insertEncoded(this.table, { columns: (this.encoder as RowEncoder<R>).columns, body: w.bytes(), rows: n });
      } else {
        await this.ch.insert(this.table, taken.rows as Array<Record<string, unknown>>, this.columns);
      }
      this.onInsert?.(taken.rows.length);
      for (const batch of taken.batches) {
        if (batch.failed) continue;
        if (--batch.left === 0) this.settle(batch, undefined);
      }
    } catch (err) {
      // Classified by ClickHouse's code (lib/clickhouse/errors.ts), as in TableBatcher.
      const e = new LogmeterError('clickhouse_insert_failed', `insert into ${this.table}: ${errorMessage(err)}`, { retriable: isRetriable(err), cause: err });
      for (const batch of taken.batches) if (!batch.failed) this.settle(batch, e);
      this.withdrawFailed();
    } finally {
      this.inserting = false;
      // Rows that came meanwhile, or that this insert left behind, go next.
      this.plan();
    }
  }

  /**
   * Writes the insert's rows into the reused body. A row that cannot be written rejects its
   * own batch (not retriable: the same event fails again) and the body is written again
   * without that batch's rows; the other batches are not held up.
   */
  private encode(taken: Taken<R>, encoder: RowEncoder<R> | ColumnarEncoder<R>): Taken<R> {
    const columnar = isColumnar(encoder);
    const w = (this.writer ??= columnar ? new ColumnarWriter(encoder.columns) : new TsvWriter());
    for (;;) {
      w.reset();
      let bad: { batch: Pending; err: unknown } | undefined;
      const { rows, batches } = taken;
      for (let i = 0; i < rows.length; i++) {
        try {
          if (columnar) encoder.write(rows[i]!, w as ColumnarWriter);
          else encoder.write(rows[i]!, w as TsvWriter);
        } catch (err) {
          bad = { batch: batches[i]!, err };
          break;
        }
      }
      if (!bad) return taken;
      this.settle(bad.batch, new LogmeterError('row_not_encodable', `a row for ${this.table} cannot be written: ${errorMessage(bad.err)}`, { retriable: false, cause: bad.err }));
      this.withdrawFailed();
      taken = live(rows, batches, 0);
    }
  }

  /** Takes the next insert's rows from the lanes (rule 2). */
  private take(): Taken<R> {
    const lanes = [...this.lanes.entries()];
    const counts = lanes.map(([, l]) => l.rows.length - l.head);
    const share = fairTake(counts, this.timing.maxRows);
    const out: Taken<R> = { rows: [], batches: [] };
    lanes.forEach(([tenant, lane], i) => {
      const n = share[i]!;
      for (let k = lane.head; k < lane.head + n; k++) {
        out.rows.push(lane.rows[k]!);
        out.batches.push(lane.batches[k]!);
      }
      lane.head += n;
      if (lane.head === lane.rows.length) this.lanes.delete(tenant);
      else if (lane.head > 4096 && lane.head * 2 > lane.rows.length) {
        lane.rows = lane.rows.slice(lane.head);
        lane.batches = lane.batches.slice(lane.head);
        lane.head = 0;
      }
    });
    this.waitingRows -= out.rows.length;
    return out;
  }

  private settle(batch: Pending, err: unknown): void {
    batch.failed = err !== undefined;
    if (err === undefined) batch.resolve();
    else batch.reject(err);
  }

  /** Drops the waiting rows of batches whose add() was rejected (the consumer sends them again). */
  private withdrawFailed(): void {
    for (const [tenant, lane] of this.lanes) {
      const keep = live(lane.rows, lane.batches, lane.head);
      this.waitingRows -= lane.rows.length - lane.head - keep.rows.length;
      if (keep.rows.length === 0) this.lanes.delete(tenant);
      else this.lanes.set(tenant, { ...keep, head: 0 });
    }
  }
}

/** Binary columns (columnar.ts) rather than TabSeparated (tsv.ts): their columns carry types. */
function isColumnar<R>(e: RowEncoder<R> | ColumnarEncoder<R>): e is ColumnarEncoder<R> {
  return typeof e.columns[0] === 'object';
}
