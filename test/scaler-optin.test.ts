/**
 * The scaler's states (processors/scaler/plan.ts' opening comment) and every transition
 * between them, against Kafka, Redis and the real dockerd: opt-in, the tenant's removal
 * wins, nothing is brought back.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import type Docker from 'dockerode';
import { AvroCodec } from '../schemas/codec.js';
import { ManifestSource } from '../schemas/registry.js';
import type { AutoscaleSignal, LifecycleEvent, WindowStats } from '../schemas/events.js';
import type { Subscription } from '../lib/bus/bus.js';
import { busFor } from '../lib/runtime.js';
import { createRegistry } from '../lib/metrics.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { scalerConfigSchema } from '../processors/scaler/config.js';
import { listReplicas } from '../processors/scaler/docker.js';
import { appState, optsIn, planScale } from '../processors/scaler/plan.js';
import { startScaler, type Scaler } from '../processors/scaler/processor.js';
import { eventually, namespace } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';

test('states: from the own and replica counts and the opt-in', () => {
  assert.equal(appState({ own: 1, replicas: 0, optedIn: false }), 'not_opted_in');
  assert.equal(appState({ own: 1, replicas: 2, optedIn: true }), 'active');
  assert.equal(appState({ own: 0, replicas: 2, optedIn: true }), 'removed');
  assert.equal(appState({ own: 0, replicas: 2, optedIn: false }), 'removed', 'replicas of a removed app go even when the opt-in went with it');
  assert.equal(appState({ own: 0, replicas: 0, optedIn: true }), 'gone');
  assert.equal(optsIn({ 'lm.autoscale.max': '4' }, 'lm.'), true);
  assert.equal(optsIn({ 'lm.autoscale': 'on' }, 'lm.'), true);
  assert.equal(optsIn({ 'lm.autoscale': 'off' }, 'lm.'), false);
  assert.equal(optsIn({ 'lm.autoscale.min': '2' }, 'lm.'), false, 'a policy label alone is not an opt-in');
  const base = { requested: 3, nodeContainers: 1, maxContainersPerNode: 10, cooldownMs: { up: 0, down: 0 }, lastChange: undefined, now: 0, jobId: 'j' };
  assert.deepEqual(planScale({ ...base, current: 1, own: 1, optedIn: false }), { kind: 'refused', reason: 'not_opted_in', from: 1, to: 3 });
  assert.deepEqual(planScale({ ...base, current: 0, own: 0, requested: 3 }), { kind: 'refused', reason: 'tenant_removed', from: 0, to: 3 }, 'minReplicas brings nothing back');
  assert.deepEqual(planScale({ ...base, current: 2, own: 0, lastChange: { at: 0, job: 'x', direction: 'up' }, cooldownMs: { up: 0, down: 60_000 } }), { kind: 'down', from: 2, to: 0, remove: 2, removed: true }, 'no cooldown for a removed app');
  assert.deepEqual(planScale({ ...base, current: 3, own: 2, requested: 1 }), { kind: 'down', from: 3, to: 2, remove: 1 }, 'never below the own containers');
});

const ns = namespace();
const prefix = `${ns.id}.`;
const TENANT = 'acme';
const codec = await AvroCodec.create(new ManifestSource());
const bus = busFor(ns.config, codec, ns.logger);
const registry = createRegistry(false);
const config = scalerConfigSchema.parse({ labelPrefix: prefix, cooldownMs: { up: 0, down: 0 }, maxContainersPerNode: 20, drainMs: 300, stopTimeoutSeconds: 1, sweepMs: 0, backoff: { delayMs: 200 } });
const ws: WindowStats = { window_ms: 60_000, requests: 600, rate_rps: 10, p50_ms: 20, p95_ms: 40, p99_ms: 60, rate_5xx: 0, rate_504: 0, queue_time_p95_ms: null, queue_length_max: null, in_flight: 0.4 };

/** Every line the scaler logs (debug and up), parsed. */
const logLines: Array<{ level: number; msg: string; app?: string }> = [];
const logger = pino({ level: 'debug' }, { write: (line: string) => void logLines.push(JSON.parse(line) as { level: number; msg: string; app?: string }) });
const INFO = 30;

let scaler: Scaler | undefined;
let reader: Subscription | undefined;
const lifecycle: LifecycleEvent[] = [];
let version = 1000;

