/**
 * `logmeter sql --direct` and older callers: an operator's statement as JSON lines,
 * through the guarded path of operator-sql.ts (checked by the engine's parser, run on a
 * read-only limited connection, audited).
 */
import { userInfo } from 'node:os';
import { pino } from 'pino';
import type { ClickHouse } from './client.js';
import { runOperatorSql, type OperatorSqlContext } from './operator-sql.js';

export async function readOnlyQuery(ch: ClickHouse, sql: string, ctx: Partial<OperatorSqlContext> = {}): Promise<string> {
  const result = await runOperatorSql(ch, sql, { who: `cli:${userInfo().username}`, via: 'cli', logger: ctx.logger ?? pino({ level: 'warn' }, pino.destination(2)), ...ctx });
  return result.ndjson;
}
