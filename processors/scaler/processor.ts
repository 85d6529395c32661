/**
 * The scaler: the reference consumer of the autoscale topic. It turns signals into
 * bullmq scale jobs and scale jobs into Docker replicas started or stopped.
 *
 * Signals (consumer group `scaler`). Per batch, only each app's last signal counts. A
 * signal older than `maxSignalAgeMs` is skipped (a newer one supersedes it). The
 * target is the recommendation clamped to [1, maxContainersPerNode]; "current" is the
 * app's running replicas as Docker lists them now, not the signal's view. When they
 * differ, a job `<tenant>|<app>|<target>|<signal version>` is enqueued on queue
 * `<topicPrefix>scaler`:
 * - a job id bullmq still holds (the same signal redelivered) adds nothing;
 * - the app's previous job, if still waiting or delayed, is removed first: at most one
 *   pending job per app, always the newest;
 * - target equal to current removes a waiting job, which would now be stale.
 * Offsets are committed after the job is in Redis (at-least-once; ids dedupe).
 *
 * Jobs. One job per app at a time (a Redis lock per app; a job that finds it held goes
 * back to delayed without using an attempt), and one scale-up at a time per node (for
 * the cap). Each run re-reads the replicas from Docker, so a retried or repeated job
 * does only what is still missing. The rules are {@link planScale}'s. Growing starts
 * replicas from the app's template (see docker.ts). Shrinking drains the newest
 * replicas first: a `drain` lifecycle event per replica (the route table removes the
 * upstream), `drainMs` of waiting, then stop and remove, newest first. Errors that may
 * pass are retried (`jobAttempts`, `backoff`); others fail the job at once.
 *
 * Every action is logged and published on the lifecycle topic as an operation of the
 * tenant: actor `scaler`, action `scale_up` | `drain` | `scale_down` | `scale_refused`,
 * a readable message and attributes {from, to, reason, signal_version} (reason = the
 * signal's). Event ids derive from job, action and container, so a retried job's
 * events are removed downstream. A refusal repeated within a minute is logged and
 * counted but published once.
 */
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type Docker from 'dockerode';
import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import { eventId } from '../../lib/event-id.js';
import { factsFromInspect, type ContainerFacts } from '../../lib/container.js';
import type { AutoscaleSignal, LifecycleEvent } from '../../schemas/events.js';
import type { ScalerConfig } from './config.js';
import { countNodeContainers, countReplicas, listReplicas, replicaName, replicaSpec, startReplica, stopReplica } from './docker.js';
import { clampTarget, planScale, type Plan } from './plan.js';
import { LOCK_TTL_MS, ScalerState, appKey } from './state.js';
import { scalerMetrics, type ScalerMetrics } from './telemetry.js';

export type ScalerAction = 'scale_up' | 'drain' | 'scale_down' | 'scale_refused';

/** How long a finished job (and so its id) is kept: a signal redelivered within it adds nothing. */
export const KEEP_COMPLETED_SECONDS = 3600;
/** How long a failed job is kept for an operator to see. */
export const KEEP_FAILED_SECONDS = 24 * 3600;
/** A job that finds its app's lock held tries again after this. */
export const LOCK_RETRY_MS = 250;
/** A refusal identical to the last one reported within this is not published again. */
export const REFUSAL_REPEAT_MS = 60_000;

export interface ScaleJobData {
  tenant: string;
  app: string;
  host: string;
  /** The signal's recommendation, before the scaler's clamp. */
  requested: number;
  /** The clamped target the job id names. */
  target: number;
  signal_version: number;
  signal_current: number;
  signal_ts: number;
  mode: string;
  reason: string;
}

export interface ScaleJobResult {
  action: 'none' | 'scale_up' | 'scale_down' | 'scale_refused';
  from: number;
  to: number;
  /** Containers started or stopped. */
  containers: string[];
}

/** What submit() did with a signal (the consumer also counts `superseded`: earlier signals of an app in the same batch). */
export type SubmitOutcome = 'enqueued' | 'replaced' | 'duplicate' | 'in_sync' | 'stale';

