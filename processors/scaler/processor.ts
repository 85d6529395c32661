/**
 * The scaler: the reference consumer of the autoscale topic. It turns signals into
 * bullmq scale jobs and scale jobs into Docker replicas started or stopped.
 *
 * Opt-in and the tenant's removal (plan.ts' opening comment has the states): only apps
 * that asked (label `<prefix>autoscale.max` or `<prefix>autoscale=on` on a running
 * container, or an `autoscale.apps` entry, handed in as `optedInApps`) are scaled; the
 * others' signals are a recommendation, reported once as such. The scaler never starts a
 * replica for an app with no own container running, and every `sweepMs` it drains and
 * removes the replicas of apps whose tenant removed their own containers.
 *
 * Signals (consumer group `scaler`). Per batch, only each app's last signal counts. A
 * signal older than `maxSignalAgeMs` is skipped (a newer one supersedes it). The
 * target is the recommendation clamped to [1, maxContainersPerNode] (on several nodes,
 * the cap times the nodes); "current" is the app's running replicas as Docker lists them
 * now (on several nodes, this engine's live and the others' as reported), not the
 * signal's view. When they differ, a job `<tenant>|<app>|<target>|<signal version>` is
 * enqueued on queue `<topicPrefix>scaler` (on several nodes, the placed node's queue):
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
 *
 * Where it is: signal rules in signal.ts, job rules in plan.ts, placement over nodes in
 * nodes.ts (all pure), the intake (signals → queue) in intake.ts, a job's run in job.ts,
 * Docker in docker.ts, Redis state in state.ts, the nodes' queues and reports in
 * cluster.ts, events in report.ts/reporter.ts. This file wires them and starts/stops.
 *
 * Scale-out. Keys: the autoscale topic is keyed by tenant/app (group `scaler`), so each
 * app's signals reach one instance in order. State: none of its own beyond Redis (the
 * queues, cooldowns, pending job ids, refusals reported, the per-app and per-node locks
 * and, on several nodes, the node reports) and Docker itself (each job re-reads the
 * replicas). A rebalance moves apps' partitions between instances: a signal redelivered
 * to the new owner makes a job id bullmq already holds, so nothing is added, and the
 * per-app lock keeps one job of an app running whichever instance took it.
 * - One node (`severalNodes: false`, the default): one queue `<topicPrefix>scaler`, jobs run
 *   against the engine of the worker that takes them (`docker.host`). N instances on that
 *   engine buy more signal intake and jobs of different apps at once; the per-node lock keeps
 *   the cap.
 * - Several nodes (`severalNodes: true`): a scaler per node (`LOGMETER_NODE`, its own
 *   `DOCKER_HOST`), a queue per node `<topicPrefix>scaler.<node>` that only that node's
 *   worker consumes. Each reports its room (running tenant containers, cap, free places) and
 *   its apps' templates into Redis (cluster.ts). Any instance's intake counts the app over
 *   all nodes and places the job (nodes.ts): growth on the node with the most room, shrinking
 *   on the node of the newest replica; a node does the part it can and hands the rest on.
 *   N instances are N nodes: each adds its engine's cap. A node whose scaler stops withdraws
 *   its report (or its report expires) and gets no new job; jobs already in its queue wait
 *   for it. While it is silent no app counts as removed by its tenant (cluster.ts).
 */
