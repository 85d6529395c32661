/**
 * Autoscale signals: HTTP requests → per-app stable and panic windows → every
 * `intervalMs` (1 s), for every app with requests in its stable window, an
 * AutoscaleSignal on the autoscale topic (key tenant/app) and a row in ClickHouse
 * `autoscale_signals` (when given a ClickHouse). In between, every `panicCheckMs`, an app
 * that enters panic gets its signal at once (a latency step is not left waiting for the
 * next interval).
 *
 * Inputs:
 * - lifecycle: running replicas per app (the load balancer's own app `lbApp` is not a
 *   replica), lb-host → app, and the labels that override an app's policy.
 * - http: requests. Those of the load balancer (`lbApp`, HAProxy logs) are attributed
 *   to the app whose `lb-host` label equals the request's host (its backend name when
 *   the log has no host). An app's own access logs and the load balancer's log the
 *   same requests, so each app keeps one window per source and the signal uses the
 *   load balancer's when it saw the app's traffic (it includes queueing), else the
 *   app's own.
 *
 * Offsets and restarts: the windows are in-memory state derived from the stream. Each
 * start uses fresh consumer groups (`autoscale-<run>-lifecycle`, `-http`), deleted again
 * on a clean stop (a crashed run's groups expire with Kafka's offsets retention):
 * - lifecycle is read from the beginning, and the processor starts signalling only
 *   once it has read up to where the topic ended at start. Containers older than the
 *   topic's retention come first from ClickHouse `lifecycle` (when given), the topic
 *   is applied on top (an older event never overrides a newer one).
 * - http starts at the offsets of (now − stable window − replaySlackMs) by Kafka
 *   timestamp (offsets-for-time), so a restarted processor has full windows at once
 *   instead of warming up for a window. Kafka timestamps are taken when the request
 *   was published, after it happened, so this includes every request of the window.
 * Offsets are still committed after each batch (at-least-once; a redelivered request
 * would count twice in a window, which only a consumer rebalance within one run causes);
 * they only show the lag. The processor runs as one instance: every instance reads
 * every partition and would publish its own signals.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { EventBus, Subscription } from '../../lib/bus/kafka.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import { counter, gauge } from '../../lib/metrics.js';
import { eventId } from '../../lib/event-id.js';
import type { AutoscaleSignal, HttpRequest, WindowStats } from '../../schemas/events.js';
import type { AutoscaleConfig, PolicyConfig } from './config.js';
import { Fleet, type FleetEvent } from './fleet.js';
import { decide, initialPolicyState, resolvePolicy, type PolicyState } from './policy.js';
import { RequestWindow, type WindowOptions } from './window.js';

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
  stop(): Promise<void>;
}

type Source = 'lb' | 'app';

interface AppState {
  tenant: string;
  app: string;
  windows: Partial<Record<Source, RequestWindow>>;
  policyState: PolicyState | undefined;
  version: number;
}

/** A signal as a row of `autoscale_signals` (windows flattened). */
export function signalRow(s: AutoscaleSignal): Record<string, unknown> {
  const flat = (prefix: string, w: WindowStats) => Object.fromEntries(Object.entries(w).map(([k, v]) => [`${prefix}${k}`, v]));
  return {
    event_id: s.event_id,
    tenant: s.tenant,
    app: s.app,
    node: s.node,
    host: s.host,
    ts: s.ts,
    version: s.version,
    mode: s.mode,
    current_replicas: s.current_replicas,
    recommended_replicas: s.recommended_replicas,
    reason: s.reason,
    ...flat('stable_', s.stable),
    ...flat('panic_', s.panic),
  };
}

