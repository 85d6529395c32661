/**
 * `GET /api/v1/reports` and `/reports/<id>`: a tenant's billing reports as the billing
 * processor stored them (billing_line_items), one report per id. Another tenant's report
 * answers 404, as an absent one does: its existence is not revealed. A report's answer
 * says which of its files (CSV, JSON under `<dataDir>/reports`, api/report-files.ts)
 * exist: a report whose rows are stored but whose files are not (written by another
 * host, or removed) has nothing to download.
 */
import { access } from 'node:fs/promises';
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import { reportPaths } from '../processors/billing/files.js';
import type { Report as BillingReport } from '../processors/billing/report.js';
import { page, type Cursor } from './cursor.js';
import type { TenantRouter } from './handler.js';
import { fromBeforeTo, listing, nameParam, notFound, parse, pathParam } from './params.js';
import { afterCursor, equals, scopeFor, scoped, timeRange, whereSql, type Scope, type Where } from './scope.js';
import { iso } from './time.js';

const reportsQuery = z
  .object({ ...listing, period_kind: z.enum(['hourly', 'daily', 'monthly']).optional() })
  .strict()
  .superRefine(fromBeforeTo);

const tenantOnlyQuery = z.object({ tenant: nameParam.optional() }).strict();

export interface ReportSummary {
  report_id: string;
  tenant: string;
  period_kind: string;
  period_start: string;
  period_end: string;
  /** Amount due per currency. */
  totals: Record<string, number>;
  line_items: number;
}

export interface ReportLineItem {
  meter: string;
  unit: string;
  quantity: number;
  free_quantity: number;
  billable: number;
  unit_price: number;
  amount: number;
  currency: string;
}

export type Report = Omit<ReportSummary, 'line_items'> & { items: ReportLineItem[] };

/** Where a report's CSV and JSON are under `reportsDir` (the paths billing writes, processors/billing/files.ts). */
export function reportFilePaths(reportsDir: string, report: { report_id: string; tenant: string }): { csv: string; json: string } | undefined {
  const prefix = `${report.tenant}/`;
  if (!report.report_id.startsWith(prefix)) return undefined;
  return reportPaths(reportsDir, { tenant: report.tenant, period: { label: report.report_id.slice(prefix.length) } } as BillingReport);
}

const exists = (file: string) => access(file).then(
  () => true,
  () => false,
);

/** Which of a report's files exist under `reportsDir` (none when the process has no reports directory). */
export async function reportFiles(reportsDir: string | undefined, report: { report_id: string; tenant: string }): Promise<{ csv: boolean; json: boolean }> {
  const paths = reportsDir === undefined ? undefined : reportFilePaths(reportsDir, report);
  if (!paths) return { csv: false, json: false };
  const [csv, json] = await Promise.all([exists(paths.csv), exists(paths.json)]);
  return { csv, json };
}

interface ReportRow {
  report_id: string;
  tenant: string;
  period_kind: string;
  start_ms: number;
  end_ms: number;
  totals: [string[], number[]];
  line_items: number;
}

function summary(r: ReportRow): ReportSummary {
  const totals: Record<string, number> = {};
  r.totals[0].forEach((currency, i) => (totals[currency] = r.totals[1][i] ?? 0));
  return {
    report_id: r.report_id,
    tenant: r.tenant,
    period_kind: r.period_kind,
    period_start: iso(Number(r.start_ms)),
    period_end: iso(Number(r.end_ms)),
    totals,
    line_items: Number(r.line_items),
  };
}

const REPORT_COLUMNS = `report_id, toString(tenant) AS tenant, toString(any(period_kind)) AS period_kind,
  toUnixTimestamp64Milli(min(period_start)) AS start_ms, toUnixTimestamp64Milli(max(period_end)) AS end_ms,
  sumMap([toString(currency)], [amount]) AS totals, count() AS line_items`;

export async function listReports(
  ch: ClickHouse,
  q: { scope: Scope; from?: number | undefined; to?: number | undefined; periodKind?: string | undefined; limit: number; cursor?: Cursor | undefined; order: 'asc' | 'desc' },
): Promise<{ items: ReportSummary[]; next_cursor: string | null }> {
  const w = scoped(q.scope);
  timeRange(w, 'period_start', q.from, q.to);
  equals(w, 'period_kind', q.periodKind);
  const having: Where = { conds: [], params: w.params };
  afterCursor(having, 'min(period_start)', 'report_id', q.cursor, q.order);
  w.params.limit = q.limit + 1;
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const found = await ch.query<ReportRow>(`SELECT ${REPORT_COLUMNS} FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)}
     GROUP BY report_id, tenant ${having.conds.length ? `HAVING ${having.conds.join(' AND ')}` : ''}
     ORDER BY start_ms ${dir}, report_id ${dir} LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.start_ms), id: r.report_id }));
  return { items: items.map(summary), next_cursor };
}

/** One report, or undefined when it does not exist within the scope. */
export async function getReport(ch: ClickHouse, scope: Scope, reportId: string): Promise<Report | undefined> {
  const w = scoped(scope);
  equals(w, 'report_id', reportId);
  const [head] = await ch.query<ReportRow>(`SELECT ${REPORT_COLUMNS} FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)} GROUP BY report_id, tenant`, w.params);
  if (!head) return undefined;
  const items = await ch.query<ReportLineItem>(`SELECT toString(meter) AS meter, toString(unit) AS unit, quantity, free_quantity, billable, unit_price, amount, toString(currency) AS currency
     FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)} ORDER BY meter, unit`,
    w.params,
  );
  const { line_items: _n, ...rest } = summary(head);
  return { ...rest, items };
}

/** `reportsDir`: where billing writes report files; unset, every report answers `files: {csv: false, json: false}`. */
export function registerReportRoutes(r: TenantRouter, reportsDir?: string): void {
  r.get('/reports', async (principal, raw) => {
    const p = parse(reportsQuery, raw);
    return listReports(r.ch, { scope: scopeFor(principal, p.tenant), from: p.from, to: p.to, periodKind: p.period_kind, limit: p.limit ?? 100, cursor: p.cursor, order: p.order ?? 'desc' });
  });

  // Report ids contain a slash (`acme/2026-11-26`): sent URL-encoded (%2F) or as further path segments.
  r.get('/reports/*', async (principal, raw, params) => {
    const p = parse(tenantOnlyQuery, raw);
    const id = pathParam(params, '*', 'report_id');
    const report = await getReport(r.ch, scopeFor(principal, p.tenant), id);
    if (!report) throw notFound(`report ${JSON.stringify(id)}`);
    return { ...report, files: await reportFiles(reportsDir, report) };
  });
}
