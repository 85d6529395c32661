/**
 * The autoscale processor as 3 instances in child processes, on real Kafka with a 6 s
 * session timeout, one of them killed with SIGKILL in the middle of the recorded workload
 * (no clean leave: its partitions wait for the group to expel it). Checked on the
 * autoscale topic itself: no event id twice, versions increasing per app, per app the
 * owners' periods (owner_since to last signal, by emitting instance) never overlap, and
 * every app signalled again by a survivor after the kill; at the same clock, the windows
 * equal one instance's.
 *
 * The test drives the clock: a round sets it in every instance first and only then lets
 * every instance tick, so an instance that takes a partition during a round reads a
 * clock no earlier than any signal of that round.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { createRegistry } from '../lib/metrics.js';
import type { AutoscaleSignal } from '../schemas/events.js';
import { AUTOSCALE_HTTP_GROUP, startAutoscale } from '../processors/autoscale/processor.js';
import { ROOT, eventually, namespace } from './helpers/env.js';
import { busPool, readAll } from './helpers/kafka.js';
import { spawnInstance, stopInstances, type ChildInstance } from './helpers/instance.js';
import { APP_KEYS, autoscaleWorkload, byApp, essence, ownerPeriods, publishFirstHalf, settled, type Ownership } from './helpers/autoscale-workload.js';

const ns = namespace({ LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS: '6' });
const workload = autoscaleWorkload(ns.config.labelPrefix);
const SCRIPT = path.join(ROOT, 'test', 'helpers', 'autoscale-instance.ts');
const buses = busPool();
const newBus = () => buses.open(ns);
after(async () => {
  await stopInstances();
  await buses.closeAll();
  ns.cleanup();
});

const ownerships = (children: readonly ChildInstance[]) => Promise.all(children.map((c) => c.command<Ownership>('ownership')));

type Round = { name: string; signals: AutoscaleSignal[] }[];
/** Every round's signals (their ticks resolve only after Kafka acknowledged them); checked after the topic. */
const rounds: Round[] = [];

/** One round at `now`: the clock set in every instance, then every instance ticks. */
async function round(children: readonly ChildInstance[], now: number): Promise<Round> {
  await Promise.all(children.map((c) => c.command('clock', now)));
  const results = await Promise.all(children.map(async (c) => ({ name: c.name, signals: await c.command<AutoscaleSignal[]>('tick') })));
  rounds.push(results);
  return results;
}

/** The app → instance of a round, unchecked (byApp checks it once the topic was). */
const signallers = (r: Round) => new Map(r.flatMap(({ name, signals }) => signals.map((s): [string, string] => [`${s.tenant}/${s.app}`, name])));

test('3 instances in child processes, one SIGKILLed midway: one owner per app at a time, every app back with a survivor, windows as 1 instance', async () => {
  const bus = await newBus();
  const { partitions, T1 } = await publishFirstHalf(bus, workload);

  const children = await Promise.all(['a', 'b', 'c'].map((n) => spawnInstance(`node-${n}`, SCRIPT, [`node-${n}`, String(T1 - 1)], ns.env)));
  await eventually('3 instances own every partition once, rebuilt', async () => (settled(await ownerships(children), partitions) ? true : undefined), 120_000);
  for (const o of await ownerships(children)) assert.ok(o.owned.length >= 1, 'every instance owns a partition');
  const round1 = await round(children, T1);

  // Midway: the rest of the workload goes out while one instance that signals apps is killed.
  const by1 = signallers(round1);
  const victim = children.find((c) => [...by1.values()].includes(c.name))!;
  const victimApps = [...by1].filter(([, name]) => name === victim.name).map(([app]) => app);
  const rest = bus.publish('http', workload.traffic(T1, 8));
  await victim.kill();
  await rest;
  const survivors = children.filter((c) => c !== victim);

  // Rounds go on (one clock step each) until the group expelled the victim and the
  // survivors own every partition, rebuilt, with every request handled.
  let now = T1 + 10_000;
  const killedAt = now;
  const group = `${ns.config.kafka.topicPrefix}${AUTOSCALE_HTTP_GROUP}`;
  await eventually(
    'the survivors own every partition, rebuilt, and every request is handled',
    async () => {
      await round(survivors, ++now);
      if (!settled(await ownerships(survivors), partitions)) return undefined;
      const [ends, committed] = await Promise.all([bus.endOffsets(bus.topic('http')), bus.committedOffsets(group, bus.topic('http'))]);
      return ends.every((e) => e.high === e.low || committed.find((x) => x.partition === e.partition)?.offset === e.high) ? true : undefined;
    },
    180_000,
  );
  await round(survivors, ++now);
  const T2 = now;
  for (const s of survivors) assert.equal(await s.stop(), 0, `${s.name} stops cleanly on SIGTERM`);

  // What the autoscale topic holds.
  const signals: AutoscaleSignal[] = [];
  await readAll(bus, 'autoscale', (batch) => {
    for (const m of batch) signals.push(m.event);
    return Promise.resolve();
  });
  const periods = ownerPeriods(signals);
  assert.equal(signals.length, rounds.flat().reduce((n, r) => n + r.signals.length, 0), 'every signal an instance published, once');
  // Each round: every app by one instance at most.
  const checked = rounds.map((r) => byApp(r));
  const at1 = checked[0]!;
  const atEnd = checked.at(-1)!;
  assert.deepEqual([...at1.keys()].sort(), APP_KEYS, 'every app signalled by one of 3 instances');
  assert.deepEqual([...atEnd.keys()].sort(), APP_KEYS, 'every app signalled after the kill, each by one survivor');
  assert.deepEqual([...periods.keys()].sort(), APP_KEYS);
  for (const app of APP_KEYS) {
    const list = periods.get(app)!;
    const last = list.at(-1)!;
    assert.notEqual(last.node, victim.name, `${app}: last owner is a survivor`);
    assert.ok(last.last > killedAt, `${app}: signalled by ${last.node} after the kill`);
    if (victimApps.includes(app)) {
      const lost = list.findIndex((p) => p.node === victim.name);
      assert.ok(lost >= 0 && lost < list.length - 1, `${app}: ${victim.name}'s period is followed by a survivor's`);
      assert.ok(list[lost + 1]!.since >= list[lost]!.last && list[lost + 1]!.since >= killedAt, `${app}: taken over after the kill`);
    }
  }

  // The same workload through one instance, at the same clock values.
  let refNow = T1 - 1;
  const one = await startAutoscale({ bus: await newBus(), logger: ns.logger, registry: createRegistry(false), config: ns.config.autoscale, clock: () => refNow, node: 'node-1', labelPrefix: ns.config.labelPrefix, autoTick: false });
  try {
    assert.equal(one.ownership().owned.length, partitions, 'one instance owns every partition');
    await one.ready();
    refNow = T1;
    const ref1 = byApp([{ name: 'one', signals: await one.tick() }]);
    refNow = T2;
    const ref2 = byApp([{ name: 'one', signals: await one.tick() }]);
    for (const app of APP_KEYS) {
      assert.deepEqual(essence(at1.get(app)!.signal), essence(ref1.get(app)!.signal), `${app} at T1: 3 instances = 1 instance`);
      assert.deepEqual(essence(atEnd.get(app)!.signal), essence(ref2.get(app)!.signal), `${app} after the kill: 2 survivors = 1 instance`);
    }
  } finally {
    await one.stop();
  }
  ns.logger.info({ victim: victim.name, victimApps: victimApps.length, signals: signals.length, periods: [...periods.values()].reduce((n, l) => n + l.length, 0) }, 'autoscale kill run');
});
