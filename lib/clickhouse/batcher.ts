/**
 * Batches rows for one table. `add()` resolves only when the insert holding its rows
 * succeeded, so a Kafka handler that awaits it commits its offsets after the write.
 * A failed insert rejects every waiting `add()`, retriable when ClickHouse's code says the
 * condition passes (see errors.ts); the consumer retries (the rows come again; the tables'
 * keys remove any repeat) or dead-letters what would fail again.
 *
 * When to insert: at `maxRows` rows; or `maxMs` after the first waiting row; or as soon
 * as every source (a topic-partition's handler) that added rows lately is waiting here,
 * since then no more rows can come until this insert is done — but not sooner than
 * `minGapMs` after the previous insert began, so a trickle of rows does not become a
 * trickle of tiny inserts (each one is a new part for ClickHouse to merge).
 *
 * Rows are kept as objects (inserted as JSONEachRow) unless the batcher has a
 * `RowEncoder`: then `add()` writes each row at once as `TabSeparated` bytes into a reused
 * buffer (tsv.ts) and the insert hands those bytes over as they are.
 */
import { LogmeterError, errorMessage, isRetriable } from '../errors.js';
import type { ClickHouse } from './client.js';
import { TsvWriter, type RowEncoder } from './tsv.js';

/** Idle buffers kept for reuse, and the largest one kept (a batch of very long lines is not held on to). */
const SPARE_WRITERS = 2;
const SPARE_MAX_BYTES = 64 << 20;

export interface BatcherTiming {
  maxRows: number;
  maxMs: number;
  /** Least time between the starts of two inserts triggered by waiting sources (the fair batcher: of any two). Default maxMs / 5. */
  minGapMs?: number;
  /** A source counts as active this long after its last rows. Default 2000 ms. */
  activeMs?: number;
}

export class TableBatcher<R = Record<string, unknown>> {
  private rows: R[] = [];
  /** With an encoder: the rows of the next insert, as bytes; `count` rows in it. */
  private writer: TsvWriter | undefined;
  private count = 0;
  private readonly spare: TsvWriter[] = [];
  private readonly encoder: RowEncoder<R> | undefined;
  private readonly columns: readonly string[] | undefined;
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;
  private lastInsertAt = 0;
  /** Sources by the time they last added rows. */
  private readonly seen = new Map<string, number>();
  private readonly waiting = new Set<string>();
  private readonly minGapMs: number;
  private readonly activeMs: number;

  constructor(
    private readonly ch: ClickHouse,
    private readonly table: string,
    /** Column names of the JSONEachRow rows (undefined: every column), or the row encoder. */
    format: readonly string[] | RowEncoder<R> | undefined,
    private readonly timing: BatcherTiming,
    private readonly onInsert?: (rows: number) => void,
  ) {
    if (format !== undefined && 'write' in format) this.encoder = format;
    else this.columns = format;
    this.minGapMs = timing.minGapMs ?? Math.floor(timing.maxMs / 5);
    this.activeMs = timing.activeMs ?? 2000;
  }

  /** Adds rows from `source` (e.g. `topic/partition`) and resolves once they are inserted. */
  add(rows: readonly R[], source = ''): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    if (this.encoder) {
      // Encoded first: rows that cannot be written reject this call and leave no bytes behind.
      const w = (this.writer ??= this.spare.pop() ?? new TsvWriter());
      const mark = w.mark();
      try {
        for (const r of rows) this.encoder.write(r, w);
      } catch (err) {
        w.rollback(mark);
        return Promise.reject(err instanceof Error ? err : new Error(errorMessage(err)));
      }
      this.count = w.rows;
    } else {
      for (const r of rows) this.rows.push(r);
      this.count = this.rows.length;
    }
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    const now = Date.now();
    this.seen.set(source, now);
    this.waiting.add(source);
    if (this.count >= this.timing.maxRows) {
      void this.flush();
      return p;
    }
    const due = this.everyoneWaiting(now) ? Math.max(now, this.lastInsertAt + this.minGapMs) : now + this.timing.maxMs;
    if (this.timer === undefined) this.schedule(due, now);
    else if (due < this.timerAt) {
      clearTimeout(this.timer);
      this.schedule(due, now);
    }
    return p;
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const rows = this.rows;
    const writer = this.writer;
    const count = this.count;
    const waiters = this.waiters;
    this.rows = [];
    this.writer = undefined;
    this.count = 0;
    this.waiters = [];
    this.waiting.clear();
    if (count === 0) return;
    this.lastInsertAt = Date.now();
    try {
      if (writer && this.encoder) await this.ch.insertEncoded(this.table, { columns: this.encoder.columns, body: writer.bytes(), rows: count });
      else await this.ch.insert(this.table, rows as Record<string, unknown>[], this.columns);
      this.onInsert?.(count);
      for (const w of waiters) w.resolve();
    } catch (err) {
      // Classified by ClickHouse's code (lib/clickhouse/errors.ts): a transient failure is
      // retried by the consumer; one that would fail again (types, unknown column) is not.
      const e = new LogmeterError('clickhouse_insert_failed', `insert into ${this.table}: ${errorMessage(err)}`, { retriable: isRetriable(err), cause: err });
      for (const w of waiters) w.reject(e);
    } finally {
      // The insert is over (either way): its buffer may be written again.
      if (writer && this.spare.length < SPARE_WRITERS && writer.capacity <= SPARE_MAX_BYTES) {
        writer.reset();
        this.spare.push(writer);
      }
    }
  }

  private schedule(at: number, now: number): void {
    this.timerAt = at;
    this.timer = setTimeout(() => void this.flush(), Math.max(0, at - now));
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
