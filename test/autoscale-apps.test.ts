/**
 * The autoscale processor's pure core (processors/autoscale/apps.ts), rule by rule,
 * without any service.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HttpRequest } from '../schemas/events.js';
import { AUTOSCALE_DEFAULTS, type AutoscaleConfig } from '../processors/autoscale/config.js';
import { Fleet } from '../processors/autoscale/fleet.js';
import { Apps } from '../processors/autoscale/apps.js';
import { SAMPLE_EVENTS } from './helpers/fixtures.js';

const T0 = 1_764_000_000_000;
let seq = 0;
const request = (ts: number, latency: number, o: Partial<HttpRequest> = {}): HttpRequest => ({
  ...SAMPLE_EVENTS.http,
  event_id: `r-${seq++}`,
  tenant: 'platform',
  app: 'lb',
  container_id: 'lb-1',
  host: 'shop.acme.test',
  backend: null,
  ts,
  status: 200,
  request_time_ms: latency,
  queue_time_ms: 0,
  backend_queue: 0,
  server_queue: 0,
  ...o,
});

function setup(config: AutoscaleConfig = AUTOSCALE_DEFAULTS) {
  const fleet = new Fleet('lm.', config.lbApp);
  fleet.apply({ container_id: 'c1', tenant: 'acme', app: 'shop', ts: 1, action: 'start', labels: { 'lm.lb-host': 'shop.acme.test', 'lm.autoscale.min': 'lots' } });
  const problems: string[] = [];
  const apps = new Apps({ config, fleet, labelPrefix: 'lm.', node: 'n1', onPolicyProblem: (app, p) => problems.push(`${app}: ${p}`) });
  return { fleet, apps, problems };
}

test('rule 1: a load-balancer request counts for the app claiming its host (or its backend); an unclaimed host is not counted', () => {
  const { apps } = setup();
  assert.deepEqual(apps.take(request(T0, 20), T0), { source: 'lb' });
  assert.deepEqual(apps.take(request(T0, 20, { host: 'SHOP.acme.test:443' }), T0), { source: 'lb' });
  assert.deepEqual(apps.take(request(T0, 20, { host: '', backend: 'shop.acme.test' }), T0), { source: 'lb' });
  assert.deepEqual(apps.take(request(T0, 20, { host: 'nobody.test' }), T0), { ignored: 'unknown_host' });
  const [s] = apps.evaluate(T0 + 500);
  assert.equal(`${s!.tenant}/${s!.app}`, 'acme/shop');
  assert.equal(s!.stable.requests, 3);
  assert.equal(s!.host, 'shop.acme.test');
  assert.equal(s!.current_replicas, 1);
});

test("rule 2: the load balancer's window when it saw the app's traffic, else the app's own", () => {
  const { apps } = setup();
  const own = (ts: number, latency: number) => request(ts, latency, { tenant: 'acme', app: 'shop', container_id: 'c1' });
  for (let i = 0; i < 5; i++) assert.deepEqual(apps.take(own(T0 + i, 10), T0), { source: 'app' });
  assert.equal(apps.evaluate(T0 + 500)[0]!.stable.requests, 5, 'only the app saw requests');
  for (let i = 0; i < 2; i++) apps.take(request(T0 + i, 400), T0);
  const [s] = apps.evaluate(T0 + 600);
  assert.equal(s!.stable.requests, 2, "the load balancer's window wins once it has requests");
});

test('rule 3: too old and future requests are refused; an app idle for a whole stable window is forgotten', () => {
  const { apps } = setup();
  assert.deepEqual(apps.take(request(T0 - AUTOSCALE_DEFAULTS.stableWindowMs - 1000, 20), T0), { ignored: 'outside_window' });
  assert.deepEqual(apps.take(request(T0 + 2 * AUTOSCALE_DEFAULTS.stableWindowMs, 20), T0), { ignored: 'future' });
  apps.take(request(T0, 20), T0);
  assert.equal(apps.evaluate(T0 + 1000).length, 1);
  assert.deepEqual(apps.evaluate(T0 + AUTOSCALE_DEFAULTS.stableWindowMs + 2000), [], 'idle for a whole window');
  apps.take(request(T0 + 5000, 20), T0 + 2000);
  assert.deepEqual(apps.evaluate(T0 + 2000), [], 'requests only ahead of now: not active yet');
});

test('rule 4: a policy label that cannot be used is reported (once per evaluation), not applied', () => {
  const { apps, problems } = setup();
  apps.take(request(T0, 20), T0);
  const [s] = apps.evaluate(T0 + 500);
  assert.equal(s!.recommended_replicas, AUTOSCALE_DEFAULTS.policy.minReplicas);
  assert.equal(problems.length, 1);
  assert.match(problems[0]!, /^acme\/shop: .*autoscale\.min/);
});

test('rule 5: versions follow the clock and always grow; the panic check only signals apps entering panic', () => {
  const { apps } = setup();
  for (let i = 0; i < 20; i++) apps.take(request(T0 + i * 10, 20), T0 + 500);
  const first = apps.evaluate(T0 + 500)[0]!;
  assert.equal(first.version, T0 + 500);
  assert.equal(first.mode, 'stable');
  const again = apps.evaluate(T0 + 500)[0]!;
  assert.equal(again.version, T0 + 501, 'same clock: one more');
  assert.deepEqual(apps.evaluate(T0 + 600, true), [], 'calm: nothing for the panic check');
  for (let i = 0; i < 20; i++) apps.take(request(T0 + 700 + i, 5000), T0 + 800);
  const panic = apps.evaluate(T0 + 800, true);
  assert.equal(panic.length, 1);
  assert.equal(panic[0]!.mode, 'panic');
  assert.deepEqual(apps.evaluate(T0 + 900, true), [], 'already in panic: the tick signals it');
  assert.equal(apps.evaluate(T0 + 900)[0]!.mode, 'panic');
});