function signal(app: string, recommended: number): AutoscaleSignal {
  version += 1;
  return { event_id: `s-${app}-${version}`, tenant: TENANT, app, node: 'n', container_id: '', ts: Date.now(), version, host: '', stable: ws, panic: ws, current_replicas: 1, recommended_replicas: recommended, mode: 'stable', reason: `test recommends ${recommended}` };
}
async function own(app: string, labels: Record<string, string> = {}, name = ''): Promise<Docker.Container> {
  const c = await docker.createContainer({ Image: BASE_IMAGE, name: `${app}-${ns.id}-own${name}`, Cmd: ['sleep', '3600'], Labels: { [`${prefix}tenant`]: TENANT, [`${prefix}app`]: app, ...labels }, HostConfig: { Init: true } });
  await c.start();
  return c;
}
const running = async (app: string) => (await listReplicas(docker, prefix, TENANT, app)).length;
const replicaCount = async (app: string) => (await listReplicas(docker, prefix, TENANT, app)).filter((r) => r.info.Config.Labels[`${prefix}scaled-by`] === 'scaler').length;
async function waitRunning(app: string, n: number): Promise<void> {
  await eventually(`${n} running ${app}`, async () => ((await running(app)) === n ? true : undefined), 60_000);
}
async function refusals(): Promise<number> {
  const m = registry.getSingleMetric('logmeter_scaler_actions_total');
  return m ? (await m.get()).values.filter((v) => v.labels.action === 'scale_refused').reduce((s, v) => s + v.value, 0) : 0;
}
const events = (app: string, action: string) => lifecycle.filter((e) => e.actor === 'scaler' && e.app === app && e.action === action);

before(async () => {
  await bus.ensureTopics();
  reader = await bus.subscribe({ group: 'optin-reader', topics: ['lifecycle'], handle: async (b) => void lifecycle.push(...b.map((m) => m.event)) });
  scaler = await startScaler({ bus, docker, redisUrl: ns.config.redis.url, logger, registry, config, prefix: ns.id, optedInApps: [`${TENANT}/configured`] });
});

after(async () => {
  await scaler?.close();
  await reader?.stop();
  await removeTestContainers(prefix);
  const client = new Redis(ns.config.redis.url, { maxRetriesPerRequest: null });
  try {
    const queue = new Queue(`${ns.id}.scaler`, { connection: client, prefix: ns.id });
    await queue.obliterate({ force: true });
    await queue.close();
    const keys = await client.keys(`${ns.id}:*`);
    if (keys.length > 0) await client.del(...keys);
  } finally {
    await client.quit();
    await bus.close();
    ns.cleanup();
  }
});

test('not_opted_in: no action, reported once; an opt-in label makes it active; taking the opt-in away leaves the replicas', async () => {
  await own('plain');
  const before = await refusals();
  assert.deepEqual(await scaler!.submit(signal('plain', 4)), { outcome: 'not_opted_in' });
  assert.deepEqual(await scaler!.submit(signal('plain', 5)), { outcome: 'not_opted_in' });
  assert.equal(await running('plain'), 1, 'no replica for an app that did not opt in');
  assert.equal((await refusals()) - before, 1, 'reported once, not per signal');
  const [reported] = await eventually('not_opted_in event', async () => (events('plain', 'scale_refused').length > 0 ? events('plain', 'scale_refused') : undefined));
  assert.equal(reported!.attributes.refusal, 'not_opted_in');
  assert.match(reported!.message ?? '', /^plain is not scaled: it did not opt in/);

  // not_opted_in → active: the tenant starts a container labelled autoscale=on.
  const labelled = await own('plain', { [`${prefix}autoscale`]: 'on' }, '-2');
  const up = await scaler!.submit(signal('plain', 3));
  assert.equal(up.outcome, 'enqueued');
  await waitRunning('plain', 3);
  assert.equal(await replicaCount('plain'), 1);

  // active → not_opted_in: the labelled container goes (the replica copied its label, which does not count).
  await labelled.remove({ force: true });
  await waitRunning('plain', 2);
  assert.deepEqual(await scaler!.submit(signal('plain', 1)), { outcome: 'not_opted_in' });
  assert.equal(await running('plain'), 2, 'its replica is left as it is: not scaled either way');
  assert.equal((await refusals()) - before, 2, 'the new state is reported once');
});

