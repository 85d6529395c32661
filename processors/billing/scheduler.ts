/**
 * Billing's bullmq jobs: what they are called, carry and retry (processor.ts runs them).
 *
 * One queue (`BillingConfig.queue`) holds two kinds of jobs:
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
import { UnrecoverableError, type Job, type JobsOptions, type RepeatOptions } from 'bullmq';
import { LogmeterError } from '../../lib/errors.js';
import type { Period, PeriodKind } from './calendar.js';
import { tenantDirName } from './files.js';

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

/** The report jobs a tick adds: one per tenant, with the id, retries and retention above. */
export function reportJobs(kind: PeriodKind, period: Period, tenants: readonly string[]): Array<{ name: 'report'; data: ReportJobData; opts: JobsOptions & { jobId: string } }> {
  return tenants.map((tenant) => ({
    name: 'report',
    data: { tenant, kind, start: period.start.toISOString(), end: period.end.toISOString() },
    opts: {
      jobId: reportJobId(tenant, period),
      attempts: REPORT_ATTEMPTS,
      backoff: { type: 'exponential', delay: REPORT_BACKOFF_MS },
      removeOnComplete: { age: KEEP_COMPLETED_SECONDS },
      removeOnFail: { age: KEEP_FAILED_SECONDS },
    },
  }));
}

/** The job scheduler of a period kind's tick: its id, repeat and job template. */
export function tickScheduler(kind: PeriodKind): { id: string; repeat: RepeatOptions; template: { name: 'tick'; data: TickData; opts: JobsOptions } } {
  return {
    id: `${SCHEDULER_PREFIX}${kind}`,
    repeat: { pattern: TICK_PATTERNS[kind], tz: 'UTC' },
    template: {
      name: 'tick',
      data: { kind },
      opts: {
        attempts: REPORT_ATTEMPTS,
        backoff: { type: 'exponential', delay: REPORT_BACKOFF_MS },
        removeOnComplete: { count: 100 },
        removeOnFail: { age: KEEP_FAILED_SECONDS },
      },
    },
  };
}

/** Of the queue's job scheduler ids, the billing ticks of kinds no longer `wanted`; other schedulers are not billing's. */
export function staleTickSchedulers(ids: readonly string[], wanted: ReadonlySet<PeriodKind>): string[] {
  return ids.filter((id) => id.startsWith(SCHEDULER_PREFIX) && !wanted.has(id.slice(SCHEDULER_PREFIX.length) as PeriodKind));
}

/** The scheduled time of a job-scheduler tick (bullmq keeps it as `prevMillis`), else undefined. */
export function scheduledAt(job: Job): Date | undefined {
  const millis = job.opts.prevMillis;
  return typeof millis === 'number' && millis > 0 ? new Date(millis) : undefined;
}

/** What a failed job throws to bullmq: programmer and data errors fail at once, the rest get the remaining attempts. */
export function jobError(err: unknown): unknown {
  return err instanceof LogmeterError && !err.retriable ? new UnrecoverableError(`${err.code}: ${err.message}`) : err;
}
