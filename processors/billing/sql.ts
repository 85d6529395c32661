/**
 * Billing's statements: reading usage and storing line items, through the ClickHouse
 * handle. Every statement reads `FINAL` (a recomputed row replaces the one before it)
 * and binds its values as parameters; table names come from the handle.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { monthStart, type Period } from './calendar.js';
import { QTY_SCALE } from './money.js';
import type { LineItem, Report, UsageTotal } from './report.js';

/** Whether the tenant has any usage at all (a tenant without is unknown, not merely idle). */
export async function tenantHasUsage(ch: ClickHouse, tenant: string): Promise<boolean> {
  const rows = await ch.query(`SELECT 1 AS one FROM ${ch.table('usage')} FINAL WHERE tenant = {tenant:String} LIMIT 1`, { tenant });
  return rows.length > 0;
}

/** The tenants with usage in the period, sorted: who a tick reports on. */
export async function tenantsWithUsage(ch: ClickHouse, period: Period): Promise<string[]> {
  const rows = await ch.query<{ tenant: string }>(
    `SELECT DISTINCT tenant FROM ${ch.table('usage')} FINAL
            WHERE ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
            ORDER BY tenant`,
    { from: period.start.getTime(), to: period.end.getTime() },
  );
  return rows.map((r) => r.tenant);
}

interface UsageRow {
  meter: string;
  unit: string;
  size: string;
  month: number;
  in_period: number;
  quantity: string;
}

/**
 * The tenant's usage per meter, unit, size (for the `sized` meters only) and month,
 * from the start of the period's first month to the period's end, split into before
 * and in the period: what the free allowance had already covered is part of a report.
 * Summed as Decimal128(9), exactly, and returned as decimal strings.
 */
export async function usageTotals(ch: ClickHouse, tenant: string, period: Period, sized: readonly string[]): Promise<UsageTotal[]> {
  const rows = await ch.query<UsageRow>(
    `SELECT meter, unit,
                   if(has({sized:Array(String)}, meter), dimensions['size'], '') AS size,
                   toYYYYMM(ts) AS month,
                   ts >= fromUnixTimestamp64Milli({from:Int64}) AS in_period,
                   toString(sum(toDecimal128(toString(quantity), ${QTY_SCALE}))) AS quantity
            FROM ${ch.table('usage')} FINAL
            WHERE tenant = {tenant:String}
              AND ts >= fromUnixTimestamp64Milli({month_start:Int64})
              AND ts < fromUnixTimestamp64Milli({to:Int64})
            GROUP BY meter, unit, size, month, in_period
            ORDER BY meter, unit, size, month, in_period`,
    { tenant, sized, from: period.start.getTime(), to: period.end.getTime(), month_start: monthStart(period.start) },
  );
  return rows.map((r) => ({ meter: r.meter, unit: r.unit, size: r.size, month: Number(r.month), inPeriod: Number(r.in_period) === 1, quantity: r.quantity }));
}

/**
 * The row key in billing_line_items, whose ORDER BY is (tenant, report_id, meter): a
 * meter priced by size gets one row per size, `container_seconds{size=small}`.
 */
export function lineItemKey(li: LineItem): string {
  return li.size === null ? li.meter : `${li.meter}{size=${li.size}}`;
}

/** The report's rows of billing_line_items; version = period end (see storeLineItems). */
export function lineItemRows(report: Report): Array<Record<string, string | number>> {
  const start = Date.parse(report.period.start);
  const end = Date.parse(report.period.end);
  return report.line_items.map((li) => ({
    report_id: report.report_id,
    tenant: report.tenant,
    period_kind: report.period.kind,
    period_start: start,
    period_end: end,
    meter: lineItemKey(li),
    unit: li.unit,
    quantity: Number(li.quantity),
    free_quantity: Number(li.free_quantity),
    billable: Number(li.billable),
    unit_price: Number(li.price) / li.per,
    amount: Number(li.amount),
    currency: report.currency,
    version: end,
  }));
}

/**
 * Stores a report's line items. Rows carry version = period end, so running the report
 * again replaces them (equal versions: the last insert wins) with identical rows when
 * nothing changed. Rows of line items the new report no longer has (a size or meter
 * gone from the price list) are deleted after the insert, so a reader never sees the
 * report empty.
 */
export async function storeLineItems(ch: ClickHouse, report: Report): Promise<void> {
  const rows = lineItemRows(report);
  if (rows.length > 0) await ch.insert('billing_line_items', rows);
  const params = { tenant: report.tenant, report_id: report.report_id, keys: rows.map((r) => r.meter) };
  const stale = await ch.query(
    `SELECT DISTINCT meter FROM ${ch.table('billing_line_items')} FINAL
            WHERE tenant = {tenant:String} AND report_id = {report_id:String} AND NOT has({keys:Array(String)}, meter)`,
    params,
  );
  if (stale.length > 0) {
    await ch.command(`DELETE FROM ${ch.table('billing_line_items')} WHERE tenant = {tenant:String} AND report_id = {report_id:String} AND NOT has({keys:Array(String)}, meter)`, params);
  }
}