export interface ScalerOptions {
  /** Consumes `autoscale` (group `<topicPrefix>scaler`), publishes `lifecycle`; its topic prefix names the queue and its node the events. */
  bus: EventBus;
  /** This node's Docker. One scaler per Docker host and queue. */
  docker: Docker;
  /** Redis of the queue and of the scaler's state. */
  redisUrl: string;
  /** Parent logger; the scaler logs as `{ component: 'scaler' }`. */
  logger: Logger;
  registry: Registry;
  config: ScalerConfig;
  /** "Now" for cooldowns, signal ages and event times. Default the system clock. */
  clock?: () => Date;
  /** bullmq key prefix. Default bullmq's `bull`; tests use their namespace. */
  prefix?: string;
}

export interface Scaler {
  /** The `<topicPrefix>scaler` queue, for inspection and tests. */
  readonly queue: Queue<ScaleJobData, ScaleJobResult>;
  /** The Redis state (cooldowns, pending jobs, locks). */
  readonly state: ScalerState;
  /** What the consumer does with one signal; exposed for other producers of signals and tests. */
  submit(signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }>;
  /** Stops consuming, lets running jobs finish, closes the queue. */
  close(): Promise<void>;
}

/** `<tenant>|<app>|<target>|<signal version>` (tenant and app percent-encoded). */
export function scaleJobId(tenant: string, app: string, target: number, version: number): string {
  return `${appKey(tenant, app)}|${target}|${version}`;
}

const PENDING_STATES = new Set(['waiting', 'wait', 'delayed', 'prioritized']);

