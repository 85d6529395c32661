/**
 * A report as text: CSV and JSON (the files a report is stored as, and what
 * `logmeter report --format csv|json` prints) and a table for a terminal.
 *
 * CSV and JSON are byte-deterministic: a fixed column and key order built here (not
 * taken from the object), `\n` line ends, a trailing newline, no generation time.
 */
import type { Report } from './report.js';

export const CSV_COLUMNS = [
  'report_id',
  'tenant',
  'period_kind',
  'period_start',
  'period_end',
  'currency',
  'meter',
  'size',
  'unit',
  'quantity',
  'free_quantity',
  'billable',
  'price',
  'per',
  'amount',
] as const;

function csvField(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** One row per line item under a header; `\n` line ends, trailing newline. Totals are in the JSON. */
export function renderCsv(report: Report): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const li of report.line_items) {
    const row = [report.report_id, report.tenant, report.period.kind, report.period.start, report.period.end, report.currency, li.meter, li.size ?? '', li.unit, li.quantity, li.free_quantity, li.billable, li.price, li.per, li.amount];
    lines.push(row.map(csvField).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/** Pretty JSON with a fixed key order (built here, not taken from the object's), trailing newline. */
export function renderJson(report: Report): string {
  const ordered = {
    report_id: report.report_id,
    tenant: report.tenant,
    period: { kind: report.period.kind, label: report.period.label, start: report.period.start, end: report.period.end },
    currency: report.currency,
    line_items: report.line_items.map((li) => ({
      meter: li.meter,
      size: li.size,
      unit: li.unit,
      quantity: li.quantity,
      free_quantity: li.free_quantity,
      billable: li.billable,
      price: li.price,
      per: li.per,
      amount: li.amount,
    })),
    totals: { amount: report.totals.amount },
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** A readable table of the line items and the total, for a terminal. */
export function renderTable(report: Report): string {
  const head = ['meter', 'size', 'unit', 'quantity', 'free', 'billable', 'price', 'per', 'amount'];
  const rows = report.line_items.map((li) => [li.meter, li.size ?? '', li.unit, li.quantity, li.free_quantity, li.billable, li.price, String(li.per), li.amount]);
  const numeric = new Set([3, 4, 5, 6, 7, 8]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length), i === 8 ? report.totals.amount.length : 0));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const total = head.map((_, i) => (i === 0 ? 'total' : i === 8 ? report.totals.amount : ''));
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [
    `report ${report.report_id} (${report.period.kind} ${report.period.start} to ${report.period.end}, ${report.currency})`,
    '',
    line(head),
    rule,
    ...rows.map(line),
    rule,
    `${line(total)} ${report.currency}`,
    '',
  ].join('\n');
}
