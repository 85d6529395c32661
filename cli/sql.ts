/**
 * `logmeter sql "<SELECT …>"`: an operator's read-only query, printed as JSON lines.
 * Goes through the running process when it answers on LOGMETER_HTTP (it holds the
 * embedded store), otherwise opens ClickHouse directly.
 */
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError } from '../lib/errors.js';
import { readOnlyQuery } from '../lib/clickhouse/query.js';
import { callIfRunning, errorOf, openClickHouseDirectly } from './client.js';

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
      const ch = openClickHouseDirectly(cfg, createLogger('warn', 2));
      try {
        process.stdout.write(await readOnlyQuery(ch, stmt));
      } finally {
        await ch.close();
      }
    });
}

/** The rows from the running process, or undefined when none answers on LOGMETER_HTTP. */
async function throughRunningProcess(cfg: Config, stmt: string): Promise<string | undefined> {
  const answer = await callIfRunning(cfg, { path: '/api/v1/admin/sql', body: { query: stmt } }, 'sql_failed');
  if (answer && !answer.ok) throw new LogmeterError('sql_failed', errorOf(answer.text) ?? answer.text);
  return answer?.text;
}
