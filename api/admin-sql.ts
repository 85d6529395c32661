/**
 * `POST /api/v1/admin/sql`: lets `logmeter sql` query through the running process when
 * it holds the embedded ClickHouse (only one process may open its data directory).
 * Operator only: the admin token when one is configured, otherwise loopback callers
 * presenting no token (api/auth.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { readOnlyQuery } from '../lib/clickhouse/query.js';
import { LogmeterError } from '../lib/errors.js';
import { operatorCheck, sendOperatorOnly } from './auth.js';
import { bodyField } from './params.js';

export function registerSqlRoute(app: FastifyInstance, ch: ClickHouse, adminToken: string | undefined): void {
  const isOperator = operatorCheck(adminToken);
  app.post('/api/v1/admin/sql', async (req, reply) => {
    if (!isOperator(req)) return sendOperatorOnly(reply);
    const query = bodyField(req.body, 'query');
    if (typeof query !== 'string') return reply.status(400).send({ error: 'body must be {"query": "<SELECT …>"}', code: 'bad_request' });
    try {
      const rows = await readOnlyQuery(ch, query);
      return reply.header('content-type', 'application/x-ndjson').send(rows);
    } catch (err) {
      if (err instanceof LogmeterError && err.code === 'sql_refused') return reply.status(400).send({ error: err.message, code: err.code });
      const e = err as { message?: string; code?: string; type?: string };
      return reply.status(400).send({ error: e.message ?? String(err), code: e.type ?? e.code ?? 'clickhouse_error' });
    }
  });
}
