/**
 * The routes' fast lane (issue 15): lifecycle events leave the collector on a producer
 * of their own, and the route processor reads lifecycle in a consumer (group) of its own
 * and publishes on its own producer. What must not change: every lifecycle event reaches
 * the topic exactly once, log lines still go through the shared bus, and the route set
 * of a new container is on the routes topic exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { EventBus, RawBatch } from '../lib/bus/bus.js';
import type { HttpRequest, LifecycleEvent, RouteSet } from '../schemas/events.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { createRegistry } from '../lib/metrics.js';
import { startRouteProcessor } from '../processors/routes/processor.js';
import { collectorFixture } from './helpers/collector.js';
import { runContainer } from './helpers/docker.js';
import { eventually } from './helpers/env.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';
import { collect } from './helpers/kafka.js';

const { ns, prefix, bus, startCollector } = await collectorFixture();

/** `bus` with the messages sent through its publishRawBatch counted by topic (the shared producer's traffic). */
function counted(): { bus: EventBus; sent: Map<string, number> } {
  const sent = new Map<string, number>();
  const wrapped = new Proxy(bus, {
    get(target, prop, receiver) {
      if (prop === 'publishRawBatch') {
        return (batches: readonly RawBatch[]) => {
          for (const b of batches) sent.set(b.topic, (sent.get(b.topic) ?? 0) + b.messages.length);
          return target.publishRawBatch(batches);
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { bus: wrapped, sent };
}

const ofContainer = (id: string) => (e: LifecycleEvent) => e.container_id === id;

test('lifecycle events on their own producer: each on the topic exactly once, none through the shared producer, log lines still through it', async () => {
  const shared = counted();
  const collector = startCollector({}, 'own-lane', { bus: shared.bus });
  await collector.start();
  try {
    assert.notEqual(collector.lifecycleSender, collector.sender);
    const c = await runContainer({ prefix, tenant: 'acme', app: 'lane', script: 'echo lane-line-1; echo lane-line-2; sleep 1' });
    const events = (await collect(bus, 'lifecycle', (evs) => evs.filter(ofContainer(c.id)).some((e) => e.action === 'die'), 60_000)).filter(ofContainer(c.id));
    const logs = (await collect(bus, 'logs', (evs) => evs.filter((e) => e.container_id === c.id).length >= 2, 60_000)).filter((e) => e.container_id === c.id);
    // What Docker reported for it: create, start, die (a container that exits by itself); each once.
    const actions = events.map((e) => e.action);
    for (const a of ['create', 'start', 'die']) assert.equal(actions.filter((x) => x === a).length, 1, `${a} once in ${actions.join(',')}`);
    assert.equal(new Set(events.map((e) => e.event_id)).size, events.length, 'no event twice');
    assert.deepEqual(logs.map((e) => e.line.toString('utf8')), ['lane-line-1', 'lane-line-2']);
    assert.equal(shared.sent.get(bus.topic('lifecycle')) ?? 0, 0, 'no lifecycle event through the shared producer');
    assert.ok((shared.sent.get(bus.topic('logs')) ?? 0) >= 2, 'log lines through the shared producer');
  } finally {
    await collector.stop();
  }
});

test('lifecycleBus: the shared bus puts lifecycle events back on the one producer (exactly once too)', async () => {
  const shared = counted();
  const collector = startCollector({}, 'one-lane', { bus: shared.bus, lifecycleBus: shared.bus });
  await collector.start();
  try {
    assert.equal(collector.lifecycleSender, collector.sender);
    const c = await runContainer({ prefix, tenant: 'acme', app: 'onelane', script: 'echo one; sleep 1' });
    const events = (await collect(bus, 'lifecycle', (evs) => evs.filter(ofContainer(c.id)).some((e) => e.action === 'die'), 60_000)).filter(ofContainer(c.id));
    for (const a of ['create', 'start', 'die']) assert.equal(events.filter((e) => e.action === a).length, 1, a);
    await eventually('the events counted on the shared producer', async () => ((shared.sent.get(bus.topic('lifecycle')) ?? 0) >= 3 ? true : undefined));
  } finally {
    await collector.stop();
  }
});

test('route processor: lifecycle and http in consumer groups of their own, the new route set on the topic exactly once', async () => {
  const registry = createRegistry(false);
  const group = `lanes-${Date.now()}`;
  const processor = await startRouteProcessor({ bus, logger: ns.logger, registry, node: 'test-node', stateDir: path.join(ns.dataDir, 'lanes-routes'), group, config: { labelPrefix: prefix } });
  try {
    const host = `lane-${ns.id}.test`;
    const id = `${'ab'.repeat(6)}${'0'.repeat(52)}`;
    const start: LifecycleEvent = {
      event_id: `${ns.id}-lane-start`,
      tenant: 'acme',
      app: 'lane',
      node: 'test-node',
      container_id: id,
      container_name: 'lane-1',
      ts: Date.now(),
      action: 'start',
      actor: 'docker',
      exit_code: null,
      health: null,
      image: BASE_IMAGE,
      labels: { [`${prefix}tenant`]: 'acme', [`${prefix}app`]: 'lane', [`${prefix}lb-host`]: host, [`${prefix}lb-port`]: '80' },
      networks: [],
      ports: [{ container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: 18_080 }],
      limits: { nano_cpus: 0, memory_bytes: 0, pids: 0 },
      message: null,
      attributes: {},
    };
    await bus.publish('lifecycle', [{ event: start }]);
    const request: HttpRequest = { ...SAMPLE_EVENTS.http, event_id: `${ns.id}-lane-http`, container_id: id, host, backend: host, server: null, status: 200, ts: Date.now() };
    await bus.publish('http', [{ event: request }]);

    const full = (g: string) => `${bus.config.topicPrefix}${g}`;
    const committed = async (g: string, topic: 'lifecycle' | 'http') => (await bus.committedOffsets(full(g), bus.topic(topic))).filter((o) => Number(o.offset) > 0).length;
    const { lifecycle, http } = processor.groups;
    assert.deepEqual(processor.groups, { owners: group, lifecycle: `${group}.lifecycle.${processor.instance}`, http: `${group}-http.${processor.instance}` });
    await eventually('lifecycle committed by the lifecycle group', async () => ((await committed(lifecycle, 'lifecycle')) > 0 ? true : undefined));
    await eventually('http committed by the http group', async () => ((await committed(http, 'http')) > 0 ? true : undefined));
    assert.equal(await committed(lifecycle, 'http'), 0, 'the lifecycle group does not read http');
    assert.equal(await committed(http, 'lifecycle'), 0, 'the http group does not read lifecycle');

    const sets = (await collect(bus, 'routes', (evs) => evs.some((s) => s.host === host), 60_000)).filter((s: RouteSet) => s.host === host);
    assert.equal(sets.length, 1, 'one set for the new host');
    assert.deepEqual(
      sets[0]!.upstreams.map((u) => [u.container_id, u.address, u.port]),
      [[id, '127.0.0.1', 18_080]],
    );
    assert.deepEqual(processor.table.current().find((h) => h.host === host)?.upstreams.map((u) => u.container_id), [id]);
  } finally {
    await processor.stop();
  }
});
