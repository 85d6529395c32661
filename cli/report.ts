/**
 * `logmeter report --tenant T (--period P | --from T --to T) [--format table|csv|json] [--out DIR]`:
 * computes one tenant's billing report now, prints it, and writes it like a scheduled
 * report job does (ClickHouse rows, CSV and JSON under `--out` or `<dataDir>/reports`).
 *
 * When a logmeter process answers on LOGMETER_HTTP (it holds the embedded store), the
 * report is computed there (its files under the process's `<dataDir>/reports`) and, with
 * `--out`, the command also writes the contents the process answered under DIR, byte for
 * byte; otherwise this command opens ClickHouse itself and writes under `--out` only.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { dataPath } from '../lib/config.js';
import { type Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError } from '../lib/errors.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { callIfRunning, openClickHouseDirectly } from './client.js';
import { loadPriceList } from '../processors/billing/prices.js';
import { renderCsv, renderJson, renderTable } from '../processors/billing/render.js';
import { periodFromOptions } from '../processors/billing/calendar.js';
import { runReportNow } from '../processors/billing/run.js';

export { periodFromOptions, renderTable };

export interface ReportCliOptions {
  tenant: string;
  period?: string;
  from?: string;
  to?: string;
  format: 'table' | 'csv' | 'json';
  out?: string;
}

/** What the running process answers: the rendered report, its files, and their contents. */
interface RemoteReport {
  text: string;
  files: { csv: string; json: string };
  contents: { csv: string; json: string; tenantDir: string; label: string };
}

/** The report from the running process, or undefined when none answers on LOGMETER_HTTP. */
async function throughRunningProcess(cfg: Config, opts: ReportCliOptions): Promise<RemoteReport | undefined> {
  const body = { tenant: opts.tenant, period: opts.period, from: opts.from, to: opts.to, format: opts.format };
  const answer = await callIfRunning(cfg, { path: '/api/v1/admin/report', body, timeoutMs: 120_000 }, 'report_failed');
  if (answer === undefined) return undefined;
  const report = JSON.parse(answer.text) as Partial<RemoteReport> & { error?: string };
  if (!answer.ok || !report.text || !report.files) throw new LogmeterError('report_failed', report.error ?? `HTTP ${answer.status}`);
  // A process from before --out went through it answers no contents: refused rather than ignored.
  if (opts.out !== undefined && !report.contents) throw new LogmeterError('report_failed', `--out: the logmeter process on ${cfg.http.listen} does not send the report's contents (an older version?); its files are ${report.files.csv} and ${report.files.json}`);
  return report as RemoteReport;
}

/** The process's renderings under `dir`, in the same layout (`<dir>/<tenant>/<label>.csv|.json`). */
async function writeCopies(dir: string, contents: RemoteReport['contents']): Promise<{ csv: string; json: string }> {
  // Both names come from the process: one path segment each, never a way out of `dir`.
  for (const seg of [contents.tenantDir, contents.label]) {
    if (!seg || seg === '.' || seg === '..' || /[/\\]/.test(seg)) throw new LogmeterError('report_failed', `unexpected report file name from the process: ${JSON.stringify(seg)}`);
  }
  const base = path.join(dir, contents.tenantDir, contents.label);
  await mkdir(path.dirname(base), { recursive: true });
  await writeFile(`${base}.csv`, contents.csv, 'utf8');
  await writeFile(`${base}.json`, contents.json, 'utf8');
  return { csv: `${base}.csv`, json: `${base}.json` };
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
      const remote = await throughRunningProcess(cfg, opts);
      if (remote) {
        process.stdout.write(remote.text);
        const files = opts.out === undefined ? remote.files : await writeCopies(opts.out, remote.contents);
        process.stderr.write(`wrote ${files.csv} and ${files.json}\n`);
        return;
      }
      const prices = loadPriceList(cfg.processors.priceList);
      const logger = createLogger('warn', 2);
      const ch = openClickHouseDirectly(cfg, logger, 'a running `logmeter up`? stop it, or run the report against a ClickHouse server with CLICKHOUSE_URL');
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
