/**
 * `POST /api/v1/admin/report`: lets `logmeter report` compute a report through the
 * running process when it holds the embedded ClickHouse. Operator only (like the SQL
 * route). Body: `{ tenant, period? , from?, to?, format? }`; answers the rendered report,
 * the files written and their contents: `logmeter report --out DIR` writes those same
 * bytes under DIR on the caller's side, the process's own copies stay where they are.
 */
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { LogmeterError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { operatorCheck, sendOperatorOnly } from './auth.js';
import { bodyField } from './params.js';
import { loadPriceList } from '../processors/billing/prices.js';
import { renderCsv, renderJson, renderTable } from '../processors/billing/render.js';
import { periodFromOptions } from '../processors/billing/calendar.js';
import { tenantDirName } from '../processors/billing/files.js';

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);

export function registerReportRoute(app: FastifyInstance, deps: { ch: ClickHouse; adminToken: string | undefined; priceList: string | undefined; reportsDir: string; logger: Logger }): void {
  const isOperator = operatorCheck(deps.adminToken);
  app.post('/api/v1/admin/report', async (req, reply) => {
    if (!isOperator(req)) return sendOperatorOnly(reply);
    const field = (key: string) => str(bodyField(req.body, key));
    const tenant = field('tenant');
    const format = field('format') ?? 'table';
    if (!tenant) return reply.status(400).send({ error: 'tenant: required', code: 'bad_request' });
    if (!['table', 'csv', 'json'].includes(format)) return reply.status(400).send({ error: 'format: one of table, csv, json', code: 'bad_request' });
    try {
      const period = periodFromOptions({ period: field('period'), from: field('from'), to: field('to') });
      // bullmq and ioredis come with the scheduler: loaded when a report is asked for, not by every API process.
      const { runReportNow } = await import('../processors/billing/run.js');
      const { report, files } = await runReportNow({ ch: deps.ch, prices: loadPriceList(deps.priceList), tenant, period, dir: deps.reportsDir, logger: deps.logger });
      const text = format === 'csv' ? renderCsv(report) : format === 'json' ? renderJson(report) : renderTable(report);
      // The same renderings the files hold (they are a pure function of the report), so a copy is byte-identical.
      const contents = { csv: renderCsv(report), json: renderJson(report), tenantDir: tenantDirName(report.tenant), label: report.period.label };
      return { text, files, contents };
    } catch (err) {
      if (err instanceof LogmeterError && !err.retriable) return reply.status(400).send({ error: err.message, code: err.code });
      throw err;
    }
  });
}
