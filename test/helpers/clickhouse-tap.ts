import type { ClickHouse, ColumnarRows } from '../../lib/clickhouse/client.js';
import type { EncodedRows } from '../../lib/clickhouse/tsv.js';

/**
 * `store` with its insert methods replaced by those given (the rest passed through): for
 * tests and benches that watch, time or hold inserts on the real engine.
 */
export function tapInserts(store: ClickHouse, over: Partial<Pick<ClickHouse, 'insert' | 'insertEncoded'>>): ClickHouse {
  return {
    get client() {
      return store.client;
    },
    mode: store.mode,
    database: store.database,
    table: (name) => store.table(name),
    query: (sql, params) => store.query(sql, params),
    insert: over.insert ?? ((table, rows, columns) => store.insert(table, rows, columns)),
    insertEncoded: over.insertEncoded ?? ((table, rows) => store.insertEncoded(table, rows)),
    command: (sql, params) => store.command(sql, params),
    ping: () => store.ping(),
    close: () => store.close(),
  };
}

/**
 * An insert body as text (latin1), whatever its format: TabSeparated bytes as they are;
 * binary columns (columnar.ts) as rows of their byte columns' raw values, tab-separated,
 * one per line (not escaped: for finding ids and marker texts, not for parsing bytes).
 */
export function encodedText(enc: EncodedRows | ColumnarRows): string {
  if (!('format' in enc)) return enc.body.toString('latin1');
  const byteCols = enc.columns.flatMap((c, i) => (c.type === 'bytes' ? [i] : []));
  const rows: string[] = [];
  for (let r = 0; r < enc.rows; r++) rows.push(byteCols.map((i) => enc.writer.bytesAt(i, r).toString('latin1')).join('\t'));
  return rows.join('\n');
}

/** The values of one (byte) column of an insert's rows, in order (see encodedText). */
export function encodedColumn(enc: EncodedRows | ColumnarRows, name: string): string[] {
  const names = 'format' in enc ? enc.columns.filter((c) => c.type === 'bytes').map((c) => c.name) : [...enc.columns];
  const at = names.indexOf(name);
  if (at < 0) throw new Error(`no byte column ${name} in the insert`);
  return encodedText(enc)
    .split('\n')
    .slice(0, enc.rows)
    .map((l) => l.split('\t')[at]!);
}