export async function startScaler(opts: ScalerOptions): Promise<Scaler> {
  const { bus, docker, config: cfg } = opts;
  const log = opts.logger.child({ component: 'scaler' });
  const clock = opts.clock ?? (() => new Date());
  const metrics = scalerMetrics(opts.registry);
  const name = `${bus.config.topicPrefix}scaler`;
  const prefix = opts.prefix;
  const queueClient = new Redis(opts.redisUrl, { maxRetriesPerRequest: 3 });
  const workerClient = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue<ScaleJobData, ScaleJobResult>(name, { connection: queueClient, ...(prefix ? { prefix } : {}) });
  queue.on('error', (err) => log.error({ err }, 'scaler queue error'));
  const state = new ScalerState(queueClient, `${prefix ?? 'bull'}:${name}:scaler`);
  // Long enough to outlive any cooldown, short enough that removed apps are forgotten.
  const keepChangeMs = Math.max(cfg.cooldownMs.up, cfg.cooldownMs.down) + 3600_000;
  const ops = new Operations(bus, state, metrics, log, cfg, clock);

  // Signals of one app are handled one after another, even when submit() is also called directly.
  const chains = new Map<string, Promise<unknown>>();
  const serial = <R>(key: string, fn: () => Promise<R>): Promise<R> => {
    const next = (chains.get(key) ?? Promise.resolve()).then(fn, fn);
    const settled = next.catch(() => undefined);
    chains.set(key, settled);
    void settled.then(() => chains.get(key) === settled && chains.delete(key));
    return next;
  };

  const submit = (signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }> =>
    serial(appKey(signal.tenant, signal.app), async () => {
      const result = await submitNow(signal);
      metrics.signals.inc({ outcome: result.outcome });
      return result;
    });

  const submitNow = async (signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }> => {
    const { tenant, app } = signal;
    const fields = { tenant, app, signal_version: signal.version };
    const age = clock().getTime() - signal.ts;
    if (cfg.maxSignalAgeMs > 0 && age > cfg.maxSignalAgeMs) {
      log.debug({ ...fields, age_ms: age }, 'stale signal skipped');
      return { outcome: 'stale' };
    }
    const key = appKey(tenant, app);
    const current = await countReplicas(docker, cfg.labelPrefix, tenant, app);
    const target = clampTarget(signal.recommended_replicas, cfg.maxContainersPerNode);
    const pendingId = await state.pending(key);
    if (target === current) {
      if (pendingId && (await removePending(pendingId))) log.info({ ...fields, job: pendingId, replicas: current }, 'pending scale job removed: the app has its recommended replicas');
      return { outcome: 'in_sync' };
    }
    const jobId = scaleJobId(tenant, app, target, signal.version);
    if (pendingId === jobId || (await queue.getJob(jobId))) return { outcome: 'duplicate', jobId };
    const replaced = pendingId !== null && (await removePending(pendingId));
    const data: ScaleJobData = {
      tenant,
      app,
      host: signal.host,
      requested: signal.recommended_replicas,
      target,
      signal_version: signal.version,
      signal_current: signal.current_replicas,
      signal_ts: signal.ts,
      mode: signal.mode,
      reason: signal.reason,
    };
    await queue.add('scale', data, {
      jobId,
      attempts: cfg.jobAttempts,
      backoff: { type: cfg.backoff.type, delay: cfg.backoff.delayMs },
      removeOnComplete: { age: KEEP_COMPLETED_SECONDS },
      removeOnFail: { age: KEEP_FAILED_SECONDS },
    });
    await state.setPending(key, jobId, KEEP_FAILED_SECONDS * 1000);
    log.info({ ...fields, job: jobId, current, target, replaced: replaced ? pendingId : undefined }, 'scale job enqueued');
    return { outcome: replaced ? 'replaced' : 'enqueued', jobId };
  };

  /**
   * Removes the app's previous job if it has not started; true when removed. A job that
   * found its app's lock held is active for a moment on its way back to delayed: asked
   * again shortly. One really running is left to finish; the new job runs after it.
   */
  const removePending = async (id: string): Promise<boolean> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const s = await queue.getJobState(id);
      if (PENDING_STATES.has(s)) {
        if ((await queue.remove(id)) === 1) return true;
      } else if (s !== 'active') return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  };

  /** One run of a scale job, holding the app's lock. */
  const run = async (data: ScaleJobData, jobId: string): Promise<ScaleJobResult> => {
    const { tenant, app } = data;
    const key = appKey(tenant, app);
    const replicas = await listReplicas(docker, cfg.labelPrefix, tenant, app);
    const current = replicas.length;
    const unchanged: ScaleJobResult = { action: 'none', from: current, to: current, containers: [] };
    if (clampTarget(data.requested, cfg.maxContainersPerNode) === current) {
      log.debug({ tenant, app, job: jobId, replicas: current }, 'scale job: nothing to do');
      return unchanged;
    }
    const lastChange = await state.lastChange(key);
    const planFor = (nodeContainers: number): Plan =>
      planScale({
        current,
        requested: data.requested,
        nodeContainers,
        maxContainersPerNode: cfg.maxContainersPerNode,
        cooldownMs: cfg.cooldownMs,
        lastChange,
        now: clock().getTime(),
        jobId,
      });
    const recordChange = (direction: 'up' | 'down') => state.recordChange(key, { at: clock().getTime(), job: jobId, direction }, keepChangeMs);

    const grow = async (p: Extract<Plan, { kind: 'up' }>, nodeContainers: number): Promise<ScaleJobResult> => {
      // The newest running replica is the template; with none running, the newest in any state.
      const source = replicas[0]?.info ?? (await listReplicas(docker, cfg.labelPrefix, tenant, app, { all: true }))[0]?.info;
      const template = cfg.apps[`${tenant}/${app}`];
      if (!source && !template?.image) return ops.refuse(data, jobId, { kind: 'refused', reason: 'no_template', from: p.from, to: p.target });
      const started: string[] = [];
      for (let n = 1; n <= p.add; n++) {
        const info = await startReplica(docker, replicaSpec({ source, template, tenant, app, labelPrefix: cfg.labelPrefix, name: replicaName(app, tenant) }));
        started.push(info.Id);
        await recordChange('up');
        const facts = factsFromInspect(info);
        await ops.emit('scale_up', data, jobId, facts, p, `scaled up ${app} ${p.from} → ${p.to}: started ${facts.name} (${n} of ${p.add}); ${data.reason}`);
      }
      if (p.cappedAt !== undefined) {
        await ops.refuse(data, jobId, { kind: 'refused', reason: 'cap', from: p.to, to: p.target, nodeContainers: nodeContainers + p.add, cap: cfg.maxContainersPerNode });
      }
      return { action: 'scale_up', from: p.from, to: p.to, containers: started };
    };

    const shrink = async (p: Extract<Plan, { kind: 'down' }>): Promise<ScaleJobResult> => {
      // Newest first: the youngest replicas were added last and hold the least warm state.
      const surplus = replicas.slice(0, p.remove).map((r) => factsFromInspect(r.info));
      for (const facts of surplus) {
        await ops.emit('drain', data, jobId, facts, p, `draining ${facts.name} before stopping it (scale down ${p.from} → ${p.to}); stop in ${cfg.drainMs} ms`);
      }
      // The route table takes the upstreams out on `drain`; requests in flight finish meanwhile.
      if (cfg.drainMs > 0) await new Promise((r) => setTimeout(r, cfg.drainMs));
      const stopped: string[] = [];
      for (const [i, facts] of surplus.entries()) {
        await stopReplica(docker, facts.id, cfg.stopTimeoutSeconds);
        stopped.push(facts.id);
        await recordChange('down');
        await ops.emit('scale_down', data, jobId, facts, p, `scaled down ${app} ${p.from} → ${p.to}: stopped ${facts.name} (${i + 1} of ${surplus.length}); ${data.reason}`);
      }
      return { action: 'scale_down', from: p.from, to: p.to, containers: stopped };
    };

    if (clampTarget(data.requested, cfg.maxContainersPerNode) < current) {
      const p = planFor(0);
      if (p.kind === 'refused') return ops.refuse(data, jobId, p);
      return p.kind === 'down' ? shrink(p) : unchanged;
    }
    // Growing: count and start under the node lock, so two apps cannot both take the last places under the cap.
    const nodeLock = await state.lock('node', LOCK_TTL_MS);
    if (!nodeLock) throw new LogmeterError('scaler_node_busy', 'the node lock stayed held by another scale-up', { retriable: true });
    try {
      const nodeContainers = await countNodeContainers(docker, cfg.labelPrefix);
      metrics.nodeContainers.set(nodeContainers);
      const p = planFor(nodeContainers);
      if (p.kind === 'refused') return await ops.refuse(data, jobId, p);
      return p.kind === 'up' ? await grow(p, nodeContainers) : unchanged;
    } finally {
      await nodeLock.release();
    }
  };

  const worker = new Worker<ScaleJobData, ScaleJobResult>(
    name,
    async (job: Job<ScaleJobData, ScaleJobResult>, token?: string) => {
      const jobId = job.id ?? '';
      const lock = await state.tryLock(`app:${appKey(job.data.tenant, job.data.app)}`);
      if (!lock) {
        // Another run of this app is in progress (here or in another scaler process): wait without using an attempt.
        await job.moveToDelayed(Date.now() + LOCK_RETRY_MS, token);
        throw new DelayedError();
      }
      try {
        return await run(job.data, jobId);
      } catch (err) {
        if (err instanceof LogmeterError && !err.retriable) throw new UnrecoverableError(`${err.code}: ${err.message}`);
        throw err;
      } finally {
        await lock.release();
      }
    },
    { connection: workerClient, ...(prefix ? { prefix } : {}), concurrency: cfg.concurrency },
  );
  worker.on('error', (err) => log.error({ err }, 'scaler worker error'));
  worker.on('failed', (job, err) => {
    if (err instanceof DelayedError) return;
    const attempts = job?.opts.attempts ?? 1;
    const final = !job || job.attemptsMade >= attempts || err instanceof UnrecoverableError;
    metrics.jobFailures.inc({ final: String(final) });
    const fields = { job: job?.id, tenant: job?.data.tenant, app: job?.data.app, attempt: job?.attemptsMade, attempts, err: errorMessage(err) };
    if (final) log.error(fields, 'scale job failed');
    else log.warn(fields, 'scale job failed, will retry');
  });

  let subscription: Subscription;
  try {
    subscription = await bus.subscribe({
      group: 'scaler',
      topics: ['autoscale'],
      handle: async (batch) => {
        // Only each app's last signal in the batch matters: it supersedes the earlier ones.
        const latest = new Map<string, AutoscaleSignal>();
        for (const m of batch) latest.set(appKey(m.event.tenant, m.event.app), m.event);
        for (const signal of latest.values()) await submit(signal);
        const superseded = batch.length - latest.size;
        if (superseded > 0) metrics.signals.inc({ outcome: 'superseded' }, superseded);
      },
    });
  } catch (err) {
    await Promise.allSettled([worker.close(), queue.close()]);
    await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
    throw err;
  }
  log.info({ queue: name, group: subscription.group, maxContainersPerNode: cfg.maxContainersPerNode, cooldownMs: cfg.cooldownMs, drainMs: cfg.drainMs }, 'scaler started');

  return {
    queue,
    state,
    submit,
    async close() {
      await subscription.stop();
      await worker.close();
      await queue.close();
      await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
      log.info('scaler stopped');
    },
  };
}

