/**
 * Route table processor: lifecycle and http events (group `routes`) → the full route
 * set of every app host whose set changed, on the compacted routes topic (key = host).
 *
 * Delivery: a batch is applied to the table, the changed sets are published and
 * acknowledged, the table snapshot is written, and only then does the bus commit the
 * batch's offset. A batch redelivered after a crash is applied again; sets are compared
 * with the last published ones, so a replay publishes nothing twice.
 *
 * State across restarts: `<stateDir>/table.json` (members with their health, so an
 * upstream taken out still comes back after a restart), then the routes topic read to
 * its end: versions continue from the highest published one even without a snapshot.
 *
 * Forgetting: a host idle for `emptyHostGraceSeconds` (no upstream published, none of its
 * containers running) gets a tombstone on the routes topic (acknowledged), and only then
 * leaves the table (see table.ts); the applier frees its backend slot and map entry.
 *
 * Scale-out (not yet: one active instance). Keys: lifecycle is keyed by container and
 * http by app (tenant/app), not by host, so two members of group `routes` would each
 * see part of a host and publish two versions of its set. Splitting by host needs
 * lifecycle (and the health-bearing http) keyed or repartitioned by lb-host. State: the
 * table (snapshot + the routes topic). Today a second instance in the group is a
 * failover: on a rebalance it takes every partition and starts from the topic and its
 * own snapshot.
 */
import { serial } from '../../lib/serial.js';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { ConsumedMessage, EventBus, Subscription } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { DeadLetter, HttpRequest, LifecycleEvent, RouteSet } from '../../schemas/events.js';
import { eventId } from '../../lib/event-id.js';
import { createBus } from '../../lib/bus/create.js';
import { loadRoutesConfig, type RoutesConfig, type RoutesConfigInput } from './config.js';
import { readRoutes } from './compacted.js';
import { readSnapshot, writeSnapshot } from './snapshot.js';
import { RouteTable, type Notice, type TablePolicy } from './table.js';
import { tableMetrics } from './telemetry.js';

export interface RouteProcessorDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  /** Node name written into the route sets. */
  node: string;
  /** Where the table snapshot (`table.json`) lives, e.g. `<dataDir>/routes`. */
  stateDir: string;
  /** The `routes` config section (validated here; defaults in config.ts). */
  config?: RoutesConfigInput | RoutesConfig;
  /** Consumer group of lifecycle. Default `routes`; http is read by `<group>-http`. */
  group?: string;
  /**
   * The bus route sets (and dead letters, tombstones) are published on: a producer of
   * their own, so a new route never waits behind another component's batch on a shared
   * producer (issue 15: in `logmeter up` the collector's log batches). Default: a second
   * bus with `bus`'s settings, made and closed here. Pass `bus` for one producer.
   */
  publishBus?: EventBus;
  clock?: () => number;
}

export interface RouteProcessor {
  readonly table: RouteTable;
  /**
   * Called with every batch of sets, or of forgotten hosts (their tombstones), once Kafka
   * acknowledged it. Returns the unsubscribe function.
   */
  onPublished(listener: (sets: readonly RouteSet[], forgotten?: readonly string[]) => void): () => void;
  stop(): Promise<void>;
}

