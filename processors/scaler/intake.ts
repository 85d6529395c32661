/**
 * Signals → scale jobs on the bullmq queue (the rules are signal.ts'). At most one
 * pending job per app, always the newest: the app's previous job, if still waiting or
 * delayed, is removed before a new one is added; a signal that finds the app in sync
 * removes a waiting job, which would now be stale. Signals of one app are handled one
 * after another, even when submit() is also called directly.
 */
import { keyedSerial } from '../../lib/serial.js';
import type { Queue } from 'bullmq';
import type Docker from 'dockerode';
import type { Logger } from '../../lib/logger.js';
import type { AutoscaleSignal } from '../../schemas/events.js';
import type { ScalerConfig } from './config.js';
import { countReplicas } from './docker.js';
import { signalStep, staleAge, type ScaleJobData, type ScaleJobResult, type SubmitOutcome } from './signal.js';
import { appKey, type ScalerState } from './state.js';
import type { ScalerMetrics } from './telemetry.js';

/** How long a finished job (and so its id) is kept: a signal redelivered within it adds nothing. */
export const KEEP_COMPLETED_SECONDS = 3600;
/** How long a failed job is kept for an operator to see. */
export const KEEP_FAILED_SECONDS = 24 * 3600;

const PENDING_STATES = new Set(['waiting', 'wait', 'delayed', 'prioritized']);

export class SignalIntake {
  private readonly chains = keyedSerial<string>();

  constructor(
    private readonly queue: Queue<ScaleJobData, ScaleJobResult>,
    private readonly docker: Docker,
    private readonly state: ScalerState,
    private readonly metrics: ScalerMetrics,
    private readonly log: Logger,
    private readonly cfg: ScalerConfig,
    private readonly clock: () => Date,
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
    const current = await countReplicas(this.docker, cfg.labelPrefix, tenant, app);
    const step = signalStep(signal, current, cfg.maxContainersPerNode);
    const pendingId = await this.state.pending(key);
    if (step.kind === 'in_sync') {
      if (pendingId && (await this.removePending(pendingId))) this.log.info({ ...fields, job: pendingId, replicas: current }, 'pending scale job removed: the app has its recommended replicas');
      return { outcome: 'in_sync' };
    }
    const { jobId, target } = step;
    if (pendingId === jobId || (await this.queue.getJob(jobId))) return { outcome: 'duplicate', jobId };
    const replaced = pendingId !== null && (await this.removePending(pendingId));
    await this.queue.add('scale', step.data, {
      jobId,
      attempts: cfg.jobAttempts,
      backoff: { type: cfg.backoff.type, delay: cfg.backoff.delayMs },
      removeOnComplete: { age: KEEP_COMPLETED_SECONDS },
      removeOnFail: { age: KEEP_FAILED_SECONDS },
    });
    await this.state.setPending(key, jobId, KEEP_FAILED_SECONDS * 1000);
    this.log.info({ ...fields, job: jobId, current, target, replaced: replaced ? pendingId : undefined }, 'scale job enqueued');
    return { outcome: replaced ? 'replaced' : 'enqueued', jobId };
  }

  /**
   * Removes the app's previous job if it has not started; true when removed. A job that
   * found its app's lock held is active for a moment on its way back to delayed: asked
   * again shortly. One really running is left to finish; the new job runs after it.
   */
  private async removePending(id: string): Promise<boolean> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const s = await this.queue.getJobState(id);
      if (PENDING_STATES.has(s)) {
        if ((await this.queue.remove(id)) === 1) return true;
      } else if (s !== 'active') return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }
}
