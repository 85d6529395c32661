/**
 * Route table processor: lifecycle and http events → the full route set of every app
 * host whose set changed, on the compacted routes topic (key = host). Runs as 1…N
 * instances of one config; ownership.ts says who publishes what.
 *
 * Keys: the routes topic by host (a host's sets on one partition); lifecycle by container
 * and http by app, read WHOLE by every instance, in groups of its own
 * (`routes.lifecycle.<instance>`, `routes-http.<instance>`; the name is kept in
 * `<stateDir>/instance`). The instances share one group on the routes topic itself
 * (`routes`): the owner of a routes partition is the one publisher of the hosts keyed onto
 * it, so each host has one publisher and its versions go 1, 2, 3 … on the topic.
 *
 * State: the whole table (members with their health) in every instance: `<stateDir>/table.json`,
 * then the routes topic read to its end at start (versions floors, upstreams the snapshot
 * missed), then lifecycle from the instance's committed position. The owners' group is
 * joined only once lifecycle is read to where it ended at start.
 *
 * N buys: a publisher per host spread over instances, and a standby that has the whole
 * table (a failover costs a routes partition's read-back, not a rebuild). It does not split
 * the reading: each instance reads all of lifecycle and http. At most as many publishing
 * instances as routes partitions.
 *
 * Rebalance: when the group starts rebalancing the instance publishes nothing any more;
 * at the join, the partitions it keeps are published again, each new one is read back from
 * its beginning to its end at the assignment and its hosts continue from their last version
 * there (from 0 after a tombstone). A stop publishes nothing from its start on and leaves the group only after the
 * publish in flight was acknowledged. Not covered: a publish already in flight when the
 * group starts rebalancing (kafkajs rejoins without waiting for it) that lands after the
 * new owner's read-back, and a member the group expelled (missed its session) that
 * publishes before it notices: a set of either with a higher version is taken by the new
 * owner (no version reused afterwards), one with a version it published is logged.
 *
 * Delivery: a batch is applied to the table, the changed sets of owned hosts are
 * published and acknowledged, the snapshot written, and only then does the bus commit the
 * batch's offset. A redelivered batch changes nothing that was published.
 *
 * Forgetting: a host idle for `emptyHostGraceSeconds` (no upstream published, none of its
 * containers running) gets a tombstone from its owner (acknowledged) and only then leaves
 * its table; the other instances forget it without one. The applier frees its backend slot.
 */
import { serial } from '../../lib/serial.js';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { AssignedPartition, ConsumedMessage, EventBus, Subscription } from '../../lib/bus/bus.js';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { DeadLetter, HttpRequest, LifecycleEvent, RouteSet, Upstream } from '../../schemas/events.js';
import { eventId } from '../../lib/event-id.js';
import { createBus } from '../../lib/bus/create.js';
import { loadRoutesConfig, type RoutesConfig, type RoutesConfigInput } from './config.js';
import { readRoutes } from './compacted.js';
import { readSnapshot, writeSnapshot } from './snapshot.js';
import { RouteTable, type Notice, type TablePolicy } from './table.js';
import { CatchUp, Ownership, SentSets, instanceName, routeGroups, takeOverPlan, type OwnershipView, type ReadBack, type RouteGroups } from './ownership.js';
import { tableMetrics } from './telemetry.js';

export interface RouteProcessorDeps {
  bus: EventBus;
  logger: Logger;
  registry: Registry;
  /** Node name written into the route sets. */
  node: string;
  /** This instance's own directory: the table snapshot (`table.json`) and its name (`instance`), e.g. `<dataDir>/routes`. */
  stateDir: string;
  /** The `routes` config section (validated here; defaults in config.ts). */
  config?: RoutesConfigInput | RoutesConfig;
  /** Stem of the consumer groups (see ownership.ts `routeGroups`). Default `routes`. */
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
  /** This instance's name (`<stateDir>/instance`) and consumer groups. */
  readonly instance: string;
  readonly groups: RouteGroups;
  /** Which routes partitions' hosts this instance publishes now. */
  ownership(): OwnershipView;
  /**
   * Called with every batch of sets, or of forgotten hosts (their tombstones), once Kafka
   * acknowledged it. Returns the unsubscribe function.
   */
  onPublished(listener: (sets: readonly RouteSet[], forgotten?: readonly string[]) => void): () => void;
  /**
   * What a container's `start` would add to the set of a host this instance owns (see
   * RouteTable.preview), before the event reaches the table through Kafka; undefined when
   * it would add nothing, the host is not this instance's, or the table is not caught up.
   */
  preview(e: LifecycleEvent): RoutePreview | undefined;
  stop(): Promise<void>;
}

export interface RoutePreview {
  host: string;
  tenant: string;
  app: string;
  upstream: Upstream;
  /** The host's last published version: the set that confirms the start has a higher one. */
  version: number;
}

