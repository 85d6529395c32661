/**
 * Billing reports on a schedule, through bullmq.
 *
 * One queue, `<topicPrefix>billing`, holds two kinds of jobs:
 * - `tick` (one job scheduler per configured period kind, cron in UTC): lists the
 *   tenants with usage in the period before the tick's scheduled time and enqueues one
 *   `report` job per tenant;
 * - `report`: computes the tenant's report and writes it (ClickHouse + CSV/JSON).
 *
 * A report job's id is `<tenant>|<kind>|<period label>` (tenant percent-encoded, so it
 * never holds the separator): bullmq refuses ':' in custom ids, and it adds no job
 * whose id it still holds, so a tick that runs twice enqueues each report once.
 * Completed report jobs are kept for {@link KEEP_COMPLETED_SECONDS} for that purpose.
 * Running a report again (after removing its job, or from the CLI) gives identical
 * files and rows: reports are a pure function of usage and prices.
 *
 * Retries: 5 attempts with exponential backoff (10 s, 20 s, 40 s, 80 s) for errors that
 * can pass (ClickHouse unavailable, a disk hiccup); a LogmeterError that is not
 * retriable (unknown tenant, unpriced usage) fails the job at once.
 */
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { dataPath } from '../../lib/config.js';
import { type Config } from '../../app/config.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { PriceList } from './prices.js';
import { Redis } from 'ioredis';
import { computeReport, periodOf, previousPeriod, tenantDirName, writeReport, type Period, type PeriodKind, type Report } from './report.js';

/** Cron pattern (UTC) of each period's tick: a few minutes after the period ends, so the last usage recomputation has run. */
export const TICK_PATTERNS: Record<PeriodKind, string> = {
  hourly: '5 * * * *',
  daily: '15 0 * * *',
  monthly: '30 0 1 * *',
};

/** Attempts per report job. */
export const REPORT_ATTEMPTS = 5;
/** First retry delay; doubles each attempt. */
export const REPORT_BACKOFF_MS = 10_000;
/** How long a completed report job (and so its id) is kept: longer than any tick could be repeated. */
export const KEEP_COMPLETED_SECONDS = 7 * 24 * 3600;
/** How long a failed report job is kept for an operator to see and retry. */
export const KEEP_FAILED_SECONDS = 30 * 24 * 3600;

const SCHEDULER_PREFIX = 'billing-tick-';

export interface TickData {
  kind: PeriodKind;
}

export interface ReportJobData {
  tenant: string;
  kind: PeriodKind;
  /** ISO times of the period. */
  start: string;
  end: string;
}

export interface ReportJobResult {
  report_id: string;
  amount: string;
  currency: string;
  files: { csv: string; json: string };
}

