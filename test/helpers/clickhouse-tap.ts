import type { ClickHouse } from '../../lib/clickhouse/client.js';

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
