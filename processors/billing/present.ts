/**
 * How a report is asked for and shown on a terminal (`logmeter report`, and the
 * running process answering for it).
 */
import { LogmeterError } from '../../lib/errors.js';
import { parsePeriod, parseRange, type Period, type Report } from './report.js';

/** The period the options name; exactly one of --period or --from with --to. */
export function periodFromOptions(opts: { period?: string | undefined; from?: string | undefined; to?: string | undefined }): Period {
  const range = opts.from !== undefined || opts.to !== undefined;
  if (opts.period !== undefined && range) throw new LogmeterError('invalid_period', 'give either --period or --from/--to, not both');
  if (opts.period !== undefined) return parsePeriod(opts.period);
  if (opts.from === undefined || opts.to === undefined) throw new LogmeterError('invalid_period', 'give --period, or both --from and --to');
  return parseRange(opts.from, opts.to);
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

