/**
 * The autoscale processor as N instances of one consumer group, on real Kafka: one
 * recorded workload (lifecycle and http, 12 apps, the load balancer's requests keyed by
 * the app they were routed to) is run through 3 instances (one of them stopped in the
 * middle, while more requests arrive) and then through 1 instance; at the same clock the
 * signals are the same per app, and every app has exactly one signalling instance at
 * every tick.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { HttpRequest } from '../schemas/events.js';
import { createRegistry } from '../lib/metrics.js';
import { AUTOSCALE_DEFAULTS } from '../processors/autoscale/config.js';
import { AUTOSCALE_HTTP_GROUP, startAutoscale, type AutoscaleProcessor } from '../processors/autoscale/processor.js';
import { startAccessLogParser } from '../processors/access-log/processor.js';
import { eventually, namespace } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { busPool } from './helpers/kafka.js';
import { APPS, APP_KEYS, autoscaleWorkload, behindLb, byApp, essence, publishFirstHalf, settled, type RoundResult } from './helpers/autoscale-workload.js';

const ns = namespace();
const prefix = `${ns.id}.`;
const workload = autoscaleWorkload(prefix);
const { life, traffic } = workload;

const buses = busPool();
const newBus = () => buses.open(ns);
const running = new Set<AutoscaleProcessor>();
after(async () => {
  for (const p of running) await p.stop();
  await buses.closeAll();
  ns.cleanup();
});

async function instance(node: string, clock: () => number): Promise<AutoscaleProcessor> {
  const p = await startAutoscale({ bus: await newBus(), logger: ns.logger, registry: createRegistry(false), config: AUTOSCALE_DEFAULTS, clock, node, labelPrefix: prefix, autoTick: false });
  running.add(p);
  return p;
}

async function stop(p: AutoscaleProcessor): Promise<void> {
  running.delete(p);
  await p.stop();
}

/** Ticks every instance at the same clock value; each app must be signalled by one of them only. */
async function round(procs: readonly { name: string; p: AutoscaleProcessor }[]): Promise<RoundResult> {
  return byApp(await Promise.all(procs.map(async ({ name, p }) => ({ name, signals: await p.tick() }))));
}

const ownerships = (procs: readonly AutoscaleProcessor[]) => procs.map((p) => p.ownership());

test('3 instances split the apps by partition, survive losing one in the middle, and signal what 1 instance signals', async () => {
  const bus = await newBus();
  // The recorded workload, first half: lifecycle (2 replicas per app, the load balancer) and 40 s of requests.
  const { partitions, T1, firstHalf } = await publishFirstHalf(bus, workload);
  // The clock of every instance: they take their partitions at T1 - 1 (owner_since) and signal from T1 on.
  let now = T1 - 1;
  const clock = () => now;

  // 3 instances of one group.
  const a = await instance('node-a', clock);
  const b = await instance('node-b', clock);
  const c = await instance('node-c', clock);
  const three = [
    { name: 'a', p: a },
    { name: 'b', p: b },
    { name: 'c', p: c },
  ];
  await eventually('3 instances own every partition once, rebuilt', () => Promise.resolve(settled(ownerships([a, b, c]), partitions) ? true : undefined));
  for (const { p } of three) assert.ok(p.ownership().owned.length >= 1, 'every instance owns a partition');
  // An instance signals only at a clock past when it took its partitions (owner_since = T1 - 1).
  assert.equal((await round(three)).size, 0, 'no signal at the clock of the assignment');
  now = T1;
  const at1 = await round(three);
  assert.deepEqual([...at1.keys()].sort(), APP_KEYS, 'every app signalled, each by one instance');
  assert.ok(new Set([...at1.values()].map((v) => v.by)).size >= 2, 'the apps are spread over the instances');

  // One instance goes away in the middle; the rest of the workload arrives during the rebalance.
  assert.ok([...at1.values()].some((v) => v.by === 'c'), 'the instance stopped had apps');
  await stop(c);
  const secondHalf = traffic(T1, 8);
  await bus.publish('http', secondHalf);
  const two = three.slice(0, 2);
  // Ticks go on through the rebalance (one clock step per round): never two signallers of one app in a round.
  now = T1 + 10_000;
  const group = `${prefix}${AUTOSCALE_HTTP_GROUP}`;
  await eventually(
    'the 2 left own every partition, rebuilt, and every request is handled',
    async () => {
      now += 1;
      await round(two);
      const [ends, committed] = await Promise.all([bus.endOffsets(bus.topic('http')), bus.committedOffsets(group, bus.topic('http'))]);
      if (!settled(ownerships([a, b]), partitions)) return undefined;
      // An empty partition has nothing committed (-1).
      return ends.every((e) => e.high === e.low || committed.find((x) => x.partition === e.partition)?.offset === e.high) ? true : undefined;
    },
    60_000,
  );
  now += 1;
  const atEnd = await round(two);
  assert.deepEqual([...atEnd.keys()].sort(), APP_KEYS, 'every app signalled after the loss, each by one instance');
  const T2 = now;
  await stop(a);
  await stop(b);

  // The same workload through one instance, at the same clock values.
  now = T1 - 1;
  const one = await instance('node-1', clock);
  assert.deepEqual(one.ownership().owned.length, partitions, 'one instance owns every partition');
  await one.ready();
  now = T1;
  const ref1 = await round([{ name: 'one', p: one }]);
  now = T2;
  const ref2 = await round([{ name: 'one', p: one }]);
  await stop(one);

  const expectRequests = (from: readonly { event: HttpRequest; key?: string }[], app: string) => from.filter((m) => m.key === `acme/${app}`).length;
  for (const app of APPS) {
    const key = `acme/${app}`;
    assert.deepEqual(essence(at1.get(key)!.signal), essence(ref1.get(key)!.signal), `${key} at T1: 3 instances = 1 instance`);
    assert.deepEqual(essence(atEnd.get(key)!.signal), essence(ref2.get(key)!.signal), `${key} after the loss: 2 instances = 1 instance`);
    const i = APPS.indexOf(app);
    if (behindLb(i)) {
      // The load balancer's view: every one of its requests for the app, none lost in the handover.
      assert.equal(ref2.get(key)!.signal.stable.requests, expectRequests(firstHalf, app) + expectRequests(secondHalf, app), `${key}: all load-balancer requests of both halves`);
    }
    assert.equal(ref2.get(key)!.signal.current_replicas, 2);
  }
});

