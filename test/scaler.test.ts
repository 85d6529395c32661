import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, LifecycleEvent, WindowStats } from '../schemas/events.js';
import type { Subscription } from '../lib/bus/bus.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { scalerConfigSchema } from '../processors/scaler/config.js';
import { createdNanos, listReplicas, replicaSpec, type Replica } from '../processors/scaler/docker.js';
import { clampTarget, planScale, type PlanInput } from '../processors/scaler/plan.js';
import { appKey } from '../processors/scaler/state.js';
import { startScaler, type Scaler } from '../processors/scaler/processor.js';
import { latestPerApp, scaleJobId, signalStep, staleAge } from '../processors/scaler/signal.js';
import { refusalReport } from '../processors/scaler/report.js';
import { eventually, namespace } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';

// ---------------------------------------------------------------------------------------------
// The rules alone (no services).

const base: PlanInput = { current: 1, own: 1, requested: 3, nodeContainers: 1, maxContainersPerNode: 10, cooldownMs: { up: 30_000, down: 120_000 }, lastChange: undefined, now: 1_000_000, jobId: 'j2' };

test('plan: clamps to [1, cap], then cooldowns per direction, then the node cap', () => {
  assert.equal(clampTarget(0, 10), 1);
  assert.equal(clampTarget(-3, 10), 1);
  assert.equal(clampTarget(25, 10), 10);
  assert.equal(clampTarget(2.6, 10), 3);
  assert.deepEqual(planScale({ ...base, requested: 1 }), { kind: 'none', from: 1, to: 1 });
  assert.deepEqual(planScale({ ...base, requested: 0 }), { kind: 'none', from: 1, to: 1 }, 'never below one replica');
  assert.deepEqual(planScale(base), { kind: 'up', from: 1, to: 3, add: 2, target: 3, cappedAt: undefined });

  const changed = (agoMs: number, job = 'j1') => ({ at: base.now - agoMs, job, direction: 'up' as const });
  assert.deepEqual(planScale({ ...base, lastChange: changed(10_000) }), { kind: 'refused', reason: 'cooldown', from: 1, to: 3, remainingMs: 20_000, cooldownMs: 30_000, sinceMs: 10_000 });
  assert.equal(planScale({ ...base, lastChange: changed(30_000) }).kind, 'up', 'the up cooldown is 30 s');
  assert.equal(planScale({ ...base, current: 3, requested: 1, lastChange: changed(60_000) }).kind, 'refused', 'the down cooldown is longer');
  assert.deepEqual(planScale({ ...base, current: 3, requested: 1, lastChange: changed(120_000) }), { kind: 'down', from: 3, to: 1, remove: 2 });
  assert.equal(planScale({ ...base, lastChange: changed(1, 'j2') }).kind, 'up', "a retried job is not held back by its own earlier attempt's change");

  assert.deepEqual(planScale({ ...base, requested: 6, nodeContainers: 8 }), { kind: 'up', from: 1, to: 3, add: 2, target: 6, cappedAt: 3 });
  assert.deepEqual(planScale({ ...base, nodeContainers: 10 }), { kind: 'refused', reason: 'cap', from: 1, to: 3, nodeContainers: 10, cap: 10 });
  assert.equal(planScale({ ...base, current: 3, requested: 2, nodeContainers: 99 }).kind, 'down', 'shrinking never looks at the cap');
});