type Refusal = Extract<Plan, { kind: 'refused' }> | { kind: 'refused'; reason: 'no_template'; from: number; to: number };

/** Publishing and logging of the scaler's actions. */
class Operations {
  constructor(
    private readonly bus: EventBus,
    private readonly state: ScalerState,
    private readonly metrics: ScalerMetrics,
    private readonly log: Logger,
    private readonly cfg: ScalerConfig,
    private readonly clock: () => Date,
  ) {}

  /** Logs the action and publishes it as a lifecycle operation; resolves once Kafka acknowledged it. */
  async emit(action: ScalerAction, data: ScaleJobData, jobId: string, facts: ContainerFacts | undefined, range: { from: number; to: number }, message: string, extra: Record<string, string> = {}): Promise<void> {
    const attributes: Record<string, string> = { from: String(range.from), to: String(range.to), reason: data.reason, signal_version: String(data.signal_version), job: jobId, ...extra };
    const event: LifecycleEvent = {
      event_id: eventId('scaler', jobId, action, facts?.id ?? '', extra.refusal ?? ''),
      tenant: data.tenant,
      app: data.app,
      node: this.bus.config.node,
      container_id: facts?.id ?? '',
      container_name: facts?.name ?? '',
      ts: this.clock().getTime(),
      action,
      actor: 'scaler',
      exit_code: null,
      health: null,
      image: facts?.image ?? '',
      labels: facts?.labels ?? { [`${this.cfg.labelPrefix}tenant`]: data.tenant, [`${this.cfg.labelPrefix}app`]: data.app },
      networks: facts?.networks ?? [],
      ports: facts?.ports ?? [],
      limits: facts?.limits ?? { nano_cpus: 0, memory_bytes: 0, pids: 0 },
      message,
      attributes,
    };
    // Refusals carry no container: keyed by app so one app's stay in order.
    await this.bus.publish('lifecycle', [{ event, ...(facts ? {} : { key: `${data.tenant}/${data.app}` }) }]);
    this.metrics.actions.inc({ action });
    this.log.info({ tenant: data.tenant, app: data.app, action, container: facts?.name, ...attributes }, message);
  }