export async function startRouteProcessor(deps: RouteProcessorDeps): Promise<RouteProcessor> {
  const cfg = loadRoutesConfig(deps.config ?? {}, {});
  const clock = deps.clock ?? Date.now;
  const policy: TablePolicy = { labelPrefix: cfg.labelPrefix, wildcardAddress: cfg.wildcardAddress, health: cfg.health, emptyHostGraceMs: cfg.emptyHostGraceSeconds * 1000 };
  const m = tableMetrics(deps.registry);

  mkdirSync(deps.stateDir, { recursive: true });
  const instance = instanceName(deps.stateDir);
  const groups = routeGroups(deps.group ?? 'routes', instance);
  const log = deps.logger.child({ component: 'routes', instance });
  const snapshotFile = path.join(deps.stateDir, 'table.json');
  const snap = readSnapshot(snapshotFile, log);
  const table = snap ? RouteTable.fromSnapshot(policy, deps.node, snap) : new RouteTable(policy, deps.node);

  // Versions continue from the highest one on the topic; a partial read could reuse one.
  const seed = await readRoutes({ bus: deps.bus, logger: log, name: `${groups.owners}-seed`, onSet: (s) => table.seed(s), onForget: (host) => table.forget([host]), catchUpTimeoutMs: cfg.applier.catchUpTimeoutMs, follow: false });
  const complete = await seed.caughtUp;
  await seed.stop();
  if (!complete) throw new LogmeterError('routes_seed_incomplete', `the routes topic could not be read to its end within ${cfg.applier.catchUpTimeoutMs} ms; not starting (versions must keep growing)`, { retriable: true });
  const routesPartitions = (await deps.bus.endOffsets(deps.bus.topic('routes'))).length;
  if (routesPartitions === 0) throw new LogmeterError('routes_topic_missing', `topic ${deps.bus.topic('routes')} has no partitions (not created?)`, { retriable: true });
  const partitionOf = (host: string) => deps.bus.partitionForKey(host, routesPartitions);
  const own = new Ownership(partitionOf);
  const sent = new SentSets();
  const out = deps.publishBus ?? createBus(deps.bus.config, deps.bus.codec, log);
  const closeOut = () => (deps.publishBus === undefined ? out.close() : Promise.resolve());

  const listeners = new Set<(sets: readonly RouteSet[], forgotten?: readonly string[]) => void>();
  let savedRevision = -1;
  const turns = serial();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  /** Idle hosts left for later (no owner known): the timer does not spin on their past deadline. */
  let waiting = false;

  /** Runs table work one piece at a time (the batch handlers and the probation timer share the table). */
  function exclusive<R>(fn: () => Promise<R>): Promise<R> {
    return turns.run(fn);
  }

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
      consumer_group: `${deps.bus.config.topicPrefix}${groups.lifecycle}`,
      key: msg.key,
      payload: deps.bus.codec.encode('lifecycle', e),
      error_code: 'lb_host_claimed',
      reason: `container ${e.container_name || n.containerId.slice(0, 12)} of tenant "${e.tenant}" (app "${e.app}") claims lb-host ${n.host ?? ''}: ${n.problem} (a host belongs to the first tenant that routed it)`,
    };
  }

  /** Publishes the changed sets of the hosts this instance owns; forgets idle hosts (a tombstone first for its own). */
  async function publishChanges(): Promise<void> {
    report(table.drainNotices());
    const sets = table.flush(clock(), (host) => own.owns(host));
    if (sets.length > 0) {
      sent.add(sets);
      await out.publish('routes', sets.map((event) => ({ event })));
      table.published(sets);
      m.published.inc(sets.length);
      for (const s of sets) log.info({ host: s.host, version: s.version, upstreams: s.upstreams.length, reason: s.reason }, 'route set published');
      for (const l of listeners) l(sets);
    }
    const idle = table.expired(clock());
    // Another instance's hosts leave this table without a tombstone (their owner writes it);
    // one whose owner is not known (a rebalance, a read-back) waits.
    const mine = idle.filter((h) => own.owns(h));
    const theirs = idle.filter((h) => own.othersOwn(h));
    waiting = idle.length > mine.length + theirs.length;
    if (theirs.length > 0) table.forget(theirs);
    if (mine.length > 0) {
      // Tombstones first: a host forgotten here but still on the topic would come back at the next start.
      await out.publishTombstones('routes', mine);
      table.forget(mine);
      m.forgotten.inc(mine.length);
      log.info({ hosts: mine.length, first: mine.slice(0, 5), graceSeconds: cfg.emptyHostGraceSeconds }, 'idle hosts forgotten (tombstones on the routes topic)');
      for (const l of listeners) l([], mine);
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
    }, Math.max(waiting ? 1000 : 0, next - clock()));
  }

  /** A routes partition read back (ownership.ts rule 2): its hosts continue from the topic, then are this instance's. */
  async function takeOver(r: ReadBack): Promise<void> {
    if (!own.current(r)) return;
    const steps = takeOverPlan(r, table.current().map((h) => h.host), partitionOf);
    for (const step of steps) table.adopt(step.host, step.adopt);
    if (!own.complete(r)) return;
    m.owned.set(own.view().owned.length);
    log.info({ partition: r.partition, end: r.end.toString(), hosts: steps.length }, 'routes partition read back: its hosts are published here');
    await publishChanges();
  }

  function assigned(partitions: readonly AssignedPartition<'routes'>[]): void {
    if (partitions.length > 0) log.info({ partitions: partitions.map((p) => p.partition) }, 'routes partitions assigned: reading them back');
    for (const r of own.assigned(partitions)) void exclusive(() => takeOver(r)).catch(retryTakeOver(r));
  }

  /** The read-back was taken but its publish failed: tried again (meanwhile any batch publishes the partition's hosts too). */
  const retryTakeOver = (r: ReadBack) => (err: unknown) => {
    log.warn({ err: errorMessage(err), partition: r.partition }, 'publishing after a routes partition read back failed; retrying in 1 s');
    setTimeout(() => {
      if (!stopped) void exclusive(publishChanges).catch((e: unknown) => log.warn({ err: errorMessage(e) }, 'publishing failed'));
    }, 1000).unref();
  };

  /** Batches of the routes topic in the owners' group: read-backs, and rule 4 on owned partitions. */
  const handleRoutes = (batch: ConsumedMessage<'routes'>[]) =>
    exclusive(async () => {
      for (const msg of batch) {
        const set = msg.event;
        if (own.read(msg.partition, set.host, set) !== 'owned' || sent.ours(set)) continue;
        m.foreign.inc();
        const ours = table.version(set.host) ?? 0;
        const where = { host: set.host, version: set.version, ours, by: set.node, partition: msg.partition, offset: msg.offset };
        if (set.version > ours) {
          log.warn(where, 'a route set from another instance on a partition this one owns: its version is taken');
          table.adopt(set.host, set);
        } else log.error(where, 'a route set from another instance with a version this one published: two sets of one version');
      }
      await publishChanges();
    });

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
  let ownersSub: Subscription | undefined;
  try {
    const lifecycleTopic = deps.bus.topic('lifecycle');
    const [ends, committed] = await Promise.all([deps.bus.endOffsets(lifecycleTopic), deps.bus.committedOffsets(`${deps.bus.config.topicPrefix}${groups.lifecycle}`, lifecycleTopic)]);
    const lifecycleRead = new CatchUp(ends, committed);
    let caughtUp!: () => void;
    const lifecycleDone = new Promise<void>((r) => (caughtUp = r));
    if (lifecycleRead.done()) caughtUp();
    sub = await deps.bus.subscribe({
      group: groups.lifecycle,
      topics: ['lifecycle'],
      handle,
      onCommitted: (_t, partition, next) => {
        lifecycleRead.committed(partition, next);
        if (lifecycleRead.done()) caughtUp();
      },
    });
    httpSub = await deps.bus.subscribe({ group: groups.http, topics: ['http'], fromTime: clock() - cfg.health.windowMs, handle });
    if (!lifecycleRead.done()) log.info({ left: lifecycleRead.left() }, 'reading lifecycle to where it ended at start before publishing');
    await lifecycleDone;
    // Rule 5 done: now this instance may own hosts.
    ownersSub = await deps.bus.subscribe({
      group: groups.owners,
      topics: ['routes'],
      // Every partition gained is read from its beginning (the read-back), whatever was committed.
      replayFrom: () => 0,
      handle: handleRoutes,
      onTombstone: (key) => {
        if (key !== null) {
          const host = key.toString('utf8');
          own.read(partitionOf(host), host, null);
        }
        return Promise.resolve();
      },
      onRebalancing: () => {
        own.rebalance();
        log.info('owners group rebalancing: publishing nothing until the join');
      },
      onRevoked: (ps) => {
        own.revoked(ps.map((p) => p.partition));
        m.owned.set(own.view().owned.length);
        if (ps.length > 0) log.info({ partitions: ps.map((p) => p.partition) }, 'routes partitions revoked: their hosts are not published here any more');
        // The partitions kept are published again: whatever changed meanwhile goes out.
        if (!stopped) void exclusive(publishChanges).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'publishing after a rebalance failed; the next batch tries again'));
      },
      onAssigned: assigned,
      onCommitted: (_t, partition, next) => {
        const r = own.committed(partition, next);
        if (r) void exclusive(() => takeOver(r)).catch(retryTakeOver(r));
      },
    });
  } catch (err) {
    await Promise.all([sub?.stop(), httpSub?.stop(), ownersSub?.stop()]);
    await closeOut();
    throw err;
  }
  log.info({ hosts: table.current().length, snapshot: Boolean(snap), groups }, 'route table processor started');

  return {
    table,
    instance,
    groups,
    ownership: () => own.view(),
    onPublished(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    // Lifecycle was read to where it ended at start before this returned (rule 5), so the table is current.
    preview(e) {
      if (stopped) return undefined;
      const p = table.preview(e);
      return p && own.owns(p.host) ? p : undefined;
    },
    async stop() {
      stopped = true;
      // Publish nothing from here on, and hand the partitions over only once a publish in flight was acknowledged.
      own.close();
      if (timer) clearTimeout(timer);
      await turns.idle();
      await ownersSub?.stop();
      await Promise.all([sub?.stop(), httpSub?.stop()]);
      await turns.idle();
      await closeOut();
      log.info('route table processor stopped');
    },
  };
}