test('signals: the last per app counts, stale ones are skipped, the clamped target names the job', () => {
  const ws: WindowStats = { window_ms: 60_000, requests: 0, rate_rps: 0, p50_ms: null, p95_ms: null, p99_ms: null, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0 };
  const sig = (app: string, recommended: number, version: number, ts = 1_000_000): AutoscaleSignal => ({ event_id: `s-${app}-${version}`, tenant: 'acme', app, node: 'n', container_id: '', ts, version, host: `${app}.test`, stable: ws, panic: ws, current_replicas: 1, recommended_replicas: recommended, mode: 'stable', reason: 'why' });
  assert.deepEqual(latestPerApp([sig('a', 2, 1), sig('b', 2, 1), sig('a', 3, 2)]).map((s) => `${s.app}${s.version}`), ['a2', 'b1']);
  assert.equal(staleAge(sig('a', 2, 1), 1_030_001, 30_000), 30_001);
  assert.equal(staleAge(sig('a', 2, 1), 1_030_000, 30_000), undefined);
  assert.equal(staleAge(sig('a', 2, 1), 9_000_000, 0), undefined, '0 = never stale');
  assert.deepEqual(signalStep(sig('a', 99, 7), 10, 10), { kind: 'in_sync', target: 10 }, 'clamped to the node cap first');
  const step = signalStep(sig('a b', 3, 7), 1, 10);
  assert.equal(step.kind, 'scale');
  assert.equal(step.kind === 'scale' && step.jobId, `${appKey('acme', 'a b')}|3|7`);
  assert.equal(scaleJobId('acme', 'a b', 3, 7), 'acme|a%20b|3|7');
  assert.deepEqual(step.kind === 'scale' && step.data, { tenant: 'acme', app: 'a b', host: 'a b.test', requested: 3, target: 3, signal_version: 7, signal_current: 1, signal_ts: 1_000_000, mode: 'stable', reason: 'why' });
});

test('refusals read the same every time: cooldown, cap, no template', () => {
  assert.deepEqual(refusalReport('shop', { kind: 'refused', reason: 'cooldown', from: 3, to: 1, remainingMs: 90_000, cooldownMs: 120_000, sinceMs: 30_000 }), {
    message: 'scale down shop 3 → 1 refused: cooldown: last change 30 s ago, scale-down cooldown 120 s (90 s left)',
    extra: { refusal: 'cooldown', cooldown_remaining_ms: '90000' },
    signature: 'cooldown|3|1',
  });
  assert.equal(refusalReport('shop', { kind: 'refused', reason: 'cap', from: 1, to: 3, nodeContainers: 10, cap: 10 }).message, 'scale up shop 1 → 3 refused: node cap of 10 tenant containers reached (10 running)');
  assert.deepEqual(refusalReport('shop', { kind: 'refused', reason: 'no_template', from: 0, to: 1 }).extra, { refusal: 'no_template' });
});

test('Docker creation times sort with their full precision (trailing zeros trimmed by Docker)', () => {
  assert.ok(createdNanos('2026-11-26T10:00:00.1Z') > createdNanos('2026-11-26T10:00:00.09Z'));
  assert.equal(createdNanos('2026-11-26T10:00:00.000000001Z') - createdNanos('2026-11-26T10:00:00Z'), 1n);
  assert.equal(createdNanos('2026-11-26T11:00:00.5+01:00'), createdNanos('2026-11-26T10:00:00.5Z'));
});

