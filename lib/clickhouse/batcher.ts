/**
 * Batches rows for one table: an insert when `maxRows` rows are waiting or `maxMs`
 * after the first one. `add()` resolves only when the insert holding its rows
 * succeeded, so a Kafka handler that awaits it commits its offsets after the write.
 * A failed insert rejects every waiting `add()` with a retriable error; the consumer
 * retries (the rows come again; the tables' keys remove any repeat).
 */
import { LogmeterError, errorMessage } from '../errors.js';
import type { ClickHouse } from './client.js';

export class TableBatcher {
  private rows: Record<string, unknown>[] = [];
  private waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ch: ClickHouse,
    private readonly table: string,
    private readonly columns: readonly string[] | undefined,
    private readonly maxRows: number,
    private readonly maxMs: number,
    private readonly onInsert?: (rows: number) => void,
  ) {}

  add(rows: Record<string, unknown>[]): Promise<void> {
    if (rows.length === 0) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    for (const r of rows) this.rows.push(r);
    if (this.rows.length >= this.maxRows) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.maxMs);
    return p;
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const rows = this.rows;
    const waiters = this.waiters;
    this.rows = [];
    this.waiters = [];
    if (rows.length === 0) return;
    try {
      await this.ch.client.insert({
        table: this.ch.table(this.table),
        values: rows,
        format: 'JSONEachRow',
        ...(this.columns ? { columns: this.columns as [string, ...string[]] } : {}),
      });
      this.onInsert?.(rows.length);
      for (const w of waiters) w.resolve();
    } catch (err) {
      const e = new LogmeterError('clickhouse_insert_failed', `insert into ${this.table}: ${errorMessage(err)}`, { retriable: true, cause: err });
      for (const w of waiters) w.reject(e);
    }
  }
}
