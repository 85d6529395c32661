/**
 * The API's apps routes: an app's autoscale signals over time (`autoscale_signals`, as the
 * autoscale processor stores them, with its policy's targets) and its hosts' current
 * route sets (`route_sets`, as RouteSetStore keeps the routes topic), each tenant its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../lib/logger.js';
import { RouteSetStore } from '../processors/routes/store.js';
import { ADMIN, T0, TOKENS, apiFixture, cid, routeSetFixture, signalFixture } from './helpers/api.js';

const { ch, call } = apiFixture();
const logger = createLogger('silent', 2);
const S = 1000;

test('signals: one point per signal at step=1, buckets otherwise; another tenant’s app is 404', async () => {
  await ch.insert('autoscale_signals', [
    signalFixture('acme', 'web', T0, { p95: 120, rate: 10, current: 1, recommended: 1 }),
    signalFixture('acme', 'web', T0 + S, { p95: 640, rate: 30, current: 1, recommended: 3, mode: 'panic', panicP95: 900, inFlight: 25, reason: 'p95 900 ms > target 300 ms' }),
    signalFixture('acme', 'web', T0 + 2 * S, { p95: null, rate: 2, current: 3, recommended: 3 }),
    // Same app name, another tenant: never in acme's answers.
    signalFixture('globex', 'web', T0 + S, { p95: 5, rate: 999, current: 7, recommended: 7 }),
    signalFixture('globex', 'shop', T0, { p95: 50, rate: 4, current: 2, recommended: 2 }),
  ]);
  const range = 'from=2026-11-26T10:00:00Z&to=2026-11-26T10:01:00Z';
  const one = await call(`/api/v1/apps/web/signals?${range}&step=1`, TOKENS.acme);
  assert.equal(one.status, 200, JSON.stringify(one.body));
  const point = (ms: number, p: Partial<Record<string, unknown>>) => ({
    tenant: 'acme',
    ts: new Date(ms).toISOString(),
    mode: 'stable',
    current_replicas: 1,
    recommended_replicas: 1,
    p95_ms: 120,
    panic_p95_ms: 120,
    target_p95_ms: 300,
    rate_rps: 10,
    in_flight: 0,
    target_in_flight: 10,
    reason: 'holding 1',
    signals: 1,
    ...p,
  });
  assert.deepEqual(one.body, {
    app: 'web',
    from: '2026-11-26T10:00:00.000Z',
    to: '2026-11-26T10:01:00.000Z',
    step_s: 1,
    items: [
      point(T0, {}),
      point(T0 + S, { mode: 'panic', recommended_replicas: 3, p95_ms: 640, panic_p95_ms: 900, rate_rps: 30, in_flight: 25, reason: 'p95 900 ms > target 300 ms' }),
      point(T0 + 2 * S, { current_replicas: 3, recommended_replicas: 3, p95_ms: null, panic_p95_ms: null, rate_rps: 2, reason: 'holding 3' }),
    ],
  });
  // A minute in one bucket: panic if any was, the last replicas and reason, the highest p95, the mean rate.
  const minute = await call(`/api/v1/apps/web/signals?${range}&step=60`, TOKENS.acme);
  assert.deepEqual(minute.body.items, [point(T0, { mode: 'panic', current_replicas: 3, recommended_replicas: 3, p95_ms: 640, panic_p95_ms: 900, rate_rps: 14, in_flight: 25, reason: 'holding 3', signals: 3 })]);
  // Without step: at most 720 points, so a minute has 1 s buckets and a day 120 s ones.
  assert.equal((await call(`/api/v1/apps/web/signals?${range}`, TOKENS.acme)).body.step_s, 1);
  assert.equal((await call('/api/v1/apps/web/signals?from=2026-11-26&to=2026-11-27', TOKENS.acme)).body.step_s, 120);

  const notFound = { status: 404, body: { error: 'app "shop" not found', code: 'not_found' } };
  assert.deepEqual(await call(`/api/v1/apps/shop/signals?${range}`, TOKENS.acme), notFound, 'globex’s app');
  assert.deepEqual(await call(`/api/v1/apps/shop/signals?${range}&tenant=globex`, TOKENS.acme), notFound, 'tenant= does not widen a tenant’s scope');
  assert.deepEqual(await call('/api/v1/apps/nothing/signals', TOKENS.acme), { status: 404, body: { error: 'app "nothing" not found', code: 'not_found' } });
  const globexWeb = await call(`/api/v1/apps/web/signals?${range}&step=1`, TOKENS.globex);
  assert.deepEqual((globexWeb.body.items as Array<{ tenant: string; rate_rps: number }>).map((i) => [i.tenant, i.rate_rps]), [['globex', 999]]);
  const operator = await call(`/api/v1/apps/web/signals?${range}&step=60`, ADMIN);
  assert.deepEqual((operator.body.items as Array<{ tenant: string; signals: number }>).map((i) => [i.tenant, i.signals]), [['acme', 3], ['globex', 1]]);

  for (const [q, message] of [
    ['step=0', /^step: expected an integer from 1 to 86400/],
    ['from=soon', /^from: /],
    ['from=2026-11-27&to=2026-11-26', /^to: must be later than from/],
    ['app=web', /^unknown parameter app/],
  ] as const) {
    const bad = await call(`/api/v1/apps/web/signals?${q}`, TOKENS.acme);
    assert.equal(bad.status, 400, q);
    assert.match(String(bad.body.error), message, q);
  }
  assert.equal((await call('/api/v1/apps/web/signals')).status, 401);
});

test('routes: the newest set of each of the app’s hosts, forgotten hosts gone; another tenant’s app is 404', async () => {
  let now = T0;
  const store = new RouteSetStore(ch, logger, () => now);
  await store.published([
    routeSetFixture('acme', 'web', 'web.acme.test', 1, T0, [['web-1', '172.18.0.2', 8080]]),
    routeSetFixture('acme', 'web', 'old.acme.test', 4, T0, [['web-1', '172.18.0.2', 8080]]),
    routeSetFixture('acme', 'api', 'api.acme.test', 1, T0, [['api-1', '172.18.0.3', 9000]]),
    routeSetFixture('globex', 'shop', 'shop.globex.test', 1, T0, [['shop-1', '172.19.0.2', 9090]]),
    routeSetFixture('globex', 'web', 'web.globex.test', 1, T0, [['web-1', '172.19.0.3', 80]]),
  ]);
  now = T0 + 5 * S;
  await store.published([routeSetFixture('acme', 'web', 'web.acme.test', 2, now, [['web-1', '172.18.0.2', 8080], ['web-2', '172.18.0.4', 8080]], 'container web-2 started')], ['old.acme.test']);

  const routes = await call('/api/v1/apps/web/routes', TOKENS.acme);
  assert.deepEqual(routes, {
    status: 200,
    body: {
      app: 'web',
      items: [
        {
          tenant: 'acme',
          host: 'web.acme.test',
          version: 2,
          ts: new Date(T0 + 5 * S).toISOString(),
          upstreams: [
            { container_id: cid('acme', 'web-1'), address: '172.18.0.2', port: 8080 },
            { container_id: cid('acme', 'web-2'), address: '172.18.0.4', port: 8080 },
          ],
          reason: 'container web-2 started',
        },
      ],
    },
  });
  const hosts = async (app: string, token: string, q = '') => {
    const { status, body } = await call(`/api/v1/apps/${app}/routes${q}`, token);
    assert.equal(status, 200, JSON.stringify(body));
    return (body.items as Array<{ host: string }>).map((h) => h.host);
  };
  assert.deepEqual(await hosts('web', TOKENS.globex), ['web.globex.test']);
  assert.deepEqual(await hosts('web', ADMIN, '?tenant=globex'), ['web.globex.test']);
  assert.deepEqual(await call('/api/v1/apps/shop/routes', TOKENS.acme), { status: 404, body: { error: 'app "shop" not found', code: 'not_found' } });
  assert.deepEqual(await call('/api/v1/apps/shop/routes?tenant=globex', TOKENS.acme), { status: 404, body: { error: 'app "shop" not found', code: 'not_found' } });

  // A restart: the table knows api.acme.test no more (forgotten while nothing wrote), web.acme.test as it was.
  now = T0 + 10 * S;
  await store.sync(() => [{ host: 'web.acme.test', tenant: 'acme', app: 'web', version: 2, upstreams: [{ container_id: cid('acme', 'web-1'), address: '172.18.0.2', port: 8080 }] }]);
  assert.deepEqual(await hosts('api', TOKENS.acme), [], 'a known app with no host left');
  const after = (await call('/api/v1/apps/web/routes', TOKENS.acme)).body.items as Array<{ version: number; upstreams: unknown[]; reason: string }>;
  assert.deepEqual(after.map((h) => [h.version, h.upstreams.length, h.reason]), [[2, 1, 'current set at start']]);
  assert.deepEqual(await hosts('shop', TOKENS.globex), [], 'sync forgets every host the table does not know, whoever’s');
});
