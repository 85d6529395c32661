/**
 * The billing processor: the bullmq queue and worker of scheduler.ts's jobs, started and
 * stopped. A tick lists the tenants with usage in its period (sql.ts) and enqueues their
 * report jobs; a report job runs the report (run.ts).
 *
 * Scale-out. Keys: no Kafka; the queue is in Redis (bullmq). Report job ids are
 * `<tenant>|<kind>|<period>`, so ticks run by N instances enqueue each report once; the
 * tick job schedulers are upserted by name (one per period kind whichever instance
 * starts). State: the queue (Redis) and the reports (ClickHouse + files), none in the
 * process. N instances' workers share the queue and take report jobs one each at a
 * time, which spreads tenants over instances; a worker that dies leaves its job
 * stalled, and bullmq hands it to another once its lock expires (reports are a pure
 * function of usage and prices, so the rerun writes the same bytes). There is no
 * rebalance: a job is owned by the worker holding its lock. Reports are written to
 * ClickHouse: with the embedded store (chDB admits one process) the N instances run in
 * the process that holds it; with `CLICKHOUSE_URL`, N processes (the report files then
 * need a shared directory). test/metering-scaleout.test.ts checks 1, 3, and 3 with one
 * stopped give byte-identical reports, each job run once.
 */
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { periodOf, previousPeriod, type PeriodKind } from './calendar.js';
import type { BillingConfig } from './config.js';
import { loadPriceList, type PriceList } from './prices.js';
import { runReportNow } from './run.js';
import { jobError, reportJobs, scheduledAt, staleTickSchedulers, tickScheduler, type ReportJobData, type ReportJobResult, type TickData } from './scheduler.js';
import { tenantsWithUsage } from './sql.js';

export interface BillingOptions {
  config: BillingConfig;
  /** Where usage is read and line items written; the process must hold it for as long as billing runs. */
  ch: ClickHouse;
  /** Parent logger; billing logs as `{ component: 'billing' }`. */
  logger: Logger;
  /** Prices every report job uses. Default: `config.priceList`, loaded once at start. */
  prices?: PriceList;
  /** "Now", for a tick job that carries no scheduled time. Default the system clock. */
  clock?: () => Date;
  /** bullmq key prefix. Default bullmq's `bull`; tests use their namespace. */
  prefix?: string;
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

/**
 * Starts the billing queue and worker and (re)declares one tick scheduler per
 * `config.reportPeriods`; schedulers of kinds no longer configured are removed.
 */
export async function startBilling(opts: BillingOptions): Promise<Billing> {
  const { config, ch } = opts;
  const prices = opts.prices ?? loadPriceList(config.priceList);
  const logger = opts.logger.child({ component: 'billing' });
  const clock = opts.clock ?? (() => new Date());
  const dir = config.reportsDir;
  const name = config.queue;
  const prefix = opts.prefix;
  // Each side gets its own connection: the worker blocks on one while it waits for jobs.
  const queueClient = new Redis(config.redisUrl, { maxRetriesPerRequest: 3 });
  const workerClient = new Redis(config.redisUrl, { maxRetriesPerRequest: null });

  const queue = new Queue<TickData | ReportJobData>(name, { connection: queueClient, ...(prefix ? { prefix } : {}) });
  queue.on('error', (err) => logger.error({ err }, 'billing queue error'));

  const tick = async (kind: PeriodKind, at: Date = clock()): Promise<string[]> => {
    const period = previousPeriod(kind, at);
    const tenants = await tenantsWithUsage(ch, period);
    const jobs = reportJobs(kind, period, tenants);
    if (jobs.length > 0) await queue.addBulk(jobs);
    logger.info({ kind, period: period.label, tenants: tenants.length }, 'billing tick');
    return jobs.map((j) => j.opts.jobId);
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
        throw jobError(err);
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
    const wanted = new Set<PeriodKind>(config.reportPeriods);
    for (const kind of wanted) {
      const s = tickScheduler(kind);
      await queue.upsertJobScheduler(s.id, s.repeat, s.template);
    }
    for (const id of staleTickSchedulers((await queue.getJobSchedulers()).map((s) => s.key), wanted)) await queue.removeJobScheduler(id);
  } catch (err) {
    await Promise.allSettled([worker.close(), queue.close()]);
    await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
    throw err;
  }
  logger.info({ queue: name, periods: config.reportPeriods }, 'billing started');

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