/** `<tenant>|<kind>|<label>`, the id that makes each tenant's period one job. */
export function reportJobId(tenant: string, period: Period): string {
  return `${tenantDirName(tenant)}|${period.kind}|${period.label}`;
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

/** Computes and writes one report now; what a report job does, and what the CLI runs. */
export async function runReportNow(opts: RunReportOptions): Promise<{ report: Report; files: { csv: string; json: string } }> {
  const report = await computeReport(opts.ch, opts.tenant, opts.period.start, opts.period.end, opts.prices);
  const files = await writeReport(opts.ch, report, opts.dir);
  opts.logger.info({ report_id: report.report_id, amount: report.totals.amount, currency: report.currency, files }, 'billing report written');
  return { report, files };
}

export interface BillingOptions {
  /** Read: `redis.url`, `kafka.topicPrefix` (queue `<prefix>billing`), `processors.reportPeriods`, `dataDir`. */
  config: Config;
  /** Where usage is read and line items written; the process must hold it for as long as billing runs. */
  ch: ClickHouse;
  /** Parent logger; billing logs as `{ component: 'billing' }`. */
  logger: Logger;
  /** Prices every report job uses (load once at start with loadPriceList). */
  prices: PriceList;
  /** "Now", for a tick job that carries no scheduled time. Default the system clock. */
  clock?: () => Date;
  /** bullmq key prefix. Default bullmq's `bull`; tests use their namespace. */
  prefix?: string;
  /** Where report files go. Default `<dataDir>/reports`. */
  reportsDir?: string;
}

export interface Billing {
  /** The billing queue, for inspection (job states, schedulers) and tests. */
  readonly queue: Queue;
  /**
   * Enqueues the report jobs of the `kind` period before `at` (default the clock),
   * one per tenant with usage in it; returns their job ids. What a tick job does.
   */
  tick(kind: PeriodKind, at?: Date): Promise<string[]>;
  close(): Promise<void>;
}

/** The scheduled time of a job-scheduler tick (bullmq keeps it as `prevMillis`), else undefined. */
function scheduledAt(job: Job): Date | undefined {
  const millis = job.opts.prevMillis;
  return typeof millis === 'number' && millis > 0 ? new Date(millis) : undefined;
}

async function tenantsWithUsage(ch: ClickHouse, period: Period): Promise<string[]> {
  const rs = await ch.client.query({
    query: `SELECT DISTINCT tenant FROM ${ch.table('usage')} FINAL
            WHERE ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})
            ORDER BY tenant`,
    query_params: { from: period.start.getTime(), to: period.end.getTime() },
    format: 'JSONEachRow',
  });
  return (await rs.json<{ tenant: string }>()).map((r) => r.tenant);
}

/**
 * Starts the billing queue and worker and (re)declares one tick scheduler per
 * `config.processors.reportPeriods`; schedulers of kinds no longer configured are
 * removed.
 */
export async function startBilling(opts: BillingOptions): Promise<Billing> {
  const { config, ch, prices } = opts;
  const logger = opts.logger.child({ component: 'billing' });
  const clock = opts.clock ?? (() => new Date());
  const dir = opts.reportsDir ?? dataPath(config, 'reports');
  const name = `${config.kafka.topicPrefix}billing`;
  const prefix = opts.prefix;
  // Each side gets its own connection: the worker blocks on one while it waits for jobs.
  const queueClient = new Redis(config.redis.url, { maxRetriesPerRequest: 3 });
  const workerClient = new Redis(config.redis.url, { maxRetriesPerRequest: null });

  const queue = new Queue<TickData | ReportJobData>(name, { connection: queueClient, ...(prefix ? { prefix } : {}) });
  queue.on('error', (err) => logger.error({ err }, 'billing queue error'));

  const tick = async (kind: PeriodKind, at: Date = clock()): Promise<string[]> => {
    const period = previousPeriod(kind, at);
    const tenants = await tenantsWithUsage(ch, period);
    const jobs = tenants.map((tenant) => ({
      name: 'report',
      data: { tenant, kind, start: period.start.toISOString(), end: period.end.toISOString() } satisfies ReportJobData,
      opts: {
        jobId: reportJobId(tenant, period),
        attempts: REPORT_ATTEMPTS,
        backoff: { type: 'exponential', delay: REPORT_BACKOFF_MS },
        removeOnComplete: { age: KEEP_COMPLETED_SECONDS },
        removeOnFail: { age: KEEP_FAILED_SECONDS },
      },
    }));
    if (jobs.length > 0) await queue.addBulk(jobs);
    const ids = jobs.map((j) => j.opts.jobId);
    logger.info({ kind, period: period.label, tenants: tenants.length }, 'billing tick');
    return ids;
  };

  const worker = new Worker<TickData | ReportJobData, string[] | ReportJobResult>(
    name,
    async (job) => {
      try {
        if (job.name === 'tick') return await tick(job.data.kind, scheduledAt(job));
        if (job.name === 'report') {
          const data = job.data as ReportJobData;
          const period = periodOf(new Date(data.start), new Date(data.end));
          const { report, files } = await runReportNow({ ch, prices, tenant: data.tenant, period, dir, logger });
          return { report_id: report.report_id, amount: report.totals.amount, currency: report.currency, files };
        }
        throw new LogmeterError('billing_unknown_job', `unknown billing job "${job.name}"`);
      } catch (err) {
        // Programmer and data errors fail at once; the rest get the remaining attempts.
        if (err instanceof LogmeterError && !err.retriable) throw new UnrecoverableError(`${err.code}: ${err.message}`);
        throw err;
      }
    },
    { connection: workerClient, ...(prefix ? { prefix } : {}), concurrency: 1 },
  );
  worker.on('error', (err) => logger.error({ err }, 'billing worker error'));
  worker.on('failed', (job, err) => {
    const attempts = job?.opts.attempts ?? 1;
    const final = !job || job.attemptsMade >= attempts || err instanceof UnrecoverableError;
    logger[final ? 'error' : 'warn']({ job: job?.id, attempt: job?.attemptsMade, attempts, err: errorMessage(err) }, final ? 'billing job failed' : 'billing job failed, will retry');
  });

  try {
    const wanted = new Set<PeriodKind>(config.processors.reportPeriods);
    for (const kind of wanted) {
      await queue.upsertJobScheduler(
        `${SCHEDULER_PREFIX}${kind}`,
        { pattern: TICK_PATTERNS[kind], tz: 'UTC' },
        {
          name: 'tick',
          data: { kind },
          opts: {
            attempts: REPORT_ATTEMPTS,
            backoff: { type: 'exponential', delay: REPORT_BACKOFF_MS },
            removeOnComplete: { count: 100 },
            removeOnFail: { age: KEEP_FAILED_SECONDS },
          },
        },
      );
    }
    for (const s of await queue.getJobSchedulers()) {
      const kind = s.key.startsWith(SCHEDULER_PREFIX) ? s.key.slice(SCHEDULER_PREFIX.length) : undefined;
      if (kind !== undefined && !wanted.has(kind as PeriodKind)) await queue.removeJobScheduler(s.key);
    }
  } catch (err) {
    await Promise.allSettled([worker.close(), queue.close()]);
    await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
    throw err;
  }
  logger.info({ queue: name, periods: config.processors.reportPeriods }, 'billing started');

  return {
    queue,
    tick,
    async close() {
      await worker.close();
      await queue.close();
      await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
      logger.info('billing stopped');
    },
  };
}
