/**
 * The demo as the scaler sees it: which apps opt in, a load that goes up and comes down
 * on one clock (run in real containers), and a restarted demo removing the replicas a
 * killed one left behind.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { BUSY_SECONDS, QUIET_SECONDS, demoContainers, demoLabel, stopDemo } from '../app/demo.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { replicaName, replicaSpec, startReplica } from '../processors/scaler/docker.js';
import { optsIn } from '../processors/scaler/plan.js';
import { AUTOSCALE_DEFAULTS } from '../processors/autoscale/config.js';
import { SCALER_DEFAULTS } from '../processors/scaler/config.js';
import { eventually, namespace } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';

const ns = namespace();
const prefix = `${ns.id}.`;

after(async () => {
  await removeTestContainers(prefix);
  ns.cleanup();
});

test('the apps serving HTTP opt in (at most 3 replicas); the worker does not; every container shares the demo clock', () => {
  const specs = demoContainers(prefix, 1_800_000_000);
  const byApp = new Map(specs.map((s) => [`${s.tenant}/${s.app}`, s]));
  assert.equal(byApp.get('acme/shop')!.labels[`${prefix}autoscale.max`], '3');
  assert.equal(byApp.get('globex/api')!.labels[`${prefix}autoscale.max`], '3');
  assert.deepEqual(specs.filter((s) => optsIn(s.labels, prefix)).map((s) => `${s.tenant}/${s.app}`), ['acme/shop', 'globex/api']);
  for (const s of specs) {
    assert.deepEqual(s.env, ['DEMO_T0=1800000000']);
    assert.equal(s.labels[demoLabel(prefix)], 'true');
  }
  // The quiet phase outlasts the panic hold (a stable window) and both scale-down cooldowns,
  // and a whole cycle of up and down fits in the ten minutes a watcher gives it.
  const holdAndCooldown = AUTOSCALE_DEFAULTS.stableWindowMs / 1000 + Math.max(AUTOSCALE_DEFAULTS.policy.cooldownMs, SCALER_DEFAULTS.cooldownMs.down) / 1000;
  assert.ok(QUIET_SECONDS > holdAndCooldown, `quiet ${QUIET_SECONDS} s > ${holdAndCooldown} s`);
  assert.ok(BUSY_SECONDS + holdAndCooldown < 600);
});

/** Latencies (seconds) of the access-log lines a demo shop prints with the given DEMO_T0. */
async function latencies(t0: number, name: string): Promise<number[]> {
  const shop = demoContainers(prefix, t0).find((s) => s.app === 'shop')!;
  const c = await docker.createContainer({ Image: BASE_IMAGE, name: `${ns.id}-${name}`, Cmd: ['sh', '-c', shop.script], Env: shop.env, Labels: { [`${prefix}tenant`]: 'test' }, HostConfig: { Init: true } });
  await c.start();
  return eventually(`10 access-log lines of ${name}`, async () => {
    const out = (await c.logs({ stdout: true, stderr: false })).toString('latin1');
    const found = [...out.matchAll(/"demo-client\/1\.0" (\d+\.\d{3})/g)].map((m) => Number(m[1]));
    return found.length >= 10 ? found : undefined;
  });
}

test('the load is busy (0.6-0.9 s) from DEMO_T0 for BUSY_SECONDS, then quiet (under 0.1 s)', async () => {
  const now = Math.floor(Date.now() / 1000);
  const [busy, quiet] = await Promise.all([latencies(now, 'busy'), latencies(now - BUSY_SECONDS - 30, 'quiet')]);
  assert.ok(busy.every((t) => t >= 0.6 && t < 0.9), `busy: ${busy.join(' ')}`);
  assert.ok(quiet.every((t) => t < 0.1), `quiet: ${quiet.join(' ')}`);
});

test("a restarted demo removes the replicas a killed one left behind (they carry the demo's label)", async () => {
  const shop = demoContainers(prefix).find((s) => s.app === 'shop')!;
  const source = await docker.createContainer({ Image: BASE_IMAGE, name: `${ns.id}-shop`, Cmd: ['sleep', '3600'], Labels: shop.labels, HostConfig: { Init: true } });
  await source.start();
  // What the scaler does: a replica copied from the running container.
  const replica = await startReplica(docker, replicaSpec({ source: await source.inspect(), tenant: 'acme', app: 'shop', labelPrefix: prefix, name: replicaName('shop', `acme-${ns.id}`) }));
  assert.equal(replica.Config.Labels[demoLabel(prefix)], 'true');
  assert.equal(replica.Config.Labels[`${prefix}scaled-by`], 'scaler');
  // The demo was killed: nothing stopped them. The next one's start cleans up first.
  await stopDemo(docker, ns.logger, prefix);
  const left = await docker.listContainers({ all: true, filters: JSON.stringify({ label: [`${demoLabel(prefix)}=true`] }) });
  assert.deepEqual(left, []);
  await assert.rejects(docker.getContainer(replica.Id).inspect(), /no such container/i);
});
