/**
 * The recorded workload of the autoscale scale-out tests, and the checks they share:
 * 12 apps of tenant `acme` with 2 replicas each, apps 0–5 behind the load balancer
 * (`lb-host` label, its HAProxy requests keyed by the app they were routed to), 6–11 with
 * only their own access logs. Event ids are unique within one workload.
 */
import assert from 'node:assert/strict';
import type { EventBus, OutgoingMessage } from '../../lib/bus/bus.js';
import type { AutoscaleSignal, HttpRequest, LifecycleEvent } from '../../schemas/events.js';
import { SAMPLE_EVENTS } from './fixtures.js';

export const APPS = Array.from({ length: 12 }, (_, i) => `app${i}`);
export const APP_KEYS = APPS.map((a) => `acme/${a}`).sort();
/** Apps 0–5 are behind the load balancer (lb-host label); 6–11 only have their own access logs. */
export const behindLb = (i: number) => i < 6;

export type HttpMessage = OutgoingMessage<'http'> & { event: HttpRequest; key?: string };

export interface Workload {
  request: (app: string, ts: number, latency: number, o?: Partial<HttpRequest>) => HttpRequest;
  life: (id: string, app: string, tenant: string, ts: number, labels: Record<string, string>) => LifecycleEvent;
  /** The load balancer and 2 replicas of every app, started before `t`. */
  lifecycle: (t: number) => { event: LifecycleEvent }[];
  /** `seconds` seconds of traffic from `from`: per app a few own requests, and for apps behind the load balancer its requests, keyed by the app. */
  traffic: (from: number, seconds: number) => HttpMessage[];
}

/** A workload whose container labels use `prefix` (the collector's label prefix). */
export function autoscaleWorkload(prefix: string): Workload {
  let seq = 0;
  const request = (app: string, ts: number, latency: number, o: Partial<HttpRequest> = {}): HttpRequest => ({
    ...SAMPLE_EVENTS.http,
    event_id: `http-${seq++}`,
    tenant: 'acme',
    app,
    container_id: `${app}-1`,
    format: 'nginx-combined',
    host: '',
    backend: '',
    ts,
    status: latency > 400 ? 503 : 200,
    request_time_ms: latency,
    queue_time_ms: null,
    backend_queue: null,
    server_queue: null,
    ...o,
  });
  const life = (id: string, app: string, tenant: string, ts: number, labels: Record<string, string>): LifecycleEvent => ({
    ...SAMPLE_EVENTS.lifecycle,
    event_id: `life-${id}`,
    container_id: id,
    container_name: id,
    tenant,
    app,
    ts,
    action: 'start',
    exit_code: null,
    labels: { [`${prefix}tenant`]: tenant, [`${prefix}app`]: app, ...labels },
  });
  return {
    request,
    life,
    lifecycle: (t) => {
      const out = [{ event: life('lb-1', 'lb', 'platform', t - 120_000, {}) }];
      APPS.forEach((app, i) => {
        const labels = behindLb(i) ? { [`${prefix}lb-host`]: `${app}.acme.test` } : {};
        for (const r of [1, 2]) out.push({ event: life(`${app}-${r}`, app, 'acme', t - 100_000 + i, labels) });
      });
      return out;
    },
    traffic: (from, seconds) => {
      const out: HttpMessage[] = [];
      for (let s = 0; s < seconds; s++) {
        APPS.forEach((app, i) => {
          const t = from + s * 1000;
          for (let k = 0; k < 2 + (i % 3); k++) out.push({ event: request(app, t + k * 97, 10 + ((i * 7 + s * 3 + k * 11) % 90)) });
          if (behindLb(i)) {
            for (let k = 0; k < 5 + i; k++) {
              const lb = request('lb', t + k * 53, 15 + ((i * 13 + s * 5 + k * 17) % 600), { tenant: 'platform', container_id: 'lb-1', format: 'haproxy', host: `${app}.acme.test`, backend: `${app}.acme.test`, queue_time_ms: k % 4, backend_queue: k % 3, server_queue: 0 });
              out.push({ event: lb, key: `acme/${app}` });
            }
          }
        });
      }
      return out;
    },
  };
}

/**
 * The first half of the workload on `bus` (its topics made): the lifecycle and 40 s of
 * requests before T1, a whole second near the real time (windows end at whole seconds;
 * Kafka timestamps are real). The instances are started at T1 - 1 (their owner_since)
 * and signal from T1 on; `partitions` is the http topic's.
 */