export async function startAutoscale(deps: AutoscaleDeps): Promise<AutoscaleProcessor> {
  const { bus, ch, config } = deps;
  const log = deps.logger.child({ component: 'autoscale' });
  const clock = deps.clock ?? Date.now;
  const node = deps.node ?? hostname();
  const labelPrefix = deps.labelPrefix ?? 'logmeter.';
  const m = {
    requests: counter(deps.registry, 'logmeter_autoscale_requests_total', 'HTTP requests taken into autoscale windows', ['source']),
    ignored: counter(deps.registry, 'logmeter_autoscale_requests_ignored_total', 'HTTP requests not counted in any window', ['reason']),
    signals: counter(deps.registry, 'logmeter_autoscale_signals_published_total', 'Autoscale signals published', ['mode']),
    failed: counter(deps.registry, 'logmeter_autoscale_signal_failures_total', 'Autoscale signals not published or not stored', ['stage']),
    skipped: counter(deps.registry, 'logmeter_autoscale_ticks_skipped_total', 'Ticks skipped because the previous one was still running'),
    active: gauge(deps.registry, 'logmeter_autoscale_active_apps', 'Apps with requests in their stable window'),
  };
  const windowOpts: WindowOptions = { stableMs: config.stableWindowMs, panicMs: config.panicWindowMs, relativeAccuracy: config.relativeAccuracy };
  const fleet = new Fleet(labelPrefix, config.lbApp);
  const apps = new Map<string, AppState>();
  const seen = { http: 0, lifecycle: 0 };
  const warned = new Set<string>();
  const warnOnce = (key: string, obj: object, msg: string) => {
    if (warned.has(key)) return;
    if (warned.size < 10_000) warned.add(key);
    log.warn(obj, msg);
  };

  // --- lifecycle -------------------------------------------------------------------
  const applyLifecycle = (e: FleetEvent) => {
    fleet.apply(e);
    seen.lifecycle++;
  };
  if (ch) await seedFromClickHouse(ch, applyLifecycle, log);

  const run = `${clock().toString(36)}-${randomBytes(3).toString('hex')}`;
  const lifecycleGroup = `autoscale-${run}-lifecycle`;
  const httpGroup = `autoscale-${run}-http`;
  const lifecycleTopic = bus.topic('lifecycle');
  const httpTopic = bus.topic('http');
  const subs: Subscription[] = [];
  const stopSubs = async () => {
    await Promise.all(subs.splice(0).map((s) => s.stop()));
  };

  try {
    const ends = await bus.admin((a) => a.fetchTopicOffsets(lifecycleTopic));
    subs.push(
      await bus.subscribe({
        group: lifecycleGroup,
        topics: ['lifecycle'],
        fromBeginning: true,
        handle: (batch) => {
          for (const msg of batch) applyLifecycle(msg.event);
          return Promise.resolve();
        },
      }),
    );
    await waitCommitted(bus, `${bus.config.topicPrefix}${lifecycleGroup}`, lifecycleTopic, ends);
    log.info({ containers: fleet.size, events: seen.lifecycle }, 'lifecycle read up to its end at start');

    // --- http --------------------------------------------------------------------
    const since = clock() - config.stableWindowMs - config.replaySlackMs;
    const fromStart = await bus.admin(async (a) => {
      const [byTime, bounds] = await Promise.all([a.fetchTopicOffsetsByTimestamp(httpTopic, since), a.fetchTopicOffsets(httpTopic)]);
      // The window reaches back past the topic's start: simply read from the beginning.
      if (byTime.every((p) => p.offset === bounds.find((b) => b.partition === p.partition)?.low)) return true;
      // (kafkajs' setOffsets joins the group and waits for one fetch: a few seconds.)
      await a.setOffsets({ groupId: `${bus.config.topicPrefix}${httpGroup}`, topic: httpTopic, partitions: byTime });
      return false;
    });
    subs.push(
      await bus.subscribe({
        group: httpGroup,
        topics: ['http'],
        // Otherwise every partition has its offset set above; one created later starts at its end.
        fromBeginning: fromStart,
        // In memory only: nothing to make durable before the commit.
        handle: (batch) => {
          const now = clock();
          for (const msg of batch) takeRequest(msg.event, now);
          return Promise.resolve();
        },
      }),
    );
  } catch (err) {
    await stopSubs();
    throw err;
  }

  function takeRequest(r: HttpRequest, now: number): void {
    seen.http++;
    let key = `${r.tenant}/${r.app}`;
    let source: Source = 'app';
    if (key === config.lbApp) {
      const owner = fleet.appForHost(r.host) ?? (r.backend ? fleet.appForHost(r.backend) : undefined);
      if (!owner) {
        m.ignored.inc({ reason: 'unknown_host' });
        warnOnce(`host:${r.host}`, { host: r.host, backend: r.backend }, 'load-balancer request for a host no app claims (lb-host label); not counted');
        return;
      }
      key = owner;
      source = 'lb';
    }
    let a = apps.get(key);
    if (!a) {
      const slash = key.indexOf('/');
      a = { tenant: key.slice(0, slash), app: key.slice(slash + 1), windows: {}, policyState: undefined, version: 0 };
      apps.set(key, a);
    }
    const res = (a.windows[source] ??= new RequestWindow(windowOpts)).add(r, now);
    if (res === 'added') m.requests.inc({ source });
    else m.ignored.inc({ reason: res === 'too_old' ? 'outside_window' : 'future' });
  }

  function policyFor(key: string): PolicyConfig {
    const { policy, problems } = resolvePolicy(config.policy, fleet.labels(key), labelPrefix, config.apps[key]);
    for (const p of problems) warnOnce(`policy:${key}:${p}`, { app: key, problem: p }, 'autoscale policy label ignored');
    return policy;
  }

  // --- signals -----------------------------------------------------------------------
  let pending: Record<string, unknown>[] = [];

  /** All active apps' signals; with `onlyEnteringPanic`, only those of apps whose panic starts now. */
  async function evaluate(onlyEnteringPanic = false): Promise<AutoscaleSignal[]> {
    const now = clock();
    const signals: AutoscaleSignal[] = [];
    for (const [key, a] of apps) {
      // The panic check looks only at apps not in panic yet; the tick handles the rest.
      if (onlyEnteringPanic && a.policyState?.mode === 'panic') continue;
      let held = 0;
      for (const w of Object.values(a.windows)) held += w.prune(now);
      if (held === 0) {
        // Idle for a whole window: forget it (a returning app starts a new cooldown; versions stay increasing as they follow the clock).
        apps.delete(key);
        continue;
      }
      let chosen: { stable: WindowStats; panic: WindowStats } | undefined;
      for (const source of ['lb', 'app'] as const) {
        const s = a.windows[source]?.stats(now);
        if (s && s.stable.requests > 0) {
          chosen = s;
          break;
        }
      }
      // Only seconds ahead of now (future requests): not active yet.
      if (!chosen) continue;
      const current = fleet.replicas(key);
      const d = decide({ now, stable: chosen.stable, panic: chosen.panic, current, policy: policyFor(key), state: a.policyState ?? initialPolicyState(now) });
      // The decision is a function of time and windows: one not published is simply dropped.
      if (onlyEnteringPanic && d.mode !== 'panic') continue;
      a.policyState = d.state;
      a.version = Math.max(a.version + 1, now);
      signals.push({
        event_id: eventId('autoscale', a.tenant, a.app, a.version),
        tenant: a.tenant,
        app: a.app,
        node,
        container_id: '',
        ts: now,
        version: a.version,
        host: fleet.hostOf(key),
        stable: chosen.stable,
        panic: chosen.panic,
        current_replicas: current,
        recommended_replicas: d.recommended,
        mode: d.mode,
        reason: d.reason,
      });
    }
    if (!onlyEnteringPanic) m.active.set(signals.length);
    if (signals.length === 0) return signals;
    try {
      await bus.publish('autoscale', signals.map((event) => ({ event })));
    } catch (err) {
      // A signal is only worth its second: the next tick publishes fresh ones.
      m.failed.inc({ stage: 'publish' }, signals.length);
      log.warn({ err: errorMessage(err), signals: signals.length }, 'autoscale signals not published; next tick publishes fresh ones');
      return [];
    }
    for (const s of signals) m.signals.inc({ mode: s.mode });
    if (ch) await store(ch, signals);
    return signals;
  }

  /** Signals are on Kafka already; their rows are history, retried with the next tick's (bounded). */
  async function store(c: ClickHouse, signals: AutoscaleSignal[]): Promise<void> {
    const rows = pending.concat(signals.map(signalRow));
    if (rows.length === 0) return;
    try {
      await c.client.insert({ table: c.table('autoscale_signals'), values: rows, format: 'JSONEachRow' });
      pending = [];
    } catch (err) {
      const over = rows.length - config.maxPendingRows;
      if (over > 0) {
        m.failed.inc({ stage: 'store' }, over);
        log.warn({ dropped: over }, 'autoscale signal rows dropped: ClickHouse failing longer than maxPendingRows signals');
      }
      pending = over > 0 ? rows.slice(over) : rows;
      log.warn({ err: errorMessage(err), pending: pending.length }, 'autoscale signals not stored; retried with the next tick');
    }
  }

  let chain: Promise<unknown> = Promise.resolve();
  let busy = false;
  const evaluateInTurn = (onlyEnteringPanic: boolean): Promise<AutoscaleSignal[]> => {
    const p = chain.then(async () => {
      busy = true;
      try {
        return await evaluate(onlyEnteringPanic);
      } finally {
        busy = false;
      }
    });
    chain = p.catch(() => undefined);
    return p;
  };
  const tick = () => evaluateInTurn(false);
  const panicCheck = () => evaluateInTurn(true);
  const timer =
    deps.autoTick === false
      ? undefined
      : setInterval(() => {
          if (busy) {
            m.skipped.inc();
            return;
          }
          tick().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'autoscale tick failed'));
        }, config.intervalMs);
  const panicTimer =
    deps.autoTick === false || config.panicCheckMs === 0
      ? undefined
      : setInterval(() => {
          if (!busy) panicCheck().catch((err: unknown) => log.error({ err: errorMessage(err) }, 'autoscale panic check failed'));
        }, config.panicCheckMs);

  log.info({ run, stableWindowMs: config.stableWindowMs, panicWindowMs: config.panicWindowMs, relativeAccuracy: config.relativeAccuracy }, 'autoscale processor started');
  return {
    tick,
    panicCheck,
    seen: () => ({ ...seen }),
    replicas: (app) => fleet.replicas(app),
    async stop() {
      if (timer) clearInterval(timer);
      if (panicTimer) clearInterval(panicTimer);
      await chain;
      await stopSubs();
      await bus
        .admin((a) => a.deleteGroups([`${bus.config.topicPrefix}${lifecycleGroup}`, `${bus.config.topicPrefix}${httpGroup}`]))
        .catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'consumer groups of this run not deleted; they expire with the offsets retention'));
    },
  };
}