test("the access-log parser keys the load balancer's requests by the app claiming their host, other requests by their own app", async () => {
  const bus = await newBus();
  await bus.ensureTopics();
  await bus.publish('lifecycle', [{ event: life('route-shop-1', 'shop', 'route', Date.now() - 60_000, { [`${prefix}lb-host`]: 'shop.route.test' }) }]);
  const parser = await startAccessLogParser({ bus, logger: ns.logger, registry: createRegistry(false), routing: { lbApp: AUTOSCALE_DEFAULTS.lbApp, labelPrefix: prefix } });
  try {
    const haproxy = (host: string) => `<134>Nov 26 08:45:57 lb-1 haproxy[12]: 10.0.1.2:33317 [26/Nov/2026:08:45:57.655] fe_https~ be_x/srv2 10/250/30/69/359 200 2750 - - ---- 40/40/38/10/1 3/7 {${host}|curl} {text/html} "GET / HTTP/1.1"`;
    const [lbTenant, lbApp] = AUTOSCALE_DEFAULTS.lbApp.split('/') as [string, string];
    const line = (id: string, tenant: string, app: string, format: string, text: string) => ({
      event: { ...SAMPLE_EVENTS.logs, event_id: `route-${id}`, tenant, app, container_id: `${app}-c`, container_name: `${app}-c`, line: Buffer.from(text), original_length: text.length, invalid_utf8: false, log_format: format },
    });
    await bus.publish('logs', [
      line('claimed', lbTenant, lbApp, 'haproxy', haproxy('Shop.Route.Test:443')),
      line('unclaimed', lbTenant, lbApp, 'haproxy', haproxy('nobody.route.test')),
      line('own', 'route', 'web', 'nginx-combined', '10.0.0.1 - - [26/Nov/2026:08:45:57 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8" 0.012'),
    ]);
    const keys = new Map<string, string>();
    const sub = await bus.subscribe({
      group: `route-keys-${Date.now()}`,
      topics: ['http'],
      handle: (batch) => {
        for (const m of batch) if (m.event.source_event_id.startsWith('route-')) keys.set(m.event.source_event_id, m.key?.toString() ?? '');
        return Promise.resolve();
      },
    });
    try {
      await eventually('3 requests', () => Promise.resolve(keys.size === 3 ? true : undefined));
    } finally {
      await sub.stop();
    }
    assert.deepEqual(Object.fromEntries(keys), { 'route-claimed': 'route/shop', 'route-unclaimed': AUTOSCALE_DEFAULTS.lbApp, 'route-own': 'route/web' });
  } finally {
    await parser.stop();
  }
});
