/**
 * Signals → scale jobs on the bullmq queue (the rules are signal.ts'; which queue and
 * what the app counts is the {@link Placement}'s: one engine, or several nodes in
 * cluster.ts). At most one
 * pending job per app, always the newest: the app's previous job, if still waiting or
 * delayed, is removed before a new one is added; a signal that finds the app in sync
 * removes a waiting job, which would now be stale. Signals of one app are handled one
 * after another, even when submit() is also called directly.
 *
 * An app not opted in, or with no own container running and no replica left (plan.ts'
 * `not_opted_in` and `gone`), gets no job: the refusal is reported once per state. The
 * log says what changed only: `scale job enqueued` is an info line when the app's target
 * or state differs from the last one logged, a debug line when a signal repeats it.
 */
import { keyedSerial } from '../../lib/serial.js';
import type { Queue } from 'bullmq';
import type Docker from 'dockerode';
import type { Logger } from '../../lib/logger.js';
import type { AutoscaleSignal } from '../../schemas/events.js';
import type { ScalerConfig } from './config.js';
import { appCensus, type Census } from './docker.js';
import { appState, clampTarget, type AppState } from './plan.js';
import type { Reporter } from './reporter.js';
import { jobData, signalStep, staleAge, type ScaleJobData, type ScaleJobResult, type SubmitOutcome } from './signal.js';
import { appKey, type ScalerState } from './state.js';
import type { ScalerMetrics } from './telemetry.js';

/** How long a finished job (and so its id) is kept: a signal redelivered within it adds nothing. */
export const KEEP_COMPLETED_SECONDS = 3600;
/** How long a failed job is kept for an operator to see. */
export const KEEP_FAILED_SECONDS = 24 * 3600;

const PENDING_STATES = new Set(['waiting', 'wait', 'delayed', 'prioritized']);

export type ScaleQueue = Queue<ScaleJobData, ScaleJobResult>;

/** Where the intake counts an app's replicas and puts its jobs: one engine and queue, or several nodes (cluster.ts). */
export interface Placement {
  /** The app's running containers wherever the scaler places them, and the most it may have. */
  census(tenant: string, app: string): Promise<{ census: Census; maxReplicas: number }>;
  /** The queue of the node a job growing or shrinking the app goes to. */
  queueFor(tenant: string, app: string, direction: 'up' | 'down'): Promise<ScaleQueue>;
  /** Every queue a job of the scaler may be in. */
  queues(): Promise<ScaleQueue[]>;
}

/** One Docker engine, one queue: the default. */
export function singleNode(queue: ScaleQueue, docker: Docker, cfg: ScalerConfig): Placement {
  return {
    census: async (tenant, app) => ({ census: await appCensus(docker, cfg.labelPrefix, tenant, app), maxReplicas: cfg.maxContainersPerNode }),
    queueFor: () => Promise.resolve(queue),
    queues: () => Promise.resolve([queue]),
  };
}

export class SignalIntake {
  private readonly chains = keyedSerial<string>();
  /** Per app, the last state and target logged at info (bounded: an app's entry goes with its last job's keep time). */
  private readonly logged = new Map<string, { state: AppState; target: number; at: number }>();

  constructor(
    private readonly placement: Placement,
    private readonly state: ScalerState,
    private readonly metrics: ScalerMetrics,
    private readonly log: Logger,
    private readonly cfg: ScalerConfig,
    private readonly clock: () => Date,
    private readonly reporter: Reporter,
    /** `<tenant>/<app>` of the apps opted in by the config file (`autoscale.apps`). */
    private readonly optedIn: ReadonlySet<string>,
  ) {}

  submit(signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }> {
    return this.serial(appKey(signal.tenant, signal.app), async () => {
      const result = await this.submitNow(signal);
      this.metrics.signals.inc({ outcome: result.outcome });
      return result;
    });
  }

  private serial<R>(key: string, fn: () => Promise<R>): Promise<R> {
    return this.chains.run(key, fn);
  }

