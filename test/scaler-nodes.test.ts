/**
 * The scaler on several nodes (`scaler.severalNodes`), on real services: two private
 * Docker engines (test/helpers/nodes.ts, PLACEMENT_LAYOUT: /tmp/logmeter-place-nodes,
 * bridges lmplace1/lmplace2), a collector and a scaler per engine with its own
 * LOGMETER_NODE and DOCKER_HOST, the shared Kafka and Redis under this test's prefix.
 * Each node's cap is 2 tenant containers. The tenant's app `shop` runs one own container
 * on node-a (opted in by its label); signals are published on the autoscale topic.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Redis } from 'ioredis';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, EventMap, LifecycleEvent, WindowStats } from '../schemas/events.js';
import type { EventBus, Subscription } from '../lib/bus/bus.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import type { Collector } from '../ingest/collector.js';
import { scalerConfigSchema } from '../processors/scaler/config.js';
import { listReplicas } from '../processors/scaler/docker.js';
import { scaleJobId } from '../processors/scaler/signal.js';
import { appKey } from '../processors/scaler/state.js';
import { startScaler, type Scaler } from '../processors/scaler/processor.js';
import { eventually, namespace } from './helpers/env.js';
import { PLACEMENT_LAYOUT, nodeConfig, startNodeCollector, startNodes, stopNodes, type DockerNode } from './helpers/nodes.js';

const ns = namespace();
const prefix = `${ns.id}.`;
const TENANT = 'acme';
const APP = 'shop';
const CAP = 2;
const DRAIN_MS = 500;
const GREETING = 'hello from the template';
const CMD = ['sh', '-c', 'echo "shop up: $GREETING"; exec httpd -f -p 80 -h /www'];
const LABELS = { [`${prefix}tenant`]: TENANT, [`${prefix}app`]: APP, [`${prefix}autoscale.max`]: '4', [`${prefix}lb-host`]: 'shop.acme.test', [`${prefix}lb-port`]: '80', 'com.example.tier': 'web' };

const codec = await AvroCodec.create(new ManifestSource());
const buses: EventBus[] = [];
let nodes: DockerNode[] = [];
const collectors: Collector[] = [];
const scalers: Scaler[] = [];
const registries = [createRegistry(false), createRegistry(false)];
/** Each node's bus (its LOGMETER_NODE) and what its scaler is started with. */
const nodeBuses: EventBus[] = [];
let scalerConfig: ReturnType<typeof scalerConfigSchema.parse>;
let bus: EventBus;
const subs: Subscription[] = [];
/** Lifecycle events once per id, in arrival order. */
const lifecycle = new Map<string, LifecycleEvent>();
const logs: Array<EventMap['logs']> = [];
let nodeA: DockerNode;
let nodeB: DockerNode;

const ws: WindowStats = { window_ms: 60_000, requests: 600, rate_rps: 10, p50_ms: 20, p95_ms: 40, p99_ms: 60, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0.4 };
let version = 0;
async function recommend(n: number): Promise<AutoscaleSignal> {
  version += 1;
  const s: AutoscaleSignal = { event_id: `signal-${version}`, tenant: TENANT, app: APP, node: 'processors', container_id: '', ts: Date.now(), version, host: 'shop.acme.test', stable: ws, panic: ws, current_replicas: 0, recommended_replicas: n, mode: 'stable', reason: `test recommends ${n}` };
  await bus.publish('autoscale', [{ event: s }]);
  return s;
}

const containers = (n: DockerNode) => listReplicas(n.docker, prefix, TENANT, APP);
const scalerEvents = (pred: (e: LifecycleEvent) => boolean = () => true) => [...lifecycle.values()].filter((e) => e.actor === 'scaler' && e.app === APP && pred(e));
/**
 * Events in the order the scalers made them: by time, then by their place in a loop ("(2 of 3)").
 * Events of different containers are keyed apart (different partitions): their arrival order says nothing.
 */