test('a declared template alone makes a complete replica; identity labels cannot be overridden', () => {
  const spec = replicaSpec({
    tenant: 'acme',
    app: 'blog',
    labelPrefix: 'lm.',
    name: 'blog-acme-abcdef',
    template: {
      image: 'blog:2',
      cmd: ['httpd', '-f'],
      env: { MODE: 'prod' },
      labels: { 'lm.tenant': 'evil', team: 'web' },
      networks: ['front', 'back'],
      publish: [{ containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1' }],
      memoryBytes: 64 << 20,
    },
  });
  assert.equal(spec.create.Image, 'blog:2');
  assert.deepEqual(spec.create.Cmd, ['httpd', '-f']);
  assert.deepEqual(spec.create.Env, ['MODE=prod']);
  assert.deepEqual(spec.create.Labels, { 'lm.tenant': 'acme', 'lm.app': 'blog', 'lm.scaled-by': 'scaler', team: 'web' });
  assert.equal(spec.create.HostConfig?.NetworkMode, 'front');
  assert.deepEqual(spec.create.NetworkingConfig, { EndpointsConfig: { front: {} } });
  assert.deepEqual(spec.extraNetworks, [{ name: 'back', aliases: [] }]);
  assert.deepEqual(spec.create.ExposedPorts, { '80/tcp': {} });
  assert.deepEqual(spec.create.HostConfig?.PortBindings, { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
  assert.equal(spec.create.HostConfig?.Memory, 64 << 20);
  assert.equal(spec.create.HostConfig?.Init, true, 'init by default, so stops are fast');
  assert.throws(() => replicaSpec({ tenant: 'acme', app: 'blog', labelPrefix: 'lm.', name: 'x', template: { cmd: ['x'] } }), /no replica of acme\/blog to copy/);
});

// ---------------------------------------------------------------------------------------------
// Against Kafka, Redis and Docker.

const ns = namespace();
const prefix = `${ns.id}.`;
const TENANT = 'acme';
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const netA = `${ns.id}-a`;
const netB = `${ns.id}-b`;
const HTTPD = ['httpd', '-f', '-p', '80', '-h', '/www'];
const DRAIN_MS = 1000;
const COOLDOWN_DOWN_MS = 60_000;
const CAP = 4;

/** The scaler's clock: real time plus what the test has skipped. */
let skippedMs = 0;
const clock = () => new Date(Date.now() + skippedMs);

const config = scalerConfigSchema.parse({
  labelPrefix: prefix,
  cooldownMs: { up: 0, down: COOLDOWN_DOWN_MS },
  maxContainersPerNode: CAP,
  drainMs: DRAIN_MS,
  stopTimeoutSeconds: 2,
  backoff: { delayMs: 200 },
  apps: {
    [`${TENANT}/blog`]: {
      image: BASE_IMAGE,
      cmd: HTTPD,
      labels: { [`${prefix}lb-host`]: 'blog.acme.test', [`${prefix}lb-port`]: '80' },
      networks: [netA],
      publish: [{ containerPort: 80 }],
    },
  },
});

let scaler: Scaler | undefined;
/** Every lifecycle event, with when this test received it. */
const lifecycle: Array<{ event: LifecycleEvent; receivedAt: number }> = [];
let reader: Subscription | undefined;
/** Docker `die` events of the test's containers, in ms since the epoch. */
const died = new Map<string, number>();
let dockerEvents: NodeJS.ReadableStream | undefined;

const ws: WindowStats = { window_ms: 60_000, requests: 600, rate_rps: 10, p50_ms: 20, p95_ms: 40, p99_ms: 60, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0.4 };
let version = 100;
function signal(app: string, recommended: number, current: number): AutoscaleSignal {
  version += 1;
  return { event_id: `signal-${app}-${version}`, tenant: TENANT, app, node: 'test-node', container_id: '', ts: clock().getTime(), version, host: `${app}.acme.test`, stable: ws, panic: ws, current_replicas: current, recommended_replicas: recommended, mode: 'stable', reason: `test recommends ${recommended}` };
}
const publish = (s: AutoscaleSignal) => bus.publish('autoscale', [{ event: s }]);
const replicas = (app: string) => listReplicas(docker, prefix, TENANT, app);
const scalerEvents = (pred: (e: LifecycleEvent) => boolean = () => true) => lifecycle.filter((l) => l.event.actor === 'scaler' && pred(l.event));
const ofSignal = (s: AutoscaleSignal, action?: string) => (e: LifecycleEvent) => e.attributes.signal_version === String(s.version) && (action === undefined || e.action === action);

async function waitForReplicas(app: string, n: number): Promise<Replica[]> {
  return eventually(`${n} ${app} replicas`, async () => {
    const r = await replicas(app);
    return r.length === n ? r : undefined;
  });
}
async function waitForEvents(what: string, pred: (e: LifecycleEvent) => boolean, n = 1) {
  return eventually(what, async () => {
    const got = scalerEvents(pred);
    return got.length >= n ? got : undefined;
  });
}
async function waitForJob(id: string, states: string[]): Promise<string> {
  return eventually(`job ${id} ${states.join('/')}`, async () => {
    const s = await scaler!.queue.getJobState(id);
    return states.includes(s) ? s : undefined;
  });
}
function hostPort(info: Docker.ContainerInspectInfo): number {
  return Number(info.NetworkSettings.Ports['80/tcp']?.[0]?.HostPort);
}
async function httpGet(port: number): Promise<string> {
  return eventually(`GET 127.0.0.1:${port}`, async () => (await fetch(`http://127.0.0.1:${port}/`)).text());
}
async function metricTotal(name: string): Promise<number> {
  const m = registry.getSingleMetric(name);
  return m ? (await m.get()).values.reduce((sum, v) => sum + v.value, 0) : 0;
}

let original: Docker.Container;
/** The signal of the first scale-up. */
let firstSignal: AutoscaleSignal;

before(async () => {
  await bus.ensureTopics();
  for (const name of [netA, netB]) await docker.createNetwork({ Name: name, Labels: { [`${prefix}tenant`]: 'test' } });
  reader = await bus.subscribe({ group: 'test-lifecycle-reader', topics: ['lifecycle'], handle: async (b) => void lifecycle.push(...b.map((m) => ({ event: m.event, receivedAt: Date.now() }))) });
  const stream = await docker.getEvents({ filters: JSON.stringify({ type: ['container'], event: ['die'], label: [`${prefix}tenant`] }) });
  let pending = '';
  stream.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines.filter((l) => l.trim() !== '')) {
      const e = JSON.parse(line) as { id: string; timeNano: number };
      died.set(e.id, Math.floor(e.timeNano / 1e6));
    }
  });
  dockerEvents = stream;

  // The app as a tenant deployed it: one replica on two networks (with aliases), a published port, limits.
  original = await docker.createContainer({
    Image: BASE_IMAGE,
    name: `shop-${ns.id}-original`,
    Cmd: HTTPD,
    Env: ['GREETING=hello'],
    // Opted in by its label (blog is opted in by the config instead).
    Labels: { [`${prefix}tenant`]: TENANT, [`${prefix}app`]: 'shop', [`${prefix}lb-host`]: 'shop.acme.test', [`${prefix}lb-port`]: '80', [`${prefix}autoscale.max`]: '10', 'com.example.tier': 'web' },
    ExposedPorts: { '80/tcp': {} },
    HostConfig: { Init: true, NetworkMode: netA, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] }, Memory: 64 << 20, NanoCpus: 500_000_000 },
    NetworkingConfig: { EndpointsConfig: { [netA]: { Aliases: ['shop'] } } },
  });
  await docker.getNetwork(netB).connect({ Container: original.id, EndpointConfig: { Aliases: ['shop-b'] } });
  await original.start();

  scaler = await startScaler({ bus, docker, redisUrl: ns.config.redis.url, logger: ns.logger, registry, config, clock, prefix: ns.id, optedInApps: [`${TENANT}/blog`] });
});

