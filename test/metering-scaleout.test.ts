/**
 * Metering as N instances (issue 17): one recorded workload (stats samples of 18
 * containers on two nodes, with a restart, copied samples and their lifecycle) goes
 * through the traffic and usage processors and billing's report jobs three times, each
 * run in its own topics, database, bullmq queue and report directory:
 * - 1 instance of each;
 * - 3 instances of each;
 * - 3 instances of each, one stopped midway: its traffic consumer is disconnected in the
 *   middle of a batch, after the insert and without the commit (what a kill leaves: the
 *   next owner handles the batch again); its usage computation dies half-way through
 *   publishing; its billing worker is closed once the ticks are in.
 * Traffic rows are identical row for row, usage records by id and quantity, billing
 * reports byte for byte, and each report job runs once.
 *
 * The instances of a run live in this one process and share one embedded ClickHouse:
 * chDB admits one process per data directory, so with the embedded store the
 * ClickHouse-writing processors scale out inside one process. With `CLICKHOUSE_URL` they
 * would be N processes; the consumer groups and the bullmq queue are the same either way.
 * The log sink (lifecycle and usage into ClickHouse) runs as one instance in every run.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { LifecycleEvent, StatsSample } from '../schemas/events.js';
import { busFor } from '../lib/runtime.js';
import type { EventBus, Subscription } from '../lib/bus/bus.js';
import { createRegistry } from '../lib/metrics.js';
import { openClickHouse, withDatabase, type ClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { LogmeterError } from '../lib/errors.js';
import { logSinkConfig } from '../app/pipeline.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { startTraffic, TRAFFIC_GROUP } from '../processors/traffic/processor.js';
import { startUsage, type UsageProcessor } from '../processors/usage/processor.js';
import { HOUR } from '../processors/usage/meters.js';
import { startBilling, type Billing } from '../processors/billing/processor.js';
import { parsePriceList } from '../processors/billing/prices.js';
import { previousPeriod } from '../processors/billing/calendar.js';
import { reportJobId } from '../processors/billing/scheduler.js';
import { eventually, namespace } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { tapInserts } from './helpers/clickhouse-tap.js';

const ns = namespace();
const codec = await AvroCodec.create(new ManifestSource());
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
const buses: EventBus[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

before(() => migrate(ch, ns.logger));
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  for (const b of buses) await b.close();
  await ch.close();
  ns.cleanup();
});

const GiB = 1_073_741_824;
const prices = parsePriceList(
  {
    currency: 'EUR',
    meters: {
      container_seconds: { unit: 'second', per: 3600, price: 0.02, sizes: { small: 0.01, large: 0.04 } },
      egress_external_bytes: { unit: 'byte', per: GiB, price: 0.08 },
      ingress_external_bytes: { unit: 'byte', per: GiB, price: 0.01 },
      internal_bytes: { unit: 'byte', per: GiB, price: 0 },
      requests: { unit: 'request', per: 1_000_000, price: 0.2 },
      log_bytes: { unit: 'byte', per: GiB, price: 0.5 },
      blkio_bytes: { unit: 'byte', per: GiB, price: 0.001 },
    },
  },
  'test prices',
);

// ---- the recorded workload -----------------------------------------------------------------

/** The hour the workload happened in (the last whole hour), the usage clock, and the hourly tick's time. */
const HOUR_START = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
const NOW = HOUR_START + HOUR + 60_000;
const TICK_AT = new Date(HOUR_START + HOUR + 5 * 60_000);
const APPS = [
  ['acme', 'web'],
  ['acme', 'api'],
  ['globex', 'shop'],
  ['initech', 'batch'],
] as const;
const SAMPLES = 24;
const CONTAINERS = Array.from({ length: 18 }, (_, i) => {
  const [tenant, app] = APPS[i % APPS.length]!;
  return { id: `ctr-${String(i).padStart(2, '0')}`, tenant, app, node: i % 2 === 0 ? 'node-a' : 'node-b', size: i % 3 === 0 ? 'large' : 'small', start: HOUR_START + 60_000 + i * 1000 };
});

function life(c: (typeof CONTAINERS)[number], action: 'start' | 'die', ts: number): { event: LifecycleEvent } {
  return {
    event: {
      ...SAMPLE_EVENTS.lifecycle,
      event_id: `life-${c.id}-${action}-${ts}`,
      tenant: c.tenant,
      app: c.app,
      node: c.node,
      container_id: c.id,
      container_name: c.id,
      ts,
      action,
      exit_code: action === 'die' ? 0 : null,
      labels: {},
      identity: { log_format: null, lb_host: null, lb_port: null, size: c.size },
    },
  };
}

