/**
 * `GET /api/v1/report-files/<report id>.csv|.json`: a report's files exactly as billing
 * (and `logmeter report`) wrote them under `<dataDir>/reports` — served from the files,
 * never rendered again, so a download is byte for byte what the command wrote. The report
 * must exist within the caller's scope (api/reports.ts): another tenant's report answers
 * 404 like an absent one.
 */
import { readFile } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { Logger } from '../lib/logger.js';
import { sendUnauthorized, type Authenticator } from './auth.js';
import { API_PREFIX } from './handler.js';
import { ApiError, nameParam, notFound, parse } from './params.js';
import { getReport, reportFilePaths } from './reports.js';
import { scopeFor } from './scope.js';
import { z } from 'zod';

const query = z.object({ tenant: nameParam.optional() }).strict();

export function registerReportFileRoutes(app: FastifyInstance, deps: { ch: ClickHouse; auth: Authenticator; reportsDir: string; logger: Logger }): void {
  app.get(`${API_PREFIX}/report-files/*`, async (req, reply) => {
    const who = deps.auth.authenticate(req);
    if (!who.ok) return sendUnauthorized(reply, who.error);
    try {
      const p = parse(query, req.query);
      const name = (req.params as Record<string, string>)['*'] ?? '';
      const m = /^(.{1,256})\.(csv|json)$/s.exec(name);
      if (!m) throw new ApiError(400, 'bad_request', 'expected /api/v1/report-files/<report id>.csv or .json');
      const [, id = '', format = 'csv'] = m;
      const report = await getReport(deps.ch, scopeFor(who.principal, p.tenant), id);
      const files = report && reportFilePaths(deps.reportsDir, report);
      if (!report || !files) throw notFound(`report ${JSON.stringify(id)}`);
      const label = id.slice(report.tenant.length + 1);
      let body: Buffer;
      try {
        body = await readFile(format === 'csv' ? files.csv : files.json);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`the ${format.toUpperCase()} file of report ${JSON.stringify(id)}`);
        throw err;
      }
      const filename = `${report.tenant}-${label}.${format}`.replace(/[^A-Za-z0-9._-]/g, '_');
      return reply
        .header('content-type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json; charset=utf-8')
        .header('content-disposition', `attachment; filename="${filename}"`)
        .header('x-content-type-options', 'nosniff')
        .send(body);
    } catch (err) {
      if (err instanceof ApiError) return reply.status(err.status).send({ error: err.message, code: err.code });
      deps.logger.error({ err, request: req.id }, 'report file request failed');
      return reply.status(500).send({ error: `internal error (request ${req.id})`, code: 'internal' });
    }
  });
}
