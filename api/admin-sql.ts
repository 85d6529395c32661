/**
 * `POST /api/v1/admin/sql`: lets `logmeter sql` query through the running process when
 * it holds the embedded ClickHouse (only one process may open its data directory).
 * Operator only: the admin token (configured, or the admin-token file's; api/auth.ts).
 * The statement goes through lib/clickhouse/operator-sql.ts (logmeter's tables only, limits, audit).
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { runOperatorSql } from '../lib/clickhouse/operator-sql.js';
import { LogmeterError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { operatorCheck, sendOperatorOnly } from './auth.js';
import { bodyField } from './params.js';

export function registerSqlRoute(app: FastifyInstance, ch: ClickHouse, adminToken: string | undefined): void {
  const isOperator = operatorCheck(adminToken);
  app.post('/api/v1/admin/sql', async (req, reply) => {
    if (!isOperator(req)) return sendOperatorOnly(reply);
    const query = bodyField(req.body, 'query');
    if (typeof query !== 'string') return reply.status(400).send({ error: 'body must be {"query": "<SELECT …>"}', code: 'bad_request' });
    try {
      // lib/http.ts gives Fastify our pino logger: req.log is its child, with the request id.
      const result = await runOperatorSql(ch, query, { who: `admin@${req.ip}`, via: 'http', logger: req.log as unknown as Logger });
      return reply.header('content-type', 'application/x-ndjson').send(result.ndjson);
    } catch (err) {
      if (err instanceof LogmeterError && (err.code === 'sql_refused' || err.code === 'sql_limit')) return reply.status(400).send({ error: err.message, code: err.code });
      const e = err as { message?: string; code?: string; type?: string };
      return reply.status(400).send({ error: e.message ?? String(err), code: e.type ?? e.code ?? 'clickhouse_error' });
    }
  });
}