  /** Reports a refusal (once per minute for the same one; always logged and counted). */
  async refuse(data: ScaleJobData, jobId: string, r: Refusal): Promise<ScaleJobResult> {
    this.metrics.refusals.inc({ reason: r.reason });
    const direction = r.to > r.from ? 'up' : 'down';
    let why: string;
    const extra: Record<string, string> = { refusal: r.reason };
    if (r.reason === 'cooldown') {
      why = `cooldown: last change ${secs(r.sinceMs)} ago, scale-${direction} cooldown ${secs(r.cooldownMs)} (${secs(r.remainingMs)} left)`;
      extra.cooldown_remaining_ms = String(Math.round(r.remainingMs));
    } else if (r.reason === 'cap') {
      why = `node cap of ${r.cap} tenant containers reached (${r.nodeContainers} running)`;
      extra.cap = String(r.cap);
    } else {
      why = 'no replica to copy and no template image declared';
    }
    const message = `scale ${direction} ${data.app} ${r.from} → ${r.to} refused: ${why}`;
    const key = appKey(data.tenant, data.app);
    if (await this.state.isNewRefusal(key, `${r.reason}|${r.from}|${r.to}`, REFUSAL_REPEAT_MS)) {
      await this.emit('scale_refused', data, jobId, undefined, { from: r.from, to: r.to }, message, extra);
    } else {
      this.log.debug({ tenant: data.tenant, app: data.app, job: jobId, refusal: r.reason }, `${message} (reported already)`);
    }
    return { action: 'scale_refused', from: r.from, to: r.to, containers: [] };
  }
}

function secs(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}
