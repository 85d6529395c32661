/**
 * Issue 13, the consumer side: a subscription never stops in silence. Its consumer stops
 * fetching (paused out from under the handler, as one left behind by a broker restart)
 * while messages keep coming: the watchdog logs an error naming group, topic, partitions
 * and lag, counts it on `/metrics`, `/healthz` says degraded with the reason, the consumer
 * is rebuilt, and every message is handled exactly once. The shared broker is never
 * touched: the topics and group are this test's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRuntime } from '../lib/runtime.js';
import { stopFetching } from '../lib/bus/kafkajs.js';
import { judge, stallOf } from '../lib/bus/watchdog.js';
import type { LogLine } from '../schemas/events.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { eventually, namespace } from './helpers/env.js';
import { capturingLogger } from './helpers/logs.js';

const line = (seq: number): LogLine => ({ ...SAMPLE_EVENTS.logs, event_id: `wd-${seq}`, seq, container_id: `c${seq % 5}` });

test('the rule: only an idle subscription is judged, and only its lag makes a stall', () => {
  assert.equal(judge(10_000, { busy: true, lastBatchAt: 0 }, 3000), 'active');
  assert.equal(judge(10_000, { busy: false, lastBatchAt: 8000 }, 3000), 'active');
  assert.equal(judge(10_000, { busy: false, lastBatchAt: 7000 }, 3000), 'check');
  assert.equal(stallOf('g', 0, [{ topic: 't', partition: 0, lag: 0 }], 5000), undefined);
  const s = stallOf('g', 1000, [{ topic: 't', partition: 2, lag: 3 }, { topic: 't', partition: 0, lag: 4 }, { topic: 't', partition: 1, lag: 0 }], 6000)!;
  assert.equal(s.lag, 7);
  assert.deepEqual(s.partitions.map((p) => p.partition), [2, 0]);
  assert.equal(s.reason, 'consumer group g: 7 message(s) waiting on t [0, 2] and no batch delivered for 5 s');
});

test('a consumer that stops fetching while messages come is logged, counted, reported degraded, rebuilt, and every message is handled once', async () => {
  const ns = namespace({ LOGMETER_CONSUMER_STALL_SECONDS: '2' });
  const { logger, lines } = capturingLogger();
  const rt = await startRuntime(ns.config, { clickhouse: false, logger });
  const base = `http://${(await rt.http.listen()).replace(/^http:\/\//, '')}`;
  const metric = async (name: string) => {
    const text = await (await fetch(`${base}/metrics`)).text();
    return text.split('\n').filter((l) => l.startsWith(`${name}{`)).reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  };
  const health = async () => {
    const res = await fetch(`${base}/healthz`);
    return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
  };
  const handled = new Map<number, number>();
  let stalled = false;
  let openGate!: () => void;
  const gate = new Promise<void>((r) => (openGate = r));
  const sub = await rt.bus.subscribe({
    group: 'watchdog',
    topics: ['logs'],
    concurrency: 2,
    handle: async (batch) => {
      // The first batch after the stall waits until the test has seen /healthz degraded.
      if (stalled) await gate;
      for (const m of batch) handled.set(m.event.seq, (handled.get(m.event.seq) ?? 0) + 1);
    },
  });
  const group = sub.group;
  const topic = rt.bus.topic('logs');
  const committedAll = async () => {
    const [ends, committed] = await Promise.all([rt.bus.endOffsets(topic), rt.bus.committedOffsets(group, topic)]);
    return ends.every((e) => Number(e.high) === Number(e.low) || committed.find((c) => c.partition === e.partition)?.offset === e.high) ? true : undefined;
  };
  try {
    // Before: messages flow and are committed; healthy.
    await rt.bus.publish('logs', Array.from({ length: 50 }, (_, i) => ({ event: line(i + 1) })));
    await eventually('the first 50 handled and committed', async () => (handled.size === 50 ? committedAll() : undefined), 60_000);
    assert.equal((await health()).status, 200);

    stopFetching(sub);
    stalled = true;
    await rt.bus.publish('logs', Array.from({ length: 150 }, (_, i) => ({ event: line(51 + i) })));
    const error = await eventually('the stall logged', async () => lines().find((l) => l.level === 50 && l.msg.startsWith('consumer stalled')), 60_000);
    assert.equal(error.group, group);
    assert.deepEqual(error.topics, [topic]);
    assert.equal(error.lag, 150);
    const partitions = error.partitions as Array<{ topic: string; partition: number; lag: number }>;
    assert.equal(partitions.reduce((s, p) => s + p.lag, 0), 150);
    assert.ok(partitions.length > 1 && partitions.every((p) => p.topic === topic && p.lag > 0));
    assert.match(error.msg, new RegExp(`consumer group ${group.replace(/\./g, '\\.')}: 150 message\\(s\\) waiting on ${topic.replace(/\./g, '\\.')} \\[`));

    const degraded = await health();
    assert.equal(degraded.status, 503);
    assert.equal(degraded.body.status, 'degraded');
    assert.match(degraded.body.checks.consumers ?? '', new RegExp(`^degraded: consumer group ${group.replace(/\./g, '\\.')}: 150 message\\(s\\) waiting`));
    assert.equal(await metric('logmeter_bus_consumer_stalls_total'), 1);

    openGate();
    await eventually('all 200 handled', async () => (handled.size === 200 ? committedAll() : undefined), 60_000);
    await eventually('healthy again', async () => ((await health()).status === 200 ? true : undefined), 30_000);
    assert.equal((await health()).body.checks.consumers, 'ok');
    assert.ok(lines().some((l) => l.msg === 'consumer rebuilt: rejoining the group from its committed offsets' && l.group === group));
    assert.ok(lines().some((l) => l.msg === 'consumer back in its group after a rebuild' && l.group === group));
    assert.ok(lines().some((l) => l.msg === 'consumer recovered: batches handled again' && l.group === group));
    assert.equal(await metric('logmeter_bus_consumer_stalls_total'), 1);
    assert.equal(await metric('logmeter_bus_consumer_restarts_total'), 1);
    assert.deepEqual([...handled.entries()].filter(([, n]) => n !== 1), [], 'no message handled twice');
    assert.deepEqual([...handled.keys()].sort((a, b) => a - b), Array.from({ length: 200 }, (_, i) => i + 1));
  } finally {
    openGate();
    await sub.stop();
    await rt.close();
    ns.cleanup();
  }
});

test('a rebuilt consumer tells its partitions as revoked before the new one is assigned them, and replays them once', async () => {
  const ns = namespace({ LOGMETER_CONSUMER_STALL_SECONDS: '2' });
  const { logger, lines } = capturingLogger();
  const rt = await startRuntime(ns.config, { clickhouse: false, logger });
  const handled = new Map<number, number>();
  /** Non-empty revocations and assignments, in order, each as its sorted partitions. */
  const told: string[] = [];
  const tell = (what: string, ps: readonly { partition: number }[]) => {
    if (ps.length > 0) told.push(`${what} ${ps.map((p) => p.partition).sort((a, b) => a - b).join(',')}`);
  };
  const sub = await rt.bus.subscribe({
    group: 'watchdog-replay',
    topics: ['logs'],
    // Every partition this member gets is read again from its first message.
    replayFrom: () => 0,
    onRevoked: (ps) => tell('revoked', ps),
    onAssigned: (ps) => tell('assigned', ps),
    handle: (batch) => {
      for (const m of batch) handled.set(m.event.seq, (handled.get(m.event.seq) ?? 0) + 1);
      return Promise.resolve();
    },
  });
  try {
    const all = (await rt.bus.endOffsets(rt.bus.topic('logs'))).map((p) => p.partition).sort((a, b) => a - b).join(',');
    await rt.bus.publish('logs', Array.from({ length: 50 }, (_, i) => ({ event: line(i + 1) })));
    await eventually('the first 50 handled', () => Promise.resolve(handled.size === 50 ? true : undefined), 60_000);
    assert.deepEqual(told, [`assigned ${all}`]);

    stopFetching(sub);
    await rt.bus.publish('logs', Array.from({ length: 150 }, (_, i) => ({ event: line(51 + i) })));
    await eventually('all 200 handled after the rebuild', () => Promise.resolve(handled.size === 200 ? true : undefined), 90_000);
    assert.ok(lines().some((l) => l.msg === 'consumer rebuilt: rejoining the group from its committed offsets'));
    assert.deepEqual(told, [`assigned ${all}`, `revoked ${all}`, `assigned ${all}`]);
    // The replay gives the new consumer every message once: the 50 before the stall a second time.
    assert.deepEqual([...handled.entries()].filter(([seq, n]) => n !== (seq <= 50 ? 2 : 1)), []);
  } finally {
    await sub.stop();
    await rt.close();
    ns.cleanup();
  }
});