/** Sample k of container i: counters grow by amounts of their own; container 5 restarts before sample 12 (counters from zero). */
function stats(i: number, k: number): { event: StatsSample } {
  const c = CONTAINERS[i]!;
  const run = i === 5 && k >= 12 ? k - 11 : k + 1;
  const grow = (base: number) => run * base + ((run * run * (i + 3)) % 977);
  return {
    event: {
      ...SAMPLE_EVENTS.stats,
      event_id: `stats-${c.id}-${k}`,
      tenant: c.tenant,
      app: c.app,
      node: c.node,
      container_id: c.id,
      container_name: c.id,
      size: c.size,
      ts: c.start + 1000 + k * 10_000 + (i === 5 && k >= 12 ? 2000 : 0),
      interfaces: [
        { name: 'eth0', network: 'public', traffic_class: 'external', rx_bytes: grow(1_000 + i), tx_bytes: grow(250_000 * (1 + (i % 4))), rx_packets: run, tx_packets: run },
        { name: 'eth1', network: 'backplane', traffic_class: 'internal', rx_bytes: grow(40_000), tx_bytes: grow(30_000 + i), rx_packets: run, tx_packets: run },
      ],
      blkio_read_bytes: grow(4096),
      blkio_write_bytes: grow(8192 * (i % 3)),
    },
  };
}

/** First half: every start and the first 12 samples; second half: the rest, container 5's restart, the dies of the even containers. A few samples come twice (overlapping stats rounds of an older collector). */
function workload(): { lifecycle: Array<{ event: LifecycleEvent }>; stats: Array<{ event: StatsSample }> }[] {
  const half = (from: number, to: number) => CONTAINERS.flatMap((_, i) => Array.from({ length: to - from }, (_, j) => stats(i, from + j))).flatMap((m, n) => (n % 7 === 3 ? [m, m] : [m]));
  const first = { lifecycle: CONTAINERS.map((c) => life(c, 'start', c.start)), stats: half(0, 12) };
  const c5 = CONTAINERS[5]!;
  const lastTs = (i: number) => stats(i, SAMPLES - 1).event.ts;
  const second = {
    lifecycle: [life(c5, 'die', c5.start + 1000 + 11 * 10_000 + 500), life(c5, 'start', c5.start + 1000 + 11 * 10_000 + 1500), ...CONTAINERS.filter((_, i) => i % 2 === 0).map((c, j) => life(c, 'die', lastTs(j * 2) + 3000))],
    stats: half(12, SAMPLES),
  };
  return [first, second];
}

// ---- one run ---------------------------------------------------------------------------------

/** A ClickHouse handle that tells `onInsert` about every insert first (and waits for it). */
function watched(store: ClickHouse, onInsert: (table: string, rows: readonly Record<string, unknown>[]) => Promise<void>): ClickHouse {
  return tapInserts(store, {
    insert: async (table, rows, columns) => {
      await onInsert(table, rows);
      await store.insert(table, rows, columns);
    },
  });
}

