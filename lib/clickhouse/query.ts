/**
 * Runs an operator's read-only statement and returns the rows as JSON lines.
 */
import type { ClickHouse } from './client.js';
import { assertReadOnly } from './readonly.js';

export async function readOnlyQuery(ch: ClickHouse, sql: string): Promise<string> {
  const stmt = assertReadOnly(sql);
  const rs = await ch.client.query({ query: stmt, format: 'JSONEachRow', clickhouse_settings: { readonly: '2' } });
  return rs.text();
}
