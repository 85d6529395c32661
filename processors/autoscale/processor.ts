/**
 * The autoscale processor: start/stop and wiring (the logic is in apps.ts, window.ts,
 * policy.ts and fleet.ts). HTTP requests → per-app stable and panic windows → every
 * `intervalMs` (1 s), for every app with requests in its stable window, an
 * AutoscaleSignal on the autoscale topic (key tenant/app) and a row in ClickHouse
 * `autoscale_signals` (when given a ClickHouse). In between, every `panicCheckMs`, an app
 * that enters panic gets its signal at once (a latency step is not left waiting for the
 * next interval).
 *
 * Inputs:
 * - lifecycle: running replicas per app (the load balancer's own app `lbApp` is not a
 *   replica), lb-host → app, and the labels that override an app's policy.
 * - http: requests, attributed to apps and windows as apps.ts says (the load
 *   balancer's requests by lb-host, one window per source).
 *
 * Scale-out: run 1…N instances with one config; they form group `autoscale.http` and
 * split the apps by http partition. Nothing here needs to run alone.
 * - Keys: http is keyed by the app a request counts for (`tenant/app`; the access-log
 *   parser gives the load balancer's requests the key of the app claiming their host),
 *   so all of an app's requests are on one partition and its owner is the instance
 *   that owns that partition. lifecycle stays keyed by container: every instance reads
 *   it whole as a table (a few events per container), so replica counts, lb hosts and
 *   labels are known everywhere. Signals are keyed `tenant/app`.
 * - State: the windows of the owned apps, in memory, derived from the stream; the
 *   lifecycle table; per owned partition, when it was taken (`owner_since`).
 * - What N buys: the windows' CPU and memory split by app (each instance holds and
 *   evaluates only its apps); every instance still reads the whole lifecycle topic. An
 *   instance that dies (even SIGKILLed) costs its apps' signals until the group expels
 *   it (`kafka.sessionTimeoutSeconds`) and a survivor has replayed their windows.
 * - Rebalance: when the group starts rebalancing, the instance stops signalling at
 *   once; at the join, the apps of revoked partitions are dropped. Each partition it
 *   gains (at start too) is re-read from (now − stable window − replaySlackMs) by Kafka
 *   timestamp (the bus's `replayFrom`, whatever the group committed) and its apps are
 *   signalled only once the replay reached where the partition ended at assignment and
 *   the clock has moved past the assignment: a new owner has full windows before its
 *   first signal, and no app has two signalling instances (short of a member the group
 *   expelled that has not noticed yet). Every signal carries `owner_since` (the
 *   assignment's time), so a consumer can check that owners' periods never overlap.
 *   Kafka timestamps are taken when a request was published, after it happened, so the
 *   replay includes every request of the window.
 * - A load-balancer request the parser could not attribute (keyed by `lbApp`) is
 *   attributed here by the lb-host labels only while this instance owns every
 *   partition (one instance); with more, it is counted as `not_routed`.
 * - With ClickHouse (`ch`), each instance inserts its own apps' signal rows: N processes
 *   with a ClickHouse server (`CLICKHOUSE_URL`); the embedded store admits one process,
 *   so there the instances given `ch` share that process (others run without `ch`).
 *
 * Lifecycle at start: read from the beginning with a group of this run (the bus's
 * readToEnd, deleted on a clean stop), and signalling starts only once it is read up
 * to where the topic ended at start. Containers older than the topic's retention come
 * first from ClickHouse `lifecycle` (when given), the topic is applied on top (an older
 * event never overrides a newer one).
 * Offsets of http are committed after each batch; they only show the lag.
 */
import { serial } from '../../lib/serial.js';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { AssignedPartition, ConsumedMessage, EventBus, Subscription, TopicPartition, TopicReader } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import type { AutoscaleSignal } from '../../schemas/events.js';
import type { AutoscaleConfig } from './config.js';
import { Apps } from './apps.js';
import { Fleet, type FleetEvent } from './fleet.js';
import { resolvePolicy } from './policy.js';
import { SignalStore, seedContainers } from './store.js';
import { AppGauges, autoscaleMetrics, type AutoscaleMetrics } from './telemetry.js';

/** The consumer group of the http topic, shared by every instance (they split its partitions). */
export const AUTOSCALE_HTTP_GROUP = 'autoscale.http';