function made(events: readonly LifecycleEvent[]): LifecycleEvent[] {
  const nth = (e: LifecycleEvent) => Number(/\((\d+) of \d+/.exec(e.message ?? '')?.[1] ?? 0);
  return [...events].sort((a, b) => a.ts - b.ts || nth(a) - nth(b));
}
const ofSignal = (s: AutoscaleSignal, action: string) => (e: LifecycleEvent) => e.attributes.signal_version === String(s.version) && e.action === action;

/** Waits until node-a has `a` and node-b `b` containers of the app running; returns both lists (newest first). */
async function waitForPlacement(a: number, b: number) {
  return eventually(
    `shop: ${a} on node-a, ${b} on node-b`,
    async () => {
      const [onA, onB] = await Promise.all([containers(nodeA), containers(nodeB)]);
      return onA.length === a && onB.length === b ? { onA, onB } : undefined;
    },
    90_000,
  );
}
async function waitForEvents(what: string, pred: (e: LifecycleEvent) => boolean, n: number): Promise<LifecycleEvent[]> {
  return eventually(what, () => Promise.resolve(scalerEvents(pred).length >= n ? scalerEvents(pred) : undefined), 90_000);
}
/** Waits until both nodes' reports say what Docker says (running tenant containers per node). */
async function waitForReports(a: number, b: number): Promise<void> {
  await eventually(`reports: node-a ${a}, node-b ${b} running`, async () => {
    const reports = await scalers[0]!.cluster!.reports();
    const running = (node: string) => reports.find((r) => r.node === node)?.running;
    return running('node-a') === a && running('node-b') === b ? true : undefined;
  });
}
async function metricTotal(registry: (typeof registries)[number], name: string, label?: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  return (await m.get()).values.filter((v) => !label || Object.entries(label).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

before(async () => {
  nodes = await startNodes(['node-a', 'node-b'], ns.logger, PLACEMENT_LAYOUT);
  [nodeA, nodeB] = nodes as [DockerNode, DockerNode];
  const newBus = (config = ns.config) => {
    const b = busFor(config, codec, ns.logger);
    buses.push(b);
    return b;
  };
  bus = newBus();
  await bus.ensureTopics();
  subs.push(await bus.subscribe({ group: 'test-lifecycle', topics: ['lifecycle'], handle: async (b) => void b.forEach((m) => lifecycle.set(m.event.event_id, m.event)) }));
  subs.push(await bus.subscribe({ group: 'test-logs', topics: ['logs'], handle: async (b) => void logs.push(...b.map((m) => m.event)) }));
  for (const n of nodes) {
    collectors.push(await startNodeCollector(n, { env: ns.env, labelPrefix: prefix, stateDir: path.join(ns.dataDir, `collector-${n.name}`), bus: newBus(), codec, logger: ns.logger }));
  }
  // The app as the tenant deployed it, on node-a.
  const own = await nodeA.docker.createContainer({
    Image: BASE_IMAGE,
    name: `shop-${ns.id}-own`,
    Cmd: CMD,
    Env: [`GREETING=${GREETING}`],
    Labels: LABELS,
    ExposedPorts: { '80/tcp': {} },
    HostConfig: { Init: true, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await own.start();
  scalerConfig = scalerConfigSchema.parse({ labelPrefix: prefix, severalNodes: true, nodeReportMs: 500, maxContainersPerNode: CAP, cooldownMs: { up: 0, down: 0 }, drainMs: DRAIN_MS, stopTimeoutSeconds: 1, maxSignalAgeMs: 0, backoff: { delayMs: 200 } });
  for (const [i, n] of nodes.entries()) {
    const nodeBus = newBus(nodeConfig(ns.env, n));
    assert.equal(nodeBus.config.node, n.name);
    nodeBuses.push(nodeBus);
    scalers.push(await startScaler({ bus: nodeBus, docker: n.docker, redisUrl: ns.config.redis.url, logger: ns.logger, registry: registries[i]!, config: scalerConfig, prefix: ns.id }));
  }
});

after(async () => {
  for (const stop of [...scalers.map((s) => () => s.close()), ...collectors.map((c) => async () => {
    await c.stop();
  }), ...subs.map((s) => () => s.stop())]) {
    await Promise.resolve()
      .then(stop)
      .catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
  }
  await stopNodes(nodes);
  const client = new Redis(ns.config.redis.url, { maxRetriesPerRequest: null });
  try {
    for (const s of scalers) await s.queue.obliterate({ force: true }).catch(() => undefined);
    let cursor = '0';
    const keys: string[] = [];
    do {
      const [next, found] = await client.scan(cursor, 'MATCH', `${ns.id}:*`, 'COUNT', 1000);
      keys.push(...found);
      cursor = next;
    } while (cursor !== '0');
    if (keys.length > 0) await client.del(...keys);
  } finally {
    await client.quit();
    for (const b of buses) await b.close();
    ns.cleanup();
  }
});

test('each node has its own queue and reports its room and the app', async () => {
  assert.deepEqual(
    scalers.map((s) => s.queue.name),
    [`${prefix}scaler.node-a`, `${prefix}scaler.node-b`],
  );
  await waitForReports(1, 0);
  const reports = await scalers[1]!.cluster!.reports();
  assert.deepEqual(
    reports.map((r) => ({ node: r.node, running: r.running, cap: r.cap, free: r.free })),
    [
      { node: 'node-a', running: 1, cap: CAP, free: 1 },
      { node: 'node-b', running: 0, cap: CAP, free: 2 },
    ],
  );
  const shop = reports[0]!.apps[appKey(TENANT, APP)]!;
  assert.deepEqual({ running: shop.running, own: shop.own, optedIn: shop.optedIn, replicas: shop.replicas }, { running: 1, own: 1, optedIn: true, replicas: 0 });
  assert.deepEqual(shop.template.cmd, CMD);
});

test('1 → 2: the replica goes to node-b (most room), made from the template node-a reported; its logs arrive tagged node-b', async () => {
  const s = await recommend(2);
  const { onA, onB } = await waitForPlacement(1, 1);
  const own = onA[0]!.info;
  const replica = onB[0]!.info;
  assert.equal(replica.Config.Image, BASE_IMAGE);
  assert.deepEqual(replica.Config.Cmd, CMD, 'the template\'s command');
  assert.ok(replica.Config.Env.includes(`GREETING=${GREETING}`), 'the template\'s env');
  assert.deepEqual(replica.Config.Labels, { ...own.Config.Labels, [`${prefix}scaled-by`]: 'scaler' }, 'the template\'s labels, and the scaler\'s');
  assert.equal(replica.NetworkSettings.Ports['80/tcp']?.[0]?.HostIp, '127.0.0.1', 'published as the template is');

  const [up] = await waitForEvents('scale_up on node-b', ofSignal(s, 'scale_up'), 1);
  assert.equal(up!.container_id, replica.Id);
  assert.equal(up!.node, 'node-b', 'published by node-b\'s scaler');
  assert.match(up!.message ?? '', /^scaled up shop 1 → 2: started shop-acme-[0-9a-f]{6} \(1 of 1 on node-b\)/);

  const line = await eventually('the replica\'s line on the logs topic', () => Promise.resolve(logs.find((e) => e.container_id === replica.Id && e.line.toString() === `shop up: ${GREETING}`)), 90_000);
  assert.equal(line.node, 'node-b');
  assert.equal(line.tenant, TENANT);
  assert.equal(line.app, APP);
  const ownLine = await eventually('the own container\'s line', () => Promise.resolve(logs.find((e) => e.container_id === own.Id)), 90_000);
  assert.equal(ownLine.node, 'node-a');
});

test('no node with room: the rest is refused for the cap, reported once', async () => {
  // Another app of the tenant fills node-b (not opted in: the scaler leaves it alone).
  const blog = await nodeB.docker.createContainer({ Image: BASE_IMAGE, name: `blog-${ns.id}`, Cmd: ['sleep', '3600'], Labels: { [`${prefix}tenant`]: TENANT, [`${prefix}app`]: 'blog' }, HostConfig: { Init: true } });
  await blog.start();
  await waitForReports(1, 2);

  const s = await recommend(4);
  await waitForPlacement(2, 1);
  const [refused] = await waitForEvents('scale_refused (cap)', ofSignal(s, 'scale_refused'), 1);
  assert.equal(refused!.attributes.refusal, 'cap');
  assert.equal(refused!.message, 'scale up shop 3 → 4 refused: node cap of 2 tenant containers reached on each of 2 nodes');
  assert.equal(refused!.node, 'node-a', 'refused where the job found no more room');
  await waitForEvents('scale_up on node-a', ofSignal(s, 'scale_up'), 1);

  // The same refusal again (a new signal, the same figures): counted, not published.
  const again = await recommend(4);
  const jobId = scaleJobId(TENANT, APP, 4, again.version);
  const job = await eventually('the second job done on node-a', async () => {
    const j = await scalers[0]!.queue.getJob(jobId);
    return j && (await j.getState()) === 'completed' ? j : undefined;
  }, 90_000);
  assert.equal(job.returnvalue.action, 'scale_refused');
  assert.equal(await metricTotal(registries[0]!, 'logmeter_scaler_refusals_total', { reason: 'cap' }), 2, 'both refusals counted');
  // Everything node-a published for the app before this marker has arrived once the marker has (one key, one partition).
  const marker = { ...refused!, event_id: `marker-${ns.id}`, action: 'test_marker', actor: 'test', attributes: {} };
  await bus.publish('lifecycle', [{ event: marker, key: `${TENANT}/${APP}` }]);
  await eventually('the marker', () => Promise.resolve(lifecycle.has(marker.event_id) ? true : undefined));
  assert.equal(scalerEvents((e) => e.action === 'scale_refused').length, 1, 'one refusal published');
  assert.deepEqual(scalerEvents(ofSignal(s, 'scale_up')).map((e) => e.node), ['node-a'], 'node-a took the one place it had');

  await blog.remove({ force: true });
  await waitForReports(2, 1);
});

test('3 → 1: the newest replica (node-a) is drained and removed first, the rest handed on to node-b', async () => {
  const { onA, onB } = await waitForPlacement(2, 1);
  const newest = onA.find((r) => r.info.Config.Labels[`${prefix}scaled-by`] === 'scaler')!;
  const older = onB[0]!;
  assert.ok(newest.createdNs > older.createdNs);
  const s = await recommend(1);
  await waitForPlacement(1, 0);
  const downs = made(await waitForEvents('two scale_down', ofSignal(s, 'scale_down'), 2));
  const drains = made(await waitForEvents('two drains', ofSignal(s, 'drain'), 2));
  assert.deepEqual(drains.map((e) => [e.container_id, e.node]), [[newest.id, 'node-a'], [older.id, 'node-b']], 'drained newest first, each by its node');
  assert.deepEqual(downs.map((e) => [e.container_id, e.node]), [[newest.id, 'node-a'], [older.id, 'node-b']], 'removed newest first');
  const order = [...lifecycle.values()].map((e) => `${e.action}:${e.container_id}`);
  for (const id of [newest.id, older.id]) assert.ok(order.indexOf(`drain:${id}`) < order.indexOf(`scale_down:${id}`), 'drain before scale_down');
  assert.deepEqual(new Set(downs.map((e) => e.attributes.job)), new Set([drains[0]!.attributes.job]), 'one job, handed on: its first id on every event');
  await assert.rejects(nodeA.docker.getContainer(newest.id).inspect(), /no such container/i);
  await assert.rejects(nodeB.docker.getContainer(older.id).inspect(), /no such container/i);
  assert.equal((await containers(nodeA))[0]!.info.Config.Labels[`${prefix}scaled-by`], undefined, 'the tenant\'s own container stays');
});

test('1 → 4 is split over both nodes (node-b first, its cap, the rest on node-a), and back to 1', async () => {
  await waitForReports(1, 0);
  const up = await recommend(4);
  const { onA, onB } = await waitForPlacement(2, 2);
  const ups = made(await waitForEvents('three scale_up', ofSignal(up, 'scale_up'), 3));
  assert.deepEqual(ups.map((e) => e.node), ['node-b', 'node-b', 'node-a'], 'node-b had 2 places, node-a the last one');
  assert.deepEqual(ups.map((e) => e.attributes.to), ['3', '3', '4']);
  assert.equal(new Set(ups.map((e) => e.attributes.job)).size, 1, 'one job, split');
  assert.equal(scalerEvents(ofSignal(up, 'scale_refused')).length, 0, 'a split is not a refusal');
  const started = [...onB.map((r) => r.id), ...onA.filter((r) => r.info.Config.Labels[`${prefix}scaled-by`] === 'scaler').map((r) => r.id)];
  assert.deepEqual([...ups.map((e) => e.container_id)].sort(), [...started].sort());

  const down = await recommend(1);
  await waitForPlacement(1, 0);
  const downs = made(await waitForEvents('three scale_down', ofSignal(down, 'scale_down'), 3));
  assert.deepEqual(downs.map((e) => e.node), ['node-a', 'node-b', 'node-b'], 'the newest (node-a\'s) first');
  assert.deepEqual(downs.map((e) => e.container_id), [...ups.map((e) => e.container_id)].reverse(), 'newest first over both nodes');
  await waitForReports(1, 0);
});

test('a silent node keeps the app: replicas elsewhere stay while it is silent; once it reports again, the tenant\'s removal wins', async () => {
  await recommend(2);
  const { onA, onB } = await waitForPlacement(1, 1);
  const replica = onB[0]!;
  // node-a's scaler stops (its report withdrawn: node-a is silent), and meanwhile the tenant removes its own container there.
  await scalers[0]!.close();
  await nodeA.docker.getContainer(onA[0]!.id).remove({ force: true });
  await scalers[1]!.sweep();
  assert.deepEqual((await containers(nodeB)).map((r) => r.id), [replica.id], 'nobody knows what node-a runs: the replica stays');

  // node-a's scaler is back: it reports no container of the app, so the app is removed by its tenant.
  scalers[0] = await startScaler({ bus: nodeBuses[0]!, docker: nodeA.docker, redisUrl: ns.config.redis.url, logger: ns.logger, registry: createRegistry(false), config: scalerConfig, prefix: ns.id });
  await scalers[1]!.sweep();
  await waitForPlacement(0, 0);
  const [down] = await waitForEvents('the replica removed', (e) => e.action === 'scale_down' && e.container_id === replica.id, 1);
  assert.equal(down!.node, 'node-b');
  assert.match(down!.message ?? '', /the tenant stopped or removed the app's own containers$/);
});
