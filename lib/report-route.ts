/**
 * `POST /api/v1/admin/report`: lets `logmeter report` compute a report through the
 * running process when it holds the embedded ClickHouse. Operator only (like the SQL
 * route). Body: `{ tenant, period? , from?, to?, format? }`; answers the rendered report
 * and the files written.
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from './clickhouse/client.js';
import { LogmeterError } from './errors.js';
import { operatorAllowed } from './sql-route.js';
import type { Logger } from './logger.js';
import { loadPriceList } from '../processors/billing/prices.js';
import { renderCsv, renderJson } from '../processors/billing/report.js';
import { runReportNow } from '../processors/billing/scheduler.js';
import { periodFromOptions, renderTable } from '../processors/billing/present.js';

interface Body {
  tenant?: unknown;
  period?: unknown;
  from?: unknown;
  to?: unknown;
  format?: unknown;
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

export function registerReportRoute(app: FastifyInstance, deps: { ch: ClickHouse; adminToken: string | undefined; priceList: string | undefined; reportsDir: string; logger: Logger }): void {
  app.post<{ Body: Body }>('/api/v1/admin/report', async (req, reply) => {
    if (!operatorAllowed(req, deps.adminToken)) return reply.status(401).send({ error: 'operator token required', code: 'unauthorized' });
    const tenant = str(req.body?.tenant);
    const format = str(req.body?.format) ?? 'table';
    if (!tenant) return reply.status(400).send({ error: 'tenant: required', code: 'bad_request' });
    if (!['table', 'csv', 'json'].includes(format)) return reply.status(400).send({ error: 'format: one of table, csv, json', code: 'bad_request' });
    try {
      const period = periodFromOptions({ period: str(req.body?.period), from: str(req.body?.from), to: str(req.body?.to) });
      const { report, files } = await runReportNow({ ch: deps.ch, prices: loadPriceList(deps.priceList), tenant, period, dir: deps.reportsDir, logger: deps.logger });
      const text = format === 'csv' ? renderCsv(report) : format === 'json' ? renderJson(report) : renderTable(report);
      return { text, files };
    } catch (err) {
      if (err instanceof LogmeterError && !err.retriable) return reply.status(400).send({ error: err.message, code: err.code });
      throw err;
    }
  });
}
