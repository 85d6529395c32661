/**
 * `POST /api/v1/admin/sql`: lets `logmeter sql` query through the running process when
 * it holds the embedded ClickHouse (only one process may open its data directory).
 * Operator only: the admin token when one is configured, otherwise loopback callers.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ClickHouse } from './clickhouse/client.js';
import { readOnlyQuery } from './clickhouse/query.js';
import { LogmeterError } from './errors.js';

export function isLoopback(addr: string | undefined): boolean {
  return !!addr && (addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.'));
}

export function operatorAllowed(req: FastifyRequest, adminToken: string | undefined): boolean {
  if (adminToken) return req.headers.authorization === `Bearer ${adminToken}`;
  return isLoopback(req.socket.remoteAddress);
}

export function registerSqlRoute(app: FastifyInstance, ch: ClickHouse, adminToken: string | undefined): void {
  app.post<{ Body: { query?: unknown } }>('/api/v1/admin/sql', async (req, reply) => {
    if (!operatorAllowed(req, adminToken)) return reply.status(401).send({ error: 'operator token required', code: 'unauthorized' });
    const query = req.body?.query;
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
