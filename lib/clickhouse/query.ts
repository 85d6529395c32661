/**
 * Runs an operator's read-only statement and returns the rows as JSON lines.
 *
 * Against a server the statement also runs with ClickHouse's `readonly` setting (a
 * per-request setting there). Not against embedded chDB: its connection turns settings
 * into `SET` statements on the one shared session, which would leave every later insert
 * of the process refused; there the guard in readonly.ts is the protection.
 */
import type { ClickHouse } from './client.js';
import { assertReadOnly } from './readonly.js';

export async function readOnlyQuery(ch: ClickHouse, sql: string): Promise<string> {
  const stmt = assertReadOnly(sql);
  const rs = await ch.client.query({ query: stmt, format: 'JSONEachRow', ...(ch.mode === 'server' ? { clickhouse_settings: { readonly: '2' } } : {}) });
  return rs.text();
}