after(async () => {
  await scaler?.close();
  await reader?.stop();
  (dockerEvents as unknown as { destroy?: () => void } | undefined)?.destroy?.();
  await removeTestContainers(prefix);
  for (const name of [netA, netB]) await docker.getNetwork(name).remove().catch(() => undefined);
  const client = new Redis(ns.config.redis.url, { maxRetriesPerRequest: null });
  try {
    const queue = new Queue(`${ns.id}.scaler`, { connection: client, prefix: ns.id });
    await queue.obliterate({ force: true });
    await queue.close();
    // The scaler's own state (cooldowns, pending ids, refusals) outlives the queue on purpose.
    const scan = async () => {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, found] = await client.scan(cursor, 'MATCH', `${ns.id}:*`, 'COUNT', 1000);
        keys.push(...found);
        cursor = next;
      } while (cursor !== '0');
      return keys;
    };
    const state = await scan();
    assert.ok(state.every((k) => k.startsWith(`${ns.id}:${ns.id}.scaler:scaler:`)), `only scaler state left: ${state.join(', ')}`);
    if (state.length > 0) await client.del(...state);
    assert.deepEqual(await scan(), [], 'no keys left in Redis');
  } finally {
    await client.quit();
    await bus.close();
    ns.cleanup();
  }
});

