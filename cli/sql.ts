/**
 * `logmeter sql "<SELECT …>"`: an operator's read-only query, printed as JSON lines.
 * Goes through the running process when it answers on LOGMETER_HTTP (it holds the
 * embedded store), otherwise opens ClickHouse directly.
 */
import type { Command } from 'commander';
import type { Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { readOnlyQuery } from '../lib/clickhouse/query.js';
import { clickHouseOptions, openClickHouse } from '../lib/clickhouse/client.js';

export function sqlCommand(program: Command, config: () => Config): void {
  program
    .command('sql')
    .description('run a read-only query (SELECT, SHOW, DESCRIBE) against the configured ClickHouse; rows as JSON lines')
    .argument('<query>', 'the statement')
    .option('--direct', 'do not go through a running logmeter process')
    .action(async (query: string, opts: { direct?: boolean }) => {
      // Not checked here: the guard (and its audit line, refusals included) is operator-sql.ts, wherever the query runs.
      const stmt = query;
      const cfg = config();
      const viaProcess = opts.direct ? undefined : await throughRunningProcess(cfg, stmt);
      if (viaProcess !== undefined) {
        process.stdout.write(viaProcess);
        return;
      }
      const logger = createLogger('warn', 2);
      let ch;
      try {
        ch = openClickHouse(clickHouseOptions(cfg, logger));
      } catch (err) {
        if ((err as { code?: string }).code === 'CHDB_CONNECTION') {
          throw new LogmeterError(
            'clickhouse_locked',
            `cannot open the embedded ClickHouse in ${clickHouseOptions(cfg, logger).embeddedPath}: it is held by another process (a logmeter process on another LOGMETER_HTTP than ${cfg.http.listen}?) or unreadable`,
          );
        }
        throw err;
      }
      try {
        process.stdout.write(await readOnlyQuery(ch, stmt));
      } finally {
        await ch.close();
      }
    });
}

/** The rows from the running process, or undefined when none answers on LOGMETER_HTTP. */
async function throughRunningProcess(cfg: Config, stmt: string): Promise<string | undefined> {
  let res: Response;
  try {
    res = await fetch(`http://${cfg.http.listen}/api/v1/admin/sql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(cfg.api.adminToken ? { authorization: `Bearer ${cfg.api.adminToken}` } : {}) },
      body: JSON.stringify({ query: stmt }),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    if (cause === 'ECONNREFUSED') return undefined;
    throw new LogmeterError('sql_failed', `logmeter process on ${cfg.http.listen}: ${errorMessage(err)}`);
  }
  if (res.status === 404) return undefined; // something else listens there, or a process without ClickHouse
  const body = await res.text();
  if (!res.ok) {
    let message = body;
    try {
      message = (JSON.parse(body) as { error?: string }).error ?? body;
    } catch {
      /* plain text */
    }
    throw new LogmeterError('sql_failed', message);
  }
  return body;
}