import { DelayedError, Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type Docker from 'dockerode';
import { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import type { EventBus, Subscription } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { Logger } from '../../lib/logger.js';
import type { AutoscaleSignal } from '../../schemas/events.js';
import type { ScalerConfig } from './config.js';
import { SignalIntake, singleNode } from './intake.js';
import { NodeCluster } from './cluster.js';
import { ScaleJobRunner } from './job.js';
import { Reporter } from './reporter.js';
import { latestPerApp, type ScaleJobData, type ScaleJobResult, type SubmitOutcome } from './signal.js';
import { ScalerState, appKey } from './state.js';
import { appsWithReplicas } from './docker.js';
import { serial } from '../../lib/serial.js';
import { scalerMetrics } from './telemetry.js';

/** A job that finds its app's lock held tries again after this. */
export const LOCK_RETRY_MS = 250;

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
  /** `<tenant>/<app>` of the apps the config file opts in (the keys of `autoscale.apps`). Default none. */
  optedInApps?: readonly string[];
  /** bullmq key prefix. Default bullmq's `bull`; tests use their namespace. */
  prefix?: string;
}

export interface Scaler {
  /** The queue this scaler's worker consumes (`<topicPrefix>scaler`, on several nodes `<topicPrefix>scaler.<node>`), for inspection and tests. */
  readonly queue: Queue<ScaleJobData, ScaleJobResult>;
  /** On several nodes, the nodes' queues and reports; undefined on one. */
  readonly cluster: NodeCluster | undefined;
  /** The Redis state (cooldowns, pending jobs, locks). */
  readonly state: ScalerState;
  /** What the consumer does with one signal; exposed for other producers of signals and tests. */
  submit(signal: AutoscaleSignal): Promise<{ outcome: SubmitOutcome; jobId?: string }>;
  /** One sweep now (what the `sweepMs` timer runs): replicas of apps whose tenant removed them are drained and removed. */
  sweep(): Promise<void>;
  /** Stops consuming, lets running jobs finish, closes the queue. */
  close(): Promise<void>;
}

export async function startScaler(opts: ScalerOptions): Promise<Scaler> {
  const { bus, docker, config: cfg } = opts;
  const log = opts.logger.child({ component: 'scaler' });
  const clock = opts.clock ?? (() => new Date());
  const metrics = scalerMetrics(opts.registry);
  const name = `${bus.config.topicPrefix}scaler`;
  const prefix = opts.prefix;
  const queueClient = new Redis(opts.redisUrl, { maxRetriesPerRequest: 3 });
  const workerClient = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  // The state is the cluster's (one prefix for every node): app locks, cooldowns and refusals are shared.
  const state = new ScalerState(queueClient, `${prefix ?? 'bull'}:${name}:scaler`);
  const cluster = cfg.severalNodes ? new NodeCluster({ redis: queueClient, bullPrefix: prefix, clusterQueue: name, state, node: bus.config.node, docker, cfg, log, clock }) : undefined;
  const queue = cluster ? cluster.queue(cluster.node) : new Queue<ScaleJobData, ScaleJobResult>(name, { connection: queueClient, ...(prefix ? { prefix } : {}) });
  if (!cluster) queue.on('error', (err) => log.error({ err }, 'scaler queue error'));
  const reporter = new Reporter(bus, state, metrics, log, cfg.labelPrefix, clock);
  const optedIn = new Set(opts.optedInApps ?? []);
  const runner = new ScaleJobRunner(docker, state, reporter, metrics, log, cfg, clock, optedIn, cluster);
  const intake = new SignalIntake(cluster ?? singleNode(queue, docker, cfg), state, metrics, log, cfg, clock, reporter, optedIn);
  // The node reports before it consumes anything: the other nodes place on it from then on.
  try {
    await cluster?.start();
  } catch (err) {
    await cluster?.close();
    await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
    throw err;
  }

  const worker = new Worker<ScaleJobData, ScaleJobResult>(
    queue.name,
    async (job: Job<ScaleJobData, ScaleJobResult>, token?: string) => {
      const lock = await state.tryLock(`app:${appKey(job.data.tenant, job.data.app)}`);
      if (!lock) {
        // Another run of this app is in progress (here or in another scaler process): wait without using an attempt.
        await job.moveToDelayed(Date.now() + LOCK_RETRY_MS, token);
        throw new DelayedError();
      }
      try {
        return await runner.run(job.data, job.id ?? '');
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
        const latest = latestPerApp(batch.map((m) => m.event));
        for (const signal of latest) await intake.submit(signal);
        const superseded = batch.length - latest.length;
        if (superseded > 0) metrics.signals.inc({ outcome: 'superseded' }, superseded);
      },
    });
  } catch (err) {
    await Promise.allSettled([worker.close(), cluster ? cluster.close() : queue.close()]);
    await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
    throw err;
  }
  // The sweep: replicas of apps the tenant removed, found without waiting for a signal (none may come).
  const sweeps = serial();
  const sweepOnce = () =>
    sweeps.run(async () => {
      for (const { tenant, app } of await appsWithReplicas(docker, cfg.labelPrefix)) {
        const lock = await state.tryLock(`app:${appKey(tenant, app)}`);
        if (!lock) continue; // a job of the app runs; the next sweep looks again
        try {
          await runner.sweep(tenant, app);
        } finally {
          await lock.release();
        }
      }
    });
  const sweepTimer =
    cfg.sweepMs > 0
      ? setInterval(() => {
          if (sweeps.size === 0) sweepOnce().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'scaler sweep failed; the next one tries again'));
        }, cfg.sweepMs)
      : undefined;
  log.info({ queue: queue.name, node: cluster?.node, group: subscription.group, maxContainersPerNode: cfg.maxContainersPerNode, cooldownMs: cfg.cooldownMs, drainMs: cfg.drainMs }, 'scaler started');

  return {
    queue,
    cluster,
    state,
    submit: (signal) => intake.submit(signal),
    sweep: () => sweepOnce(),
    async close() {
      if (sweepTimer) clearInterval(sweepTimer);
      await sweeps.idle();
      await subscription.stop();
      await worker.close();
      if (cluster) await cluster.close();
      else await queue.close();
      await Promise.allSettled([queueClient.quit(), workerClient.quit()]);
      log.info('scaler stopped');
    },
  };
}