test('a signal recommending 3 adds two replicas copied from the running one; the same signal twice adds nothing', async () => {
  const s = signal('shop', 3, 1);
  firstSignal = s;
  await publish(s);
  await publish(s);
  const three = await waitForReplicas('shop', 3);
  await eventually('both deliveries handled', async () => ((await metricTotal('logmeter_scaler_signals_total')) >= 2 ? true : undefined));
  await waitForJob(scaleJobId(TENANT, 'shop', 3, s.version), ['completed']);
  assert.equal((await replicas('shop')).length, 3, 'no replica beyond the recommendation');

  const orig = await original.inspect();
  assert.equal(three[2]!.id, orig.Id, 'the original is the oldest');
  const added = three.slice(0, 2).map((r) => r.info);
  const ports = new Set<number>([hostPort(orig)]);
  for (const info of added) {
    assert.match(info.Name, /^\/shop-acme-[0-9a-f]{6}$/);
    assert.equal(info.Config.Image, BASE_IMAGE);
    assert.deepEqual(info.Config.Cmd, HTTPD);
    assert.ok(info.Config.Env.includes('GREETING=hello'));
    assert.deepEqual(info.Config.Labels, { ...orig.Config.Labels, [`${prefix}scaled-by`]: 'scaler' });
    assert.deepEqual(Object.keys(info.NetworkSettings.Networks).sort(), [netA, netB].sort());
    assert.ok((info.NetworkSettings.Networks[netA]!.Aliases as string[]).includes('shop'), 'alias on the first network kept');
    assert.ok((info.NetworkSettings.Networks[netB]!.Aliases as string[]).includes('shop-b'), 'alias on the second network kept');
    assert.equal(info.HostConfig.NetworkMode, netA);
    assert.equal((info.HostConfig.PortBindings as Record<string, Array<{ HostIp: string }>>)['80/tcp']![0]!.HostIp, '127.0.0.1');
    assert.equal(info.NetworkSettings.Ports['80/tcp']![0]!.HostIp, '127.0.0.1');
    const port = hostPort(info);
    assert.ok(port > 0 && !ports.has(port), 'a port of its own, chosen by Docker');
    ports.add(port);
    assert.equal(info.HostConfig.Memory, 64 << 20);
    assert.equal(info.HostConfig.NanoCpus, 500_000_000);
    assert.equal(info.HostConfig.Init, true);
    assert.equal(await httpGet(port), 'logmeter base\n');
  }

  const ups = await waitForEvents('two scale_up events', ofSignal(s, 'scale_up'), 2);
  assert.equal(ups.length, 2, 'one scale_up per started replica, none for the second delivery');
  assert.deepEqual(ups.map((l) => l.event.container_id).sort(), added.map((i) => i.Id).sort());
  for (const { event } of ups) {
    assert.equal(event.tenant, TENANT);
    assert.equal(event.app, 'shop');
    assert.equal(event.attributes.from, '1');
    assert.equal(event.attributes.to, '3');
    assert.equal(event.attributes.reason, 'test recommends 3');
    assert.match(event.message ?? '', /^scaled up shop 1 → 3: started shop-acme-[0-9a-f]{6} \([12] of 2\)/);
    assert.equal(event.ports[0]?.container_port, 80);
    assert.deepEqual(event.networks.map((n) => n.name).sort(), [netA, netB].sort());
  }
});

test('a redelivered signal is not acted on again (idempotent job id); current replicas come from Docker, not the signal', async () => {
  // Redelivery of the signal that was already carried out, after a replica went away.
  const [newest] = await replicas('shop');
  await docker.getContainer(newest!.id).remove({ force: true });
  await waitForReplicas('shop', 2);
  const redelivered: AutoscaleSignal = { ...firstSignal, ts: clock().getTime() };
  const again = await scaler!.submit(redelivered);
  assert.deepEqual(again, { outcome: 'duplicate', jobId: scaleJobId(TENANT, 'shop', 3, redelivered.version) });
  const counts = await scaler!.queue.getJobCounts('waiting', 'delayed', 'active', 'prioritized');
  assert.deepEqual(counts, { waiting: 0, delayed: 0, active: 0, prioritized: 0 }, 'nothing enqueued');

  // A new signal whose own view says "3 running, 3 recommended": Docker has 2, so one is added.
  const fresh = { ...signal('shop', 3, 3) };
  await publish(fresh);
  await waitForReplicas('shop', 3);
  await waitForEvents('scale_up 2 → 3', ofSignal(fresh, 'scale_up'));
  assert.equal(scalerEvents(ofSignal(fresh, 'scale_up'))[0]!.event.attributes.from, '2');
  assert.deepEqual(await scaler!.submit(signal('shop', 3, 3)), { outcome: 'in_sync' });
});