export async function publishFirstHalf(bus: EventBus, w: Workload): Promise<{ partitions: number; T1: number; firstHalf: HttpMessage[] }> {
  await bus.ensureTopics();
  const partitions = (await bus.endOffsets(bus.topic('http'))).length;
  assert.ok(partitions >= 3, `${partitions} partitions`);
  const T1 = Math.ceil(Date.now() / 1000) * 1000;
  await bus.publish('lifecycle', w.lifecycle(T1));
  const firstHalf = w.traffic(T1 - 40_000, 40);
  await bus.publish('http', firstHalf);
  return { partitions, T1, firstHalf };
}

/** An instance's partitions, as `AutoscaleProcessor.ownership()` tells them. */
export interface Ownership {
  owned: number[];
  ready: number[];
  rebalancing: boolean;
}

/** Every partition owned by exactly one of the instances, rebuilt, and no rebalance under way. */
export function settled(owners: readonly Ownership[], partitions: number): boolean {
  const count = new Map<number, number>();
  for (const o of owners) {
    if (o.rebalancing || o.ready.length !== o.owned.length) return false;
    for (const part of o.owned) count.set(part, (count.get(part) ?? 0) + 1);
  }
  return count.size === partitions && [...count.values()].every((n) => n === 1);
}

/** What must be the same whichever instance computed a signal. */
export const essence = (s: AutoscaleSignal) => ({ stable: s.stable, panic: s.panic, current_replicas: s.current_replicas, host: s.host });

export type RoundResult = Map<string, { by: string; signal: AutoscaleSignal }>;

/** The signals of one round of ticks at one clock value, by app; an app signalled by two instances fails. */
export function byApp(results: readonly { name: string; signals: readonly AutoscaleSignal[] }[]): RoundResult {
  const out: RoundResult = new Map();
  for (const { name, signals } of results) {
    for (const s of signals) {
      const app = `${s.tenant}/${s.app}`;
      const other = out.get(app);
      assert.equal(other, undefined, `${app} signalled by ${other?.by ?? ''} and ${name} for the same window`);
      out.set(app, { by: name, signal: s });
    }
  }
  return out;
}

/** An instance's time as an app's owner, as its signals tell it. */
export interface OwnerPeriod {
  node: string;
  since: number;
  first: number;
  last: number;
  signals: number;
}

/**
 * The owners of every app as the autoscale topic tells them (`signals` in topic order;
 * an app's signals are on one partition): no event id twice, versions increasing per
 * app, each signal later than its `owner_since`, and per app the periods (owner_since to
 * last signal, by emitting instance) never overlap: each period begins no earlier than
 * the previous one's last signal, and none is returned to once another began.
 */
export function ownerPeriods(signals: readonly AutoscaleSignal[]): Map<string, OwnerPeriod[]> {
  const ids = new Set<string>();
  const version = new Map<string, number>();
  const periods = new Map<string, OwnerPeriod[]>();
  for (const s of signals) {
    const app = `${s.tenant}/${s.app}`;
    const since = s.owner_since ?? 0;
    assert.ok(s.ts > since, `${app}: signal of ${s.node} at ${s.ts} not after its owner_since ${since}`);
    let list = periods.get(app);
    if (!list) periods.set(app, (list = []));
    const current = list.at(-1);
    if (current && current.node === s.node && current.since === since) {
      current.last = s.ts;
      current.signals++;
    } else {
      const returned = list.find((p) => p.node === s.node && p.since === since);
      assert.equal(returned, undefined, `${app}: ${s.node} (owner since ${since}) signals again at ${s.ts} after ${current?.node ?? ''} (owner since ${current?.since ?? 0}) took over`);
      if (current) assert.ok(since >= current.last, `${app}: ${s.node} owner since ${since}, but ${current.node} signalled it until ${current.last}`);
      list.push({ node: s.node, since, first: s.ts, last: s.ts, signals: 1 });
    }
    assert.ok(!ids.has(s.event_id), `event id ${s.event_id} published twice`);
    ids.add(s.event_id);
    const before = version.get(app);
    assert.ok(before === undefined || s.version > before, `${app}: version ${s.version} after ${before}`);
    version.set(app, s.version);
  }
  return periods;
}
