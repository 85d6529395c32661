/**
 * `logmeter report --tenant T (--period P | --from T --to T) [--format table|csv|json] [--out DIR]`:
 * computes one tenant's billing report now, prints it, and writes it like a scheduled
 * report job does (ClickHouse rows, CSV and JSON under `--out` or `<dataDir>/reports`).
 *
 * It opens ClickHouse itself. With the embedded store, a running `logmeter up` holds
 * it, and the report fails with a message saying so instead of waiting.
 */
import { Option, type Command } from 'commander';
import { dataPath, type Config } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError } from '../lib/errors.js';
import { clickHouseOptions, openClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { loadPriceList } from '../processors/billing/prices.js';
import { parsePeriod, parseRange, renderCsv, renderJson, type Period, type Report } from '../processors/billing/report.js';
import { runReportNow } from '../processors/billing/scheduler.js';

export interface ReportCliOptions {
  tenant: string;
  period?: string;
  from?: string;
  to?: string;
  format: 'table' | 'csv' | 'json';
  out?: string;
}

/** The period the options name; exactly one of --period or --from with --to. */
export function periodFromOptions(opts: Pick<ReportCliOptions, 'period' | 'from' | 'to'>): Period {
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

export function reportCommand(program: Command, config: () => Config): void {
  program
    .command('report')
    .description("compute a tenant's billing report for a period, print it and write its CSV and JSON")
    .requiredOption('--tenant <tenant>', 'the tenant')
    .option('--period <period>', 'YYYY-MM (a month), YYYY-MM-DD (a day) or YYYY-MM-DDTHH (an hour), UTC')
    .option('--from <time>', 'start of a range (ISO time on a whole hour; UTC unless it has an offset)')
    .option('--to <time>', 'end of the range, exclusive')
    .addOption(new Option('--format <format>', 'what to print').choices(['table', 'csv', 'json']).default('table'))
    .option('--out <dir>', 'directory for the CSV and JSON files (default <dataDir>/reports)')
    .action(async (opts: ReportCliOptions) => {
      const period = periodFromOptions(opts);
      const cfg = config();
      const prices = loadPriceList(cfg.processors.priceList);
      const logger = createLogger('warn', 2);
      const chOptions = clickHouseOptions(cfg, logger);
      let ch;
      try {
        ch = openClickHouse(chOptions);
      } catch (err) {
        if ((err as { code?: string }).code === 'CHDB_CONNECTION') {
          throw new LogmeterError(
            'clickhouse_locked',
            `cannot open the embedded ClickHouse in ${chOptions.embeddedPath}: it is held by another process (a running \`logmeter up\`? stop it, or run the report against a ClickHouse server with CLICKHOUSE_URL) or unreadable`,
          );
        }
        throw err;
      }
      try {
        await migrate(ch, logger);
        const { report, files } = await runReportNow({ ch, prices, tenant: opts.tenant, period, dir: opts.out ?? dataPath(cfg, 'reports'), logger });
        process.stdout.write(opts.format === 'csv' ? renderCsv(report) : opts.format === 'json' ? renderJson(report) : renderTable(report));
        process.stderr.write(`wrote ${files.csv} and ${files.json}\n`);
      } finally {
        await ch.close();
      }
    });
}