export async function startRouteProcessor(deps: RouteProcessorDeps): Promise<RouteProcessor> {
  const cfg = loadRoutesConfig(deps.config ?? {}, {});
  const log = deps.logger.child({ component: 'routes' });
  const clock = deps.clock ?? Date.now;
  const policy: TablePolicy = { labelPrefix: cfg.labelPrefix, wildcardAddress: cfg.wildcardAddress, health: cfg.health, emptyHostGraceMs: cfg.emptyHostGraceSeconds * 1000 };
  const m = tableMetrics(deps.registry);

  mkdirSync(deps.stateDir, { recursive: true });
  const snapshotFile = path.join(deps.stateDir, 'table.json');
  const snap = readSnapshot(snapshotFile, log);
  const table = snap ? RouteTable.fromSnapshot(policy, deps.node, snap) : new RouteTable(policy, deps.node);

  // Versions continue from the highest one on the topic; a partial read could reuse one.
  const seed = await readRoutes({ bus: deps.bus, logger: log, name: `${deps.group ?? 'routes'}-seed`, onSet: (s) => table.seed(s), onForget: (host) => table.forget([host]), catchUpTimeoutMs: cfg.applier.catchUpTimeoutMs, follow: false });
  const complete = await seed.caughtUp;
  await seed.stop();
  if (!complete) throw new LogmeterError('routes_seed_incomplete', `the routes topic could not be read to its end within ${cfg.applier.catchUpTimeoutMs} ms; not starting (versions must keep growing)`, { retriable: true });
  const out = deps.publishBus ?? createBus(deps.bus.config, deps.bus.codec, log);
  const closeOut = () => (deps.publishBus === undefined ? out.close() : Promise.resolve());

  const listeners = new Set<(sets: readonly RouteSet[], forgotten?: readonly string[]) => void>();
  let savedRevision = -1;
  const turns = serial();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  /** Runs table work one piece at a time (the batch handler and the probation timer share the table). */
  function exclusive<R>(fn: () => Promise<R>): Promise<R> {
    return turns.run(fn);
  }

  const group = deps.group ?? 'routes';

  /** Logs and counts what the table refused; a claim on another tenant's host is also dead-lettered (returned). */
  function report(notices: readonly Notice[], source?: ConsumedMessage<'lifecycle' | 'http'>): DeadLetter[] {
    const letters: DeadLetter[] = [];
    for (const n of notices) {
      m.notices.inc({ reason: n.kind });
      log.warn({ containerId: n.containerId.slice(0, 12), host: n.host, reason: n.kind }, n.problem);
      if (n.kind === 'foreign_tenant' && source?.topic === 'lifecycle') letters.push(claimLetter(n, source as ConsumedMessage<'lifecycle'>));
    }
    return letters;
  }

  /** A refused host claim, where the lifecycle event that made it sits, and why. */
  function claimLetter(n: Notice, msg: ConsumedMessage<'lifecycle'>): DeadLetter {
    const e = msg.event;
    const topic = deps.bus.topic('lifecycle');
    return {
      event_id: eventId('dlq', topic, msg.partition, msg.offset, 'lb_host_claimed'),
      tenant: e.tenant,
      app: e.app,
      node: deps.node,
      container_id: e.container_id,
      ts: clock(),
      source_topic: topic,
      source_partition: msg.partition,
      source_offset: Number(msg.offset),
      source_timestamp: msg.timestamp,
      consumer_group: `${deps.bus.config.topicPrefix}${group}`,
      key: msg.key,
      payload: deps.bus.codec.encode('lifecycle', e),
      error_code: 'lb_host_claimed',
      reason: `container ${e.container_name || n.containerId.slice(0, 12)} of tenant "${e.tenant}" (app "${e.app}") claims lb-host ${n.host ?? ''}: ${n.problem} (a host belongs to the first tenant that routed it)`,
    };
  }

  async function publishChanges(): Promise<void> {
    report(table.drainNotices());
    const sets = table.flush(clock());
    if (sets.length > 0) {
      await out.publish('routes', sets.map((event) => ({ event })));
      table.published(sets);
      m.published.inc(sets.length);
      for (const s of sets) log.info({ host: s.host, version: s.version, upstreams: s.upstreams.length, reason: s.reason }, 'route set published');
      for (const l of listeners) l(sets);
    }
    const idle = table.expired(clock());
    if (idle.length > 0) {
      // Tombstones first: a host forgotten here but still on the topic would come back at the next start.
      await out.publishTombstones('routes', idle);
      table.forget(idle);
      m.forgotten.inc(idle.length);
      log.info({ hosts: idle.length, first: idle.slice(0, 5), graceSeconds: cfg.emptyHostGraceSeconds }, 'idle hosts forgotten (tombstones on the routes topic)');
      for (const l of listeners) l([], idle);
    }
    if (table.revision !== savedRevision) {
      writeSnapshot(snapshotFile, table.snapshot());
      savedRevision = table.revision;
      const current = table.current();
      m.hosts.set(current.length);
      m.upstreams.set(current.reduce((n, h) => n + h.upstreams.length, 0));
    }
    schedule();
  }

  /** Wakes up when the next ejected upstream's time out, or the next idle host's grace, is over. */
  function schedule(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const next = table.nextDeadline();
    if (next === undefined || stopped) return;
    timer = setTimeout(() => {
      timer = undefined;
      exclusive(async () => {
        table.tick(clock());
        await publishChanges();
      }).catch((err: unknown) => {
        log.warn({ err: errorMessage(err) }, 'publishing probation or forgotten hosts failed; retrying in 1 s');
        if (!stopped) timer = setTimeout(schedule, 1000);
      });
    }, Math.max(0, next - clock()));
  }

  // Whatever the seed changed (e.g. the snapshot knew an upstream as ejected) goes out first.
  await exclusive(publishChanges);

  const handle = (batch: ConsumedMessage<'lifecycle' | 'http'>[]) =>
    exclusive(async () => {
      const now = clock();
      const letters: DeadLetter[] = [];
      for (const msg of batch) {
        // The bus types a message's event by the union of the topics, not by its own.
        if (msg.topic === 'lifecycle') {
          table.applyLifecycle(msg.event as LifecycleEvent);
          letters.push(...report(table.drainNotices(), msg));
        } else table.applyHttp(msg.event as HttpRequest, now);
      }
      m.events.inc({ topic: batch[0]?.topic ?? 'unknown' }, batch.length);
      // Before the offsets move: a refusal is never only in a log line.
      if (letters.length > 0) await out.publish('dlq', letters.map((event) => ({ event })));
      await publishChanges();
    });
  // Lifecycle (a start is a new upstream) in a consumer of its own: a fetch and commit of
  // thousands of http events (the access logs of every app) never stand before it (issue 15).
  // Http only feeds the health windows (event time, in memory): read from one window back.
  let sub: Subscription | undefined;
  let httpSub: Subscription | undefined;
  try {
    sub = await deps.bus.subscribe({ group, topics: ['lifecycle'], handle });
    httpSub = await deps.bus.subscribe({ group: `${group}-http`, topics: ['http'], fromTime: clock() - cfg.health.windowMs, handle });
  } catch (err) {
    await sub?.stop();
    await closeOut();
    throw err;
  }
  log.info({ hosts: table.current().length, snapshot: Boolean(snap) }, 'route table processor started');

  return {
    table,
    onPublished(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await Promise.all([sub.stop(), httpSub.stop()]);
      await turns.idle();
      await closeOut();
      log.info('route table processor stopped');
    },
  };
}