/** Waits until the group has committed every partition up to `ends` (the topic's end at start). */
async function waitCommitted(bus: EventBus, groupId: string, topic: string, ends: Array<{ partition: number; high: string; low: string }>): Promise<void> {
  const want = new Map(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => [e.partition, BigInt(e.high)]));
  if (want.size === 0) return;
  await bus.admin(async (a) => {
    for (;;) {
      const [t] = await a.fetchOffsets({ groupId, topics: [topic] });
      const behind = [...want].filter(([p, high]) => {
        const c = t?.partitions.find((x) => x.partition === p)?.offset ?? '-1';
        return BigInt(c) < high;
      });
      if (behind.length === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  });
}

/** Latest start/stop state per container from ClickHouse, for containers older than the topic's retention. A failed query is logged; the topic still gives what it holds. */
async function seedFromClickHouse(ch: ClickHouse, apply: (e: FleetEvent) => void, log: Logger): Promise<void> {
  try {
    const rs = await ch.client.query({
      query: `SELECT container_id, tenant, app, toUnixTimestamp64Milli(max(ts)) AS last_ts, argMax(action, ts) AS last_action, argMax(labels, ts) AS last_labels
              FROM ${ch.table('lifecycle')} FINAL
              WHERE action IN ('create', 'start', 'restart', 'unpause', 'die', 'stop', 'pause', 'destroy')
              GROUP BY container_id, tenant, app
              HAVING last_action != 'destroy'`,
      format: 'JSONEachRow',
    });
    type Row = { container_id: string; tenant: string; app: string; last_ts: number | string; last_action: string; last_labels: Record<string, string> };
    const rows = await rs.json<Row>();
    for (const r of rows) apply({ container_id: r.container_id, tenant: r.tenant, app: r.app, ts: Number(r.last_ts), action: r.last_action, labels: r.last_labels });
    log.info({ containers: rows.length }, 'containers seeded from ClickHouse lifecycle');
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'containers not seeded from ClickHouse; only the lifecycle topic counts replicas');
  }
}