test('scaling down within the scale-down cooldown is refused, and reported once', async () => {
  const s = signal('shop', 1, 3);
  await publish(s);
  const [refused] = await waitForEvents('scale_refused (cooldown)', ofSignal(s, 'scale_refused'));
  assert.equal(refused!.event.attributes.refusal, 'cooldown');
  assert.equal(refused!.event.attributes.from, '3');
  assert.equal(refused!.event.attributes.to, '1');
  assert.equal(refused!.event.container_id, '');
  assert.match(refused!.event.message ?? '', /^scale down shop 3 → 1 refused: cooldown: last change .* ago, scale-down cooldown 60 s \(.* left\)$/);
  const repeat = signal('shop', 1, 3);
  const { jobId } = await scaler!.submit(repeat);
  await waitForJob(jobId!, ['completed']);
  assert.equal((await scaler!.queue.getJob(jobId!))!.returnvalue.action, 'scale_refused');
  assert.equal(scalerEvents(ofSignal(repeat)).length, 0, 'the same refusal again is logged and counted, not published');
  assert.equal((await replicas('shop')).length, 3);
});

test('after the cooldown, the newest replicas are drained, then stopped newest first; the oldest stays', async () => {
  const before = await replicas('shop');
  assert.equal(before.length, 3);
  const [newest, second, oldest] = before;
  skippedMs += COOLDOWN_DOWN_MS + 1000;
  const s = signal('shop', 1, 3);
  await publish(s);
  const left = await waitForReplicas('shop', 1);
  assert.equal(left[0]!.id, oldest!.id, 'the oldest replica is kept');
  assert.equal(left[0]!.id, original.id);

  const downs = await waitForEvents('two scale_down events', ofSignal(s, 'scale_down'), 2);
  const drains = scalerEvents(ofSignal(s, 'drain'));
  assert.deepEqual(drains.map((l) => l.event.container_id), [newest!.id, second!.id], 'drained newest first');
  assert.deepEqual(downs.map((l) => l.event.container_id), [newest!.id, second!.id], 'stopped newest first');
  const at = (id: string) => eventually(`die of ${id.slice(0, 12)}`, async () => died.get(id));
  const [diedNewest, diedSecond] = [await at(newest!.id), await at(second!.id)];
  assert.ok(diedNewest < diedSecond, 'the newest stopped first');
  for (const drain of drains) {
    const stopAt = died.get(drain.event.container_id)!;
    assert.ok(drain.receivedAt < stopAt, 'the drain was on Kafka before the replica stopped');
    const publishedAt = drain.event.ts - skippedMs;
    assert.ok(stopAt - publishedAt >= DRAIN_MS - 5, `stopped ${stopAt - publishedAt} ms after its drain (drainMs ${DRAIN_MS})`);
    assert.equal(drain.event.labels[`${prefix}app`], 'shop');
    assert.equal(drain.event.ports[0]?.container_port, 80, 'the drain names the upstream being removed');
    assert.equal(drain.event.attributes.from, '3');
    assert.equal(drain.event.attributes.to, '1');
    const downIndex = lifecycle.findIndex((l) => l.event.action === 'scale_down' && l.event.container_id === drain.event.container_id);
    assert.ok(lifecycle.indexOf(drain) < downIndex, 'drain before scale_down on the topic');
  }
  for (const r of [newest!, second!]) await assert.rejects(docker.getContainer(r.id).inspect(), /no such container/i, 'removed after the stop');
});