test('an autoscale.apps entry opts in without a label; active → removed by a signal: the replicas are drained and removed', async () => {
  const mine = await own('configured');
  assert.equal((await scaler!.submit(signal('configured', 3))).outcome, 'enqueued');
  await waitRunning('configured', 3);
  await mine.remove({ force: true }); // the tenant removes its app
  await waitRunning('configured', 2);
  assert.equal((await scaler!.submit(signal('configured', 3))).outcome, 'enqueued', 'a job to remove the replicas, whatever the recommendation');
  await waitRunning('configured', 0);
  const drains = await eventually('2 drains', async () => (events('configured', 'drain').length === 2 ? events('configured', 'drain') : undefined));
  const downs = await eventually('2 scale_downs', async () => (events('configured', 'scale_down').length === 2 ? events('configured', 'scale_down') : undefined));
  for (const d of drains) assert.ok(lifecycle.indexOf(d) < lifecycle.findIndex((e) => e.action === 'scale_down' && e.container_id === d.container_id), 'drained before stopped');
  assert.match(downs[0]!.message ?? '', /the tenant stopped or removed the app's own containers$/);

  // removed → gone: nothing comes back, whatever the signal says.
  assert.deepEqual(await scaler!.submit(signal('configured', 5)), { outcome: 'tenant_removed' });
  assert.equal(await running('configured'), 0);
});

test('active → removed found by the sweep (no signal needed); gone refuses; gone → active when the tenant starts its container again', async () => {
  const mine = await own('web', { [`${prefix}autoscale.max`]: '5' });
  assert.equal((await scaler!.submit(signal('web', 3))).outcome, 'enqueued');
  await waitRunning('web', 3);
  await mine.stop({ t: 1 }); // stopped, not removed: still the tenant's decision
  await waitRunning('web', 2);
  await scaler!.sweep();
  assert.equal(await running('web'), 0, 'the sweep drained and removed both replicas');
  const ups = await eventually('2 scale_ups', async () => (events('web', 'scale_up').length === 2 ? events('web', 'scale_up') : undefined));
  const downs = await eventually('2 scale_downs', async () => (events('web', 'scale_down').length === 2 ? events('web', 'scale_down') : undefined));
  assert.deepEqual(downs.map((e) => e.container_id).sort(), ups.map((e) => e.container_id).sort(), 'every replica started was removed');
  await scaler!.sweep();
  assert.equal(events('web', 'drain').length, 2, 'a sweep with nothing to remove does nothing');

  const before = await refusals();
  assert.deepEqual(await scaler!.submit(signal('web', 3)), { outcome: 'tenant_removed' }, 'a stopped container is no template to bring the app back from');
  assert.deepEqual(await scaler!.submit(signal('web', 4)), { outcome: 'tenant_removed' });
  assert.equal(await running('web'), 0);
  assert.equal((await refusals()) - before, 1, 'reported once');

  // gone → active
  await mine.start();
  await waitRunning('web', 1);
  assert.equal((await scaler!.submit(signal('web', 2))).outcome, 'enqueued');
  await waitRunning('web', 2);
  assert.equal(await replicaCount('web'), 1);
});

test('the log says what changed: a repeated decision or refusal is an info line once, then debug lines', async () => {
  const infos = (app: string, re: RegExp) => logLines.filter((l) => l.app === app && l.level >= INFO && re.test(l.msg)).length;
  await own('quiet');
  for (let i = 0; i < 5; i++) assert.equal((await scaler!.submit(signal('quiet', 3))).outcome, 'not_opted_in');
  assert.equal(infos('quiet', /is not scaled/), 1, 'the refusal once per state');
  assert.equal(infos('quiet', /scale job enqueued/), 0);

  await own('busy', { [`${prefix}autoscale`]: 'on' });
  // Another scaler process runs busy's job: ours stay pending, one replacing the other.
  const held = await scaler!.state.tryLock(`app:${encodeURIComponent(TENANT)}|busy`);
  assert.ok(held);
  for (let i = 0; i < 5; i++) assert.ok(['enqueued', 'replaced'].includes((await scaler!.submit(signal('busy', 3))).outcome));
  assert.equal(infos('busy', /^scale job enqueued$/), 1, 'five signals for the same target: one info line');
  assert.equal(logLines.filter((l) => l.app === 'busy' && l.level < INFO && /^scale job enqueued/.test(l.msg)).length, 4, 'the repeats are debug lines');
  await scaler!.submit(signal('busy', 2));
  assert.equal(infos('busy', /^scale job enqueued$/), 2, 'a new target is logged');
  await held.release();
  await waitRunning('busy', 2);
});
