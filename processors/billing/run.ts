/**
 * Running a report: read the tenant's usage, price it, store the line items and write
 * the files. What a report job does (scheduler.ts), and what `logmeter report` and the
 * running process's report route call.
 *
 * Reports are a pure function of usage and prices (report.ts), so running one again
 * gives identical rows and files.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { LogmeterError } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { periodOf } from './calendar.js';
import { writeReportFiles } from './files.js';
import type { PriceList } from './prices.js';
import { priceUsage, sizedMeters, type Report } from './report.js';
import { storeLineItems, tenantHasUsage, usageTotals } from './sql.js';

/**
 * The report of `tenant` for [from, to). Throws `unknown_tenant` for a tenant with no
 * usage at all; a known tenant without usage in the period gets zero quantities.
 * Usage the price list cannot price is refused (see report.ts, rule 5).
 */
export async function computeReport(ch: ClickHouse, tenant: string, from: Date, to: Date, prices: PriceList): Promise<Report> {
  if (!tenant) throw new LogmeterError('unknown_tenant', 'the tenant name is empty');
  const period = periodOf(from, to);
  if (!(await tenantHasUsage(ch, tenant))) throw new LogmeterError('unknown_tenant', `unknown tenant "${tenant}": it has no usage at all`);
  return priceUsage(tenant, period, await usageTotals(ch, tenant, period, sizedMeters(prices)), prices);
}

/**
 * Stores a report: its line items into billing_line_items (see storeLineItems), then
 * its CSV and JSON under `dir` (see files.ts).
 */
export async function writeReport(ch: ClickHouse, report: Report, dir: string): Promise<{ csv: string; json: string }> {
  await storeLineItems(ch, report);
  return writeReportFiles(dir, report);
}

export interface RunReportOptions {
  /** Where usage is read and line items written. */
  ch: ClickHouse;
  /** Prices the report is computed with. */
  prices: PriceList;
  /** The tenant; one with no usage at all is refused (`unknown_tenant`). */
  tenant: string;
  /** [start, end) of the report (see periodOf: whole hours). */
  period: { start: Date; end: Date };
  /** Root of the report files: `<dir>/<tenant>/<label>.csv|.json`. */
  dir: string;
  /** Gets one info line per report written. */
  logger: Logger;
}

/** Computes and writes one report now. */
export async function runReportNow(opts: RunReportOptions): Promise<{ report: Report; files: { csv: string; json: string } }> {
  const report = await computeReport(opts.ch, opts.tenant, opts.period.start, opts.period.end, opts.prices);
  const files = await writeReport(opts.ch, report, opts.dir);
  opts.logger.info({ report_id: report.report_id, amount: report.totals.amount, currency: report.currency, files }, 'billing report written');
  return { report, files };
}