/** A bus whose usage publishes stop half-way and fail: a usage computation killed while publishing. */
function dyingPublisher(bus: EventBus): EventBus {
  return new Proxy(bus, {
    get(target, prop) {
      if (prop === 'publish') {
        return async (topic: 'usage', messages: Parameters<EventBus['publish']>[1]) => {
          await target.publish(topic, messages.slice(0, Math.floor(messages.length / 2)));
          throw new LogmeterError('killed', 'the process died while publishing');
        };
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Resolves once `group` committed the end of every partition of `topic` that has messages. */
async function committedAll(bus: EventBus, group: string, topic: 'stats' | 'lifecycle' | 'usage'): Promise<void> {
  const full = `${bus.config.topicPrefix}${group}`;
  await eventually(`${full} committed all of ${topic}`, async () => {
    const [ends, committed] = await Promise.all([bus.endOffsets(bus.topic(topic)), bus.committedOffsets(full, bus.topic(topic))]);
    return ends.every((e) => e.high === e.low || committed.find((c) => c.partition === e.partition)?.offset === e.high) ? true : undefined;
  }, 120_000);
}

interface Outputs {
  traffic: unknown[];
  usage: unknown[];
  lineItems: unknown[];
  files: Map<string, Buffer>;
  jobs: string[];
  /** Report runs per job id, counted from every billing instance's log lines. */
  reportRuns: Map<string, number>;
  /** Traffic rows inserted per instance (the rows of a batch handled twice counted twice). */
  trafficInserts: number[];
}

async function run(name: string, instances: number, stopOne: boolean): Promise<Outputs> {
  const prefix = `${ns.id}-${name}.`;
  const config = { ...ns.config, kafka: { ...ns.config.kafka, topicPrefix: prefix } };
  const newBus = () => {
    const b = busFor(config, codec, ns.logger);
    buses.push(b);
    return b;
  };
  const bus = newBus();
  await bus.ensureTopics();
  const partitions = (await bus.endOffsets(bus.topic('stats'))).length;
  assert.ok(partitions >= instances, `${partitions} partitions for ${instances} instances`);
  const store = withDatabase(ch, `${ns.id}_${name}`);
  await migrate(store, ns.logger);
  const sink = await startLogSink({ config: logSinkConfig(config), bus, ch: store, logger: ns.logger, registry: createRegistry(false) });
  cleanups.push(() => sink.stop());

  // Traffic: N members of one group; the last one's inserts can be held at a gate.
  const trafficInserts = Array.from({ length: instances }, () => 0);
  let gate: { reached(): void; open: Promise<void> } | undefined;
  const traffic: Subscription[] = [];
  for (let n = 0; n < instances; n++) {
    const victim = stopOne && n === instances - 1;
    const own = watched(store, async (table, rows) => {
      if (table !== 'traffic') return;
      trafficInserts[n]! += rows.length;
      const g = victim ? gate : undefined;
      if (g) {
        gate = undefined;
        g.reached();
        await g.open;
      }
    });
    const sub = await startTraffic({ bus: newBus(), ch: own, logger: ns.logger, registry: createRegistry(false) });
    traffic.push(sub);
    cleanups.push(() => sub.stop());
  }

  const [first, second] = workload();
  await bus.publish('lifecycle', first!.lifecycle);
  await bus.publish('stats', first!.stats);
  await committedAll(bus, TRAFFIC_GROUP, 'stats');
  // The containers' keys put samples on every partition, so the instance stopped below has some.
  assert.ok((await bus.endOffsets(bus.topic('stats'))).every((p) => BigInt(p.high) > BigInt(p.low)), 'every stats partition has samples');
  if (stopOne) {
    // The victim is held inside a batch of the second half; stopped there, it inserts and does not commit.
    let reached!: () => void;
    let release!: () => void;
    const atGate = new Promise<void>((r) => (reached = r));
    gate = { reached, open: new Promise<void>((r) => (release = r)) };
    await bus.publish('stats', second!.stats);
    await atGate;
    const stopped = traffic.pop()!.stop();
    await new Promise((r) => setImmediate(r));
    release();
    await stopped;
  } else await bus.publish('stats', second!.stats);
  await bus.publish('lifecycle', second!.lifecycle);
  await committedAll(bus, TRAFFIC_GROUP, 'stats');
  await committedAll(bus, 'log-sink.lifecycle', 'lifecycle');

  // Usage: every instance computes at the same clock; with stopOne the last one dies half-way through publishing.
  const usage: UsageProcessor[] = [];
  for (let n = 0; n < instances; n++) {
    const dying = stopOne && n === instances - 1;
    const u = startUsage({ bus: dying ? dyingPublisher(newBus()) : newBus(), ch: store, logger: ns.logger, registry: createRegistry(false), config: { intervalSeconds: 3600, lookbackHours: 2 }, clock: () => NOW });
    usage.push(u);
    cleanups.push(() => u.stop());
    if (dying) await assert.rejects(u.runOnce(), /died while publishing/);
  }
  for (const u of usage.slice(0, stopOne ? -1 : undefined)) assert.ok((await u.runOnce()) > 0);
  for (const u of usage) await u.stop();
  await committedAll(bus, 'log-sink.usage', 'usage');

  // Billing: N workers on one queue, every instance ticks (as each one's scheduler would).
  const lines: string[] = [];
  const reportsDir = path.join(ns.dataDir, name, 'reports');
  const billings: Billing[] = [];
  for (let n = 0; n < instances; n++) {
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const b = await startBilling({ config: { redisUrl: ns.config.redis.url, queue: `${prefix}billing`, reportPeriods: ['hourly'], reportsDir }, ch: store, logger, prices, prefix: ns.id });
    billings.push(b);
    cleanups.push(() => b.close());
  }
  cleanups.push(() => billings[0]!.queue.obliterate({ force: true }));
  const ticked = await Promise.all(billings.map((b) => b.tick('hourly', TICK_AT)));
  const jobs = [...new Set(ticked.flat())].sort();
  for (const ids of ticked) assert.deepEqual([...ids].sort(), jobs, 'every tick names the same report jobs');
  if (stopOne) await billings.pop()!.close();
  const queue = billings[0]!.queue;
  await eventually('every report job completed', async () => {
    const states = await Promise.all(jobs.map((id) => queue.getJobState(id)));
    assert.ok(!states.includes('failed'), `a report job failed: ${states.join(',')}`);
    return states.every((s) => s === 'completed') ? true : undefined;
  }, 120_000);
  const reportRuns = new Map<string, number>();
  for (const l of lines) {
    const e = JSON.parse(l) as { msg?: string; report_id?: string };
    if (e.msg === 'billing report written') reportRuns.set(e.report_id!, (reportRuns.get(e.report_id!) ?? 0) + 1);
  }

  const files = new Map<string, Buffer>();
  for (const tenant of readdirSync(reportsDir)) for (const f of readdirSync(path.join(reportsDir, tenant))) files.set(`${tenant}/${f}`, readFileSync(path.join(reportsDir, tenant, f)));
  return {
    traffic: await store.query(`SELECT * FROM ${store.table('traffic')} FINAL ORDER BY container_id, network, ts, event_id`),
    usage: await store.query(`SELECT event_id, quantity FROM ${store.table('usage')} FINAL ORDER BY event_id`),
    lineItems: await store.query(`SELECT * FROM ${store.table('billing_line_items')} FINAL ORDER BY tenant, report_id, meter`),
    files,
    jobs,
    reportRuns,
    trafficInserts,
  };
}

test('traffic, usage and billing as 1 instance, as 3, and as 3 with one stopped midway: the same rows, records and reports', async () => {
  const one = await run('one', 1, false);
  // What the workload must give, checked on the single instance's output.
  const samples = workload().flatMap((h) => h.stats);
  const distinct = new Set(samples.map((s) => s.event.event_id));
  assert.equal(one.traffic.length, distinct.size * 3, 'one row per sample and network (two interfaces and block IO), copies merged');
  const egress = (one.traffic as Array<{ traffic_class: string; tx_bytes: number }>).filter((r) => r.traffic_class === 'external').reduce((s, r) => s + Number(r.tx_bytes), 0);
  const expectedEgress = CONTAINERS.reduce((s, _, i) => {
    const tx = (k: number) => stats(i, k).event.interfaces[0]!.tx_bytes;
    return s + (i === 5 ? tx(11) + tx(SAMPLES - 1) : tx(SAMPLES - 1));
  }, 0);
  assert.equal(egress, expectedEgress, "egress is each run's last counter, summed (container 5 restarted once)");
  assert.ok(one.usage.length > 0 && one.lineItems.length > 0);
  const period = previousPeriod('hourly', TICK_AT);
  assert.equal(period.start.getTime(), HOUR_START);
  assert.deepEqual(one.jobs, ['acme', 'globex', 'initech'].map((t) => reportJobId(t, period)));
  assert.equal(one.files.size, 6, 'a CSV and a JSON report per tenant');

  const three = await run('three', 3, false);
  assert.ok(three.trafficInserts.filter((n) => n > 0).length >= 2, `the stats partitions are split over the instances: ${three.trafficInserts.join(', ')} rows`);
  const stopped = await run('stopped', 3, true);
  const insertedRows = stopped.trafficInserts.reduce((a, b) => a + b, 0);
  const handledRows = samples.length * 3;
  assert.ok(insertedRows > handledRows, `the stopped instance's uncommitted batch was handled again by its new owner (${insertedRows} rows inserted for ${handledRows})`);

  for (const [label, r] of [['3 instances', three], ['3 instances, one stopped midway', stopped]] as const) {
    assert.deepEqual(r.traffic, one.traffic, `${label}: traffic rows identical`);
    assert.deepEqual(r.usage, one.usage, `${label}: usage records identical by id and quantity`);
    assert.deepEqual(r.lineItems, one.lineItems, `${label}: billing line items identical`);
    assert.deepEqual([...r.files.keys()].sort(), [...one.files.keys()].sort(), `${label}: the same report files`);
    for (const [f, bytes] of one.files) assert.ok(r.files.get(f)!.equals(bytes), `${label}: ${f} byte for byte`);
    assert.deepEqual(r.jobs, one.jobs, `${label}: the same report jobs`);
  }
  for (const r of [one, three, stopped]) {
    assert.deepEqual([...r.reportRuns.values()], r.jobs.map(() => 1), 'each report job ran once');
    assert.equal(r.reportRuns.size, r.jobs.length);
  }
});