test('the per-node cap: growth is granted up to it and refused beyond it; a declared template wins over the copied container', async () => {
  // blog: one own container (no label: opted in by the config), a template on top; node: shop 1 + blog 1.
  await docker.createContainer({ Image: BASE_IMAGE, name: `blog-${ns.id}-own`, Cmd: ['sleep', '3600'], Labels: { [`${prefix}tenant`]: TENANT, [`${prefix}app`]: 'blog' }, HostConfig: { Init: true } }).then((c) => c.start());
  const s = signal('blog', 5, 1);
  await publish(s);
  const blog = await waitForReplicas('blog', 3);
  const [refused] = await waitForEvents('scale_refused (cap)', ofSignal(s, 'scale_refused'));
  assert.equal(refused!.event.attributes.refusal, 'cap');
  assert.equal(refused!.event.attributes.from, '3');
  assert.equal(refused!.event.attributes.to, '4', 'the recommendation is first clamped to the cap itself');
  assert.equal(scalerEvents(ofSignal(s, 'scale_up')).length, 2);
  const added = blog.filter((r) => r.info.Config.Labels[`${prefix}scaled-by`] === 'scaler');
  assert.equal(added.length, 2);
  for (const { info } of added) {
    assert.equal(info.Config.Image, BASE_IMAGE);
    assert.deepEqual(info.Config.Cmd, HTTPD, 'the template command, not the copied one');
    assert.deepEqual(Object.keys(info.NetworkSettings.Networks), [netA]);
    assert.equal(info.Config.Labels[`${prefix}lb-host`], 'blog.acme.test');
    assert.equal(await httpGet(hostPort(info)), 'logmeter base\n');
  }

  const more = signal('shop', 2, 1);
  await publish(more);
  const [capped] = await waitForEvents('scale_refused for shop (cap)', ofSignal(more, 'scale_refused'));
  assert.equal(capped!.event.attributes.refusal, 'cap');
  assert.match(capped!.event.message ?? '', /^scale up shop 1 → 2 refused: node cap of 4 tenant containers reached \(4 running\)$/);
  assert.equal((await replicas('shop')).length, 1);
});

test('one pending job per app, the newest; never two runs of one app at once', async () => {
  // Another run of blog holds its lock (as a second scaler process would).
  const held = await scaler!.state.tryLock(`app:${appKey(TENANT, 'blog')}`);
  assert.ok(held);
  const older = signal('blog', 2, 3);
  const first = await scaler!.submit(older);
  assert.equal(first.outcome, 'enqueued');
  await waitForJob(first.jobId!, ['delayed']);
  const newer = signal('blog', 1, 3);
  const second = await scaler!.submit(newer);
  assert.equal(second.outcome, 'replaced');
  assert.equal(await scaler!.queue.getJob(first.jobId!), undefined, 'the older pending job is gone');
  assert.equal((await replicas('blog')).length, 3, 'nothing ran while the lock was held');
  await held.release();
  await waitForJob(second.jobId!, ['completed']);
  // blog grew less than the scale-down cooldown ago: the newer job ran and was refused.
  const [refused] = await waitForEvents('scale_refused for the newer job', ofSignal(newer, 'scale_refused'));
  assert.equal(refused!.event.attributes.refusal, 'cooldown');
  assert.equal(scalerEvents(ofSignal(older)).length, 0, 'the replaced job never ran');
});

test('every action is a lifecycle operation of the tenant, by the scaler', async () => {
  const events = scalerEvents();
  assert.deepEqual([...new Set(events.map((l) => l.event.action))].sort(), ['drain', 'scale_down', 'scale_refused', 'scale_up']);
  assert.equal(new Set(events.map((l) => l.event.event_id)).size, events.length, 'no action published twice');
  for (const { event } of events) {
    assert.equal(event.actor, 'scaler');
    assert.equal(event.tenant, TENANT);
    assert.ok(['shop', 'blog'].includes(event.app));
    assert.equal(event.node, ns.config.node);
    assert.ok(event.message && event.message.length > 0);
    for (const k of ['from', 'to', 'reason', 'signal_version']) assert.ok(event.attributes[k] !== undefined, `${event.action} has ${k}`);
  }
  assert.equal(await metricTotal('logmeter_scaler_actions_total'), events.length, 'every published action counted');
});