export interface AutoscaleDeps {
  bus: EventBus;
  /** When given, signals are also written to `autoscale_signals`, and containers are seeded from `lifecycle`. */
  ch?: ClickHouse | undefined;
  logger: Logger;
  registry: Registry;
  config: AutoscaleConfig;
  /** Event-time clock in ms (default Date.now): windows end at clock(), signals carry it as `ts`. */
  clock?: () => number;
  /** Node name in signals. Default the hostname. */
  node?: string;
  /** The collector's label prefix (`collector.labelPrefix`). Default `logmeter.`. */
  labelPrefix?: string;
  /** Run tick() every `config.intervalMs`. Default true; tests drive tick() themselves. */
  autoTick?: boolean;
}

export interface AutoscaleProcessor {
  /** Evaluates every active app at clock(), publishes its signal and stores it; what the timer runs. */
  tick(): Promise<AutoscaleSignal[]>;
  /** Publishes signals only for apps entering panic now (what the panic-check timer runs). */
  panicCheck(): Promise<AutoscaleSignal[]>;
  /** Events taken in so far. */
  seen(): { http: number; lifecycle: number };
  /** Running replicas of `tenant/app`, as known. */
  replicas(app: string): number;
  /** The http partitions this instance owns, and which of them have their windows rebuilt (it signals only for apps of those). */
  ownership(): { owned: number[]; ready: number[]; rebalancing: boolean };
  /** Resolves once every partition owned now has its windows rebuilt. */
  ready(): Promise<void>;
  stop(): Promise<void>;
}

export async function startAutoscale(deps: AutoscaleDeps): Promise<AutoscaleProcessor> {
  const processor = new Autoscale(deps);
  await processor.start();
  return processor;
}

class Autoscale implements AutoscaleProcessor {
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly metrics: AutoscaleMetrics;
  private readonly gauges: AppGauges;
  private readonly fleet: Fleet;
  private readonly apps: Apps;
  private readonly store: SignalStore | undefined;
  private readonly labelPrefix: string;
  private readonly counts = { http: 0, lifecycle: 0 };
  private readonly warned = new Set<string>();
  private lifecycle: TopicReader | undefined;
  private http: Subscription | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** Owned http partitions → the offset up to which the windows are being rebuilt (deleted once they are). */
  private readonly owned = new Map<number, bigint>();
  /** The http partition each app's requests come from. */
  private readonly appPartition = new Map<string, number>();
  /** Between a rebalance's start and this member's next join: nothing is signalled. */
  private rebalancing = false;
  /** Partitions of the http topic. */
  private httpPartitions = 0;
  private readonly readyWaiters: (() => void)[] = [];
  /** Ticks and panic checks run one at a time, in turn. */
  private readonly turns = serial();
  private busy = false;

  constructor(private readonly deps: AutoscaleDeps) {
    const { config } = deps;
    const labelPrefix = deps.labelPrefix ?? 'logmeter.';
    this.labelPrefix = labelPrefix;
    this.log = deps.logger.child({ component: 'autoscale' });
    this.clock = deps.clock ?? Date.now;
    this.metrics = autoscaleMetrics(deps.registry);
    this.gauges = new AppGauges(deps.registry, config.stableWindowMs);
    this.fleet = new Fleet(labelPrefix, config.lbApp);
    this.apps = new Apps({
      config,
      fleet: this.fleet,
      labelPrefix,
      node: deps.node ?? hostname(),
      onPolicyProblem: (app, problem) => this.warnOnce(`policy:${app}:${problem}`, { app, problem }, 'autoscale policy label ignored'),
    });
    this.store = deps.ch ? new SignalStore(deps.ch, config.maxPendingRows, this.metrics, this.log) : undefined;
  }