  private async submitNow(signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }> {
    const { cfg } = this;
    const { tenant, app } = signal;
    const fields = { tenant, app, signal_version: signal.version };
    const age = staleAge(signal, this.clock().getTime(), cfg.maxSignalAgeMs);
    if (age !== undefined) {
      this.log.debug({ ...fields, age_ms: age }, 'stale signal skipped');
      return { outcome: 'stale' };
    }
    const key = appKey(tenant, app);
    const { census, maxReplicas } = await this.placement.census(tenant, app);
    const current = census.current;
    const state = appState({ own: census.own, replicas: census.current - census.own, optedIn: census.labelledOptIn || this.optedIn.has(`${tenant}/${app}`) });
    const pendingId = await this.state.pending(key);
    const changed = this.changed(key, state, state === 'active' || state === 'removed' ? signalStep(signal, current, maxReplicas, census.own).target : current);
    if (changed) await this.state.clearRefusal(key);
    if (state === 'not_opted_in' || state === 'gone') {
      if (pendingId) await this.removePending(pendingId);
      const reason = state === 'gone' ? 'tenant_removed' : 'not_opted_in';
      const to = clampTarget(signal.recommended_replicas, maxReplicas);
      await this.reporter.refuse(jobData(signal, to), `${key}|${reason}|${signal.version}`, { kind: 'refused', reason, from: current, to });
      return { outcome: reason };
    }
    const step = signalStep(signal, current, maxReplicas, census.own);
    if (step.kind === 'in_sync') {
      if (pendingId && (await this.removePending(pendingId))) this.log.info({ ...fields, job: pendingId, replicas: current }, 'pending scale job removed: the app has its recommended replicas');
      return { outcome: 'in_sync' };
    }
    const { jobId, target } = step;
    if (pendingId === jobId || (await this.queueOf(jobId))) return { outcome: 'duplicate', jobId };
    const replaced = pendingId !== null && (await this.removePending(pendingId));
    const queue = await this.placement.queueFor(tenant, app, target > current ? 'up' : 'down');
    await queue.add('scale', step.data, {
      jobId,
      attempts: cfg.jobAttempts,
      backoff: { type: cfg.backoff.type, delay: cfg.backoff.delayMs },
      removeOnComplete: { age: KEEP_COMPLETED_SECONDS },
      removeOnFail: { age: KEEP_FAILED_SECONDS },
    });
    await this.state.setPending(key, jobId, KEEP_FAILED_SECONDS * 1000);
    const line = { ...fields, job: jobId, queue: queue.name, current, target, state, replaced: replaced ? pendingId : undefined };
    if (changed) this.log.info(line, 'scale job enqueued');
    else this.log.debug(line, 'scale job enqueued (same target as the last one logged)');
    return { outcome: replaced ? 'replaced' : 'enqueued', jobId };
  }

  /** Records the app's state and target; true when either differs from the last recorded. */
  private changed(key: string, state: AppState, target: number): boolean {
    const now = this.clock().getTime();
    const last = this.logged.get(key);
    this.logged.set(key, { state, target, at: now });
    if (this.logged.size > 10_000) {
      for (const [k, v] of this.logged) if (now - v.at > KEEP_COMPLETED_SECONDS * 1000) this.logged.delete(k);
    }
    return last === undefined || last.state !== state || last.target !== target;
  }

  /**
   * Removes the app's previous job if it has not started; true when removed. A job that
   * found its app's lock held is active for a moment on its way back to delayed: asked
   * again shortly. One really running is left to finish; the new job runs after it.
   */
  private async removePending(id: string): Promise<boolean> {
    const queue = await this.queueOf(id);
    if (!queue) return false;
    for (let attempt = 0; attempt < 5; attempt++) {
      const s = await queue.getJobState(id);
      if (PENDING_STATES.has(s)) {
        if ((await queue.remove(id)) === 1) return true;
      } else if (s !== 'active') return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  /** The queue holding job `id` (bullmq still keeps it), if any. */
  private async queueOf(id: string): Promise<ScaleQueue | undefined> {
    for (const q of await this.placement.queues()) if (await q.getJob(id)) return q;
    return undefined;
  }
}