  async start(): Promise<void> {
    const { bus, ch, config } = this.deps;
    if (ch) await seedContainers(ch, (e) => this.takeLifecycle(e), this.log);
    const run = `${this.clock().toString(36)}-${randomBytes(3).toString('hex')}`;
    try {
      this.lifecycle = await bus.readToEnd({
        topic: 'lifecycle',
        group: `autoscale-${run}-lifecycle`,
        handle: (batch) => {
          for (const msg of batch) this.takeLifecycle(msg.event);
          return Promise.resolve();
        },
      });
      await this.lifecycle.caughtUp;
      this.log.info({ containers: this.fleet.size, events: this.counts.lifecycle }, 'lifecycle read up to its end at start');
      this.httpPartitions = (await bus.endOffsets(bus.topic('http'))).length;
      const assigned = new Promise<void>((resolve) => this.readyWaiters.push(resolve));
      this.http = await bus.subscribe({
        group: AUTOSCALE_HTTP_GROUP,
        topics: ['http'],
        // Every partition this instance takes (at start and on a rebalance) is re-read from a stable window back.
        replayFrom: () => this.clock() - config.stableWindowMs - config.replaySlackMs,
        onRebalancing: () => {
          this.rebalancing = true;
        },
        onRevoked: (ps) => this.revoke(ps),
        onAssigned: (ps) => this.assign(ps),
        onCommitted: (_topic, partition, next) => this.handled(partition, next),
        // In memory only: nothing to make durable before the commit.
        handle: (batch) => {
          const now = this.clock();
          for (const msg of batch) this.takeRequest(msg, now);
          return Promise.resolve();
        },
      });
      await assigned;
    } catch (err) {
      await this.stopReading();
      throw err;
    }
    if (this.deps.autoTick !== false) {
      this.timers.push(
        setInterval(() => {
          if (this.busy) {
            this.metrics.skipped.inc();
            return;
          }
          this.tick().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'autoscale tick failed'));
        }, config.intervalMs),
      );
      if (config.panicCheckMs !== 0) {
        this.timers.push(
          setInterval(() => {
            if (!this.busy) this.panicCheck().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'autoscale panic check failed'));
          }, config.panicCheckMs),
        );
      }
    }
    this.log.info({ run, stableWindowMs: config.stableWindowMs, panicWindowMs: config.panicWindowMs, relativeAccuracy: config.relativeAccuracy }, 'autoscale processor started');
  }

  readonly tick = (): Promise<AutoscaleSignal[]> => this.inTurn(false);
  readonly panicCheck = (): Promise<AutoscaleSignal[]> => this.inTurn(true);
  readonly seen = () => ({ ...this.counts });
  readonly replicas = (app: string) => this.fleet.replicas(app);
  readonly ownership = () => ({ owned: [...this.partitionsOwned.keys()].sort((a, b) => a - b), ready: [...this.partitionsOwned.keys()].filter((p) => !this.owned.has(p)).sort((a, b) => a - b), rebalancing: this.rebalancing });
  readonly ready = (): Promise<void> => (this.owned.size === 0 && !this.rebalancing ? Promise.resolve() : new Promise((resolve) => this.readyWaiters.push(resolve)));

  /** Owned partitions, rebuilt or not → when this instance took each (clock() at the assignment: the signals' `owner_since`). */
  private readonly partitionsOwned = new Map<number, number>();

  /** At every join: partitions gone to another instance stop being signalled at once, their windows dropped. */
  private revoke(ps: readonly TopicPartition<'http'>[]): void {
    this.rebalancing = false;
    if (ps.length === 0) return;
    const gone = new Set(ps.map((p) => p.partition));
    for (const p of gone) {
      this.partitionsOwned.delete(p);
      this.owned.delete(p);
    }
    this.apps.forget((app) => gone.has(this.appPartition.get(app) ?? -1));
    for (const [app, p] of this.appPartition) if (gone.has(p)) this.appPartition.delete(app);
    this.log.info({ revoked: [...gone] }, 'http partitions revoked: their apps are no longer signalled here');
  }

  /** New partitions: replayed from a stable window back; their apps are signalled once the replay reached where they ended at assignment. */
  private assign(ps: readonly AssignedPartition<'http'>[]): void {
    const since = this.clock();
    for (const p of ps) {
      this.partitionsOwned.set(p.partition, since);
      if (p.start < p.end) this.owned.set(p.partition, p.end);
      else this.owned.delete(p.partition);
    }
    this.log.info({ since, assigned: ps.map((p) => ({ partition: p.partition, start: String(p.start), end: String(p.end) })) }, 'http partitions assigned: windows rebuilt from the topic before they are signalled');
    this.wakeIfReady();
  }

  private handled(partition: number, next: bigint): void {
    const end = this.owned.get(partition);
    if (end !== undefined && next >= end) {
      this.owned.delete(partition);
      this.wakeIfReady();
    }
  }

  private wakeIfReady(): void {
    if (this.owned.size > 0 || this.rebalancing) return;
    for (const w of this.readyWaiters.splice(0)) w();
  }

  /**
   * When this instance took `app`, if it signals the app at `now`: its partition is owned
   * and rebuilt, no rebalance is under way, and `now` is later than the assignment (the
   * previous owner stopped when the rebalance began, before this assignment: its last
   * signal is no later than `owner_since`, and this one's first is later).
   */
  private ownerSince(app: string, now: number): number | undefined {
    if (this.rebalancing) return undefined;
    const p = this.appPartition.get(app);
    if (p === undefined || this.owned.has(p)) return undefined;
    const since = this.partitionsOwned.get(p);
    return since !== undefined && now > since ? since : undefined;
  }

  async stop(): Promise<void> {
    for (const t of this.timers.splice(0)) clearInterval(t);
    await this.turns.idle();
    await this.stopReading();
    for (const w of this.readyWaiters.splice(0)) w();
  }

  /** Stops both consumers (the lifecycle reader deletes its own group; the http group is shared by the instances). */
  private async stopReading(): Promise<void> {
    const { lifecycle, http } = this;
    this.lifecycle = undefined;
    this.http = undefined;
    this.rebalancing = true;
    await Promise.all([lifecycle?.stop(), http?.stop()]);
  }

  private takeLifecycle(e: FleetEvent): void {
    this.fleet.apply(e);
    this.counts.lifecycle++;
  }

  private takeRequest(msg: ConsumedMessage<'http'>, now: number): void {
    const r = msg.event;
    this.counts.http++;
    const key = msg.key?.toString();
    // A load-balancer request keyed by the app it was routed to counts for that app; one
    // the parser could not route is attributed here only by an instance that owns every
    // partition (any other could be counting for an app another instance owns).
    const routed = key !== undefined && key.includes('/') && key !== this.deps.config.lbApp ? key : undefined;
    const lb = `${r.tenant}/${r.app}` === this.deps.config.lbApp;
    if (lb && routed === undefined && !this.ownsEveryPartition()) {
      this.metrics.ignored.inc({ reason: 'not_routed' });
      return;
    }
    const app = this.apps.appOf(r, routed);
    if (app !== undefined) this.appPartition.set(app, msg.partition);
    const taken = this.apps.take(r, now, routed);
    if ('source' in taken) {
      this.metrics.requests.inc({ source: taken.source });
      return;
    }
    this.metrics.ignored.inc({ reason: taken.ignored });
    if (taken.ignored === 'unknown_host') {
      this.warnOnce(`host:${r.host}`, { host: r.host, backend: r.backend }, 'load-balancer request for a host no app claims (lb-host label); not counted');
    }
  }

  private inTurn(onlyEnteringPanic: boolean): Promise<AutoscaleSignal[]> {
    return this.turns.run(async () => {
      this.busy = true;
      try {
        return await this.evaluate(onlyEnteringPanic);
      } finally {
        this.busy = false;
      }
    });
  }

  /** All active apps' signals, published then stored; with `onlyEnteringPanic`, only those of apps whose panic starts now. */
  private async evaluate(onlyEnteringPanic: boolean): Promise<AutoscaleSignal[]> {
    const now = this.clock();
    const signals = this.apps.evaluate(now, onlyEnteringPanic, (app) => this.ownerSince(app, now));
    if (!onlyEnteringPanic) this.metrics.active.set(signals.length);
    // The gauges show the decisions whether or not Kafka took them.
    this.gauges.update(signals, now);
    if (signals.length === 0) return signals;
    try {
      await this.deps.bus.publish('autoscale', signals.map((event) => ({ event })));
    } catch (err) {
      // A signal is only worth its second: the next tick publishes fresh ones.
      this.metrics.failed.inc({ stage: 'publish' }, signals.length);
      this.log.warn({ err: errorMessage(err), signals: signals.length }, 'autoscale signals not published; next tick publishes fresh ones');
      return [];
    }
    for (const s of signals) this.metrics.signals.inc({ mode: s.mode });
    // With the targets of the policy each app was decided under (the panel shows p95 against its target).
    if (this.store) await this.store.store(signals, (sig) => this.policyOf(`${sig.tenant}/${sig.app}`));
    return signals;
  }

  /** An app's policy as apps.ts resolves it (its label problems are reported there). */
  private policyOf(key: string) {
    return resolvePolicy(this.deps.config.policy, this.fleet.labels(key), this.labelPrefix, this.deps.config.apps[key]).policy;
  }

  private ownsEveryPartition(): boolean {
    return this.partitionsOwned.size >= this.httpPartitions;
  }

  private warnOnce(key: string, obj: object, msg: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size < 10_000) this.warned.add(key);
    this.log.warn(obj, msg);
  }
}
