/**
 * The log center API's usage, billing reports and containers, each tenant its own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, HOUR, T0, TOKENS, apiFixture, at, cid, ids, usageRow } from './helpers/api.js';

const { ch, call } = apiFixture();

test('usage per meter, app and period: recomputed rows replaced, hour rows supersede minute rows', async () => {
  const usage = async (query: string, token = TOKENS.acme) => {
    const { status, body } = await call(`/api/v1/usage${query}`, token);
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  };
  const row = (period_start: string, app: string, meter: string, unit: string, quantity: number, tenant = 'acme') => ({ tenant, app, meter, unit, dimensions: {}, period_start, quantity });
  assert.deepEqual(await usage(''), {
    period: 'hour',
    items: [
      row('2026-11-26T10:00:00.000Z', 'api', 'requests', 'count', 4),
      row('2026-11-26T10:00:00.000Z', 'web', 'egress_bytes', 'bytes', 1000),
      row('2026-11-26T10:00:00.000Z', 'web', 'requests', 'count', 10),
      row('2026-11-26T11:00:00.000Z', 'web', 'requests', 'count', 5),
      row('2026-11-26T12:00:00.000Z', 'web', 'requests', 'count', 5),
      row('2026-11-27T00:00:00.000Z', 'web', 'requests', 'count', 6),
    ],
  });
  assert.deepEqual(await usage('?period=day'), {
    period: 'day',
    items: [
      row('2026-11-26T00:00:00.000Z', 'api', 'requests', 'count', 4),
      row('2026-11-26T00:00:00.000Z', 'web', 'egress_bytes', 'bytes', 1000),
      row('2026-11-26T00:00:00.000Z', 'web', 'requests', 'count', 20),
      row('2026-11-27T00:00:00.000Z', 'web', 'requests', 'count', 6),
    ],
  });
  assert.deepEqual(await usage('?period=month&meter=requests'), {
    period: 'month',
    items: [row('2026-11-01T00:00:00.000Z', 'api', 'requests', 'count', 4), row('2026-11-01T00:00:00.000Z', 'web', 'requests', 'count', 26)],
  });
  assert.deepEqual(await usage('?period=day&app=web&from=2026-11-26T11:00:00Z&to=2026-11-27'), {
    period: 'day',
    items: [row('2026-11-26T00:00:00.000Z', 'web', 'requests', 'count', 10)],
  });
  assert.deepEqual(await usage('?tenant=acme', TOKENS.globex), { period: 'hour', items: [row('2026-11-26T10:00:00.000Z', 'shop', 'requests', 'count', 7, 'globex')] });
  assert.deepEqual((await usage('?period=month&meter=requests&app=shop', ADMIN)).items, [row('2026-11-01T00:00:00.000Z', 'shop', 'requests', 'count', 7, 'globex')]);
});

test('usage keeps a meter’s dimensions apart: container-seconds per size, each its own item', async () => {
  const day = T0 + 3 * 24 * HOUR; // 2026-11-29, a day no other row of the fixture has
  const sized = (id: string, tenant: string, app: string, ms: number, size: string, quantity: number) => ({ ...usageRow(id, tenant, app, 'hour', ms, 'container_seconds', 'second', quantity), dimensions: { size } });
  await ch.insert('usage', [
    sized('cs-1', 'acme', 'web', day, 'small', 3600),
    sized('cs-2', 'acme', 'web', day + HOUR, 'small', 1800),
    sized('cs-3', 'acme', 'web', day, 'large', 600),
    sized('cs-4', 'acme', 'api', day, 'small', 60),
    sized('cs-5', 'globex', 'web', day, 'small', 7200),
    usageRow('cs-6', 'acme', 'web', 'hour', day, 'internal_bytes', 'byte', 5000),
  ]);
  const { status, body } = await call('/api/v1/usage?period=day&from=2026-11-29&to=2026-11-30', TOKENS.acme);
  assert.equal(status, 200, JSON.stringify(body));
  const item = (app: string, meter: string, unit: string, dimensions: Record<string, string>, quantity: number) => ({ tenant: 'acme', app, meter, unit, dimensions, period_start: '2026-11-29T00:00:00.000Z', quantity });
  assert.deepEqual(body.items, [
    item('api', 'container_seconds', 'second', { size: 'small' }, 60),
    item('web', 'container_seconds', 'second', { size: 'large' }, 600),
    item('web', 'container_seconds', 'second', { size: 'small' }, 5400),
    item('web', 'internal_bytes', 'byte', {}, 5000),
  ]);
  const globex = await call('/api/v1/usage?period=day&from=2026-11-29&to=2026-11-30&tenant=acme', TOKENS.globex);
  assert.deepEqual(globex.body.items, [{ tenant: 'globex', app: 'web', meter: 'container_seconds', unit: 'second', dimensions: { size: 'small' }, period_start: '2026-11-29T00:00:00.000Z', quantity: 7200 }]);
});

test("billing reports: a tenant lists and reads its own; another tenant's report is 404", async () => {
  const acmeReport = {
    report_id: 'acme/2026-11-26',
    tenant: 'acme',
    period_kind: 'daily',
    period_start: '2026-11-26T00:00:00.000Z',
    period_end: '2026-11-27T00:00:00.000Z',
    totals: { EUR: 1.6 + 2.25 },
  };
  const list = await call('/api/v1/reports', TOKENS.acme);
  assert.equal(list.status, 200);
  assert.deepEqual(list.body, {
    items: [
      { ...acmeReport, line_items: 2 },
      { report_id: 'acme/2026-11-25', tenant: 'acme', period_kind: 'daily', period_start: '2026-11-25T00:00:00.000Z', period_end: '2026-11-26T00:00:00.000Z', totals: { EUR: 1 }, line_items: 1 },
    ],
    next_cursor: null,
  });
  const paged = await call('/api/v1/reports?limit=1', TOKENS.acme);
  assert.deepEqual((paged.body.items as Array<{ report_id: string }>).map((r) => r.report_id), ['acme/2026-11-26']);
  const rest = await call(`/api/v1/reports?limit=1&cursor=${paged.body.next_cursor as string}`, TOKENS.acme);
  assert.deepEqual(rest.body, { items: [(list.body.items as unknown[])[1]], next_cursor: null });

  const expected = {
    ...acmeReport,
    items: [
      { meter: 'egress_bytes', unit: 'bytes', quantity: 1000, free_quantity: 0, billable: 1000, unit_price: 0.00225, amount: 2.25, currency: 'EUR' },
      { meter: 'requests', unit: 'count', quantity: 26, free_quantity: 10, billable: 16, unit_price: 0.1, amount: 1.6, currency: 'EUR' },
    ],
    // Rows only: billing wrote no files for this report (test/panel.test.ts has one with files).
    files: { csv: false, json: false },
  };
  assert.deepEqual(await call('/api/v1/reports/acme%2F2026-11-26', TOKENS.acme), { status: 200, body: expected });
  assert.deepEqual(await call('/api/v1/reports/acme/2026-11-26', TOKENS.acme), { status: 200, body: expected }, 'unencoded slash works too');
  const notFound = (id: string) => ({ status: 404, body: { error: `report ${JSON.stringify(id)} not found`, code: 'not_found' } });
  assert.deepEqual(await call('/api/v1/reports/globex%2F2026-11-26', TOKENS.acme), notFound('globex/2026-11-26'));
  assert.deepEqual(await call('/api/v1/reports/globex%2F2026-11-26?tenant=globex', TOKENS.acme), notFound('globex/2026-11-26'));
  assert.deepEqual(await call('/api/v1/reports/acme%2F2026-11-27', TOKENS.acme), notFound('acme/2026-11-27'), 'absent looks the same as foreign');
  assert.deepEqual(((await call('/api/v1/reports', TOKENS.globex)).body.items as Array<{ report_id: string }>).map((r) => r.report_id), ['globex/2026-11-26']);
  assert.equal((await call('/api/v1/reports/globex%2F2026-11-26', ADMIN)).status, 200);
  assert.deepEqual(((await call('/api/v1/reports?tenant=globex', ADMIN)).body.items as Array<{ report_id: string }>).map((r) => r.report_id), ['globex/2026-11-26']);
  assert.equal(((await call('/api/v1/reports', ADMIN)).body.items as unknown[]).length, 3);
});

test("containers: a tenant's latest state per container and one container's events; another tenant's container is 404", async () => {
  const ports = [{ container_port: 8080, protocol: 'tcp', host_ip: '0.0.0.0', host_port: 32768 }];
  const list = await call('/api/v1/containers', TOKENS.acme);
  assert.deepEqual(list, {
    status: 200,
    body: {
      items: [
        {
          tenant: 'acme',
          container_id: cid('acme', 'web-1'),
          container_name: 'web-1',
          app: 'web',
          image: 'acme/web:1',
          state: 'exited',
          last_action: 'die',
          last_action_at: at(9000),
          exit_code: 3,
          health: null,
          ports,
          first_seen: at(100),
          last_seen: at(9000),
        },
        {
          tenant: 'acme',
          container_id: cid('acme', 'api-1'),
          container_name: 'api-1',
          app: 'api',
          image: 'acme/api:2',
          state: 'running',
          last_action: 'start',
          last_action_at: at(600),
          exit_code: null,
          health: null,
          ports: [],
          first_seen: at(600),
          last_seen: at(600),
        },
      ],
      next_cursor: null,
    },
  });
  const globex = await call('/api/v1/containers', TOKENS.globex);
  assert.deepEqual(
    (globex.body.items as Array<{ container_name: string; state: string; health: string | null }>).map((c) => [c.container_name, c.state, c.health]),
    [
      ['shop-1', 'running', 'healthy'],
      ['web-1', 'running', null],
    ],
  );
  assert.deepEqual(((await call('/api/v1/containers?tenant=globex', TOKENS.acme)).body.items as unknown[]).length, 2, 'its own two, not globex');
  assert.deepEqual(((await call('/api/v1/containers?app=api', TOKENS.acme)).body.items as Array<{ container_name: string }>).map((c) => c.container_name), ['api-1']);
  const paged = await call('/api/v1/containers?limit=1', TOKENS.acme);
  const rest = await call(`/api/v1/containers?limit=1&cursor=${paged.body.next_cursor as string}`, TOKENS.acme);
  assert.deepEqual([...(paged.body.items as unknown[]), ...(rest.body.items as unknown[])], list.body.items);

  const events = await call('/api/v1/containers/web-1/lifecycle', TOKENS.acme);
  assert.equal(events.status, 200);
  assert.deepEqual(ids(events.body.items as Array<{ event_id: string }>), ['al-4', 'al-2', 'al-1'], "acme's web-1 only, not globex's web-1");
  assert.deepEqual((events.body.items as unknown[])[0], {
    ts: at(9000),
    event_id: 'al-4',
    tenant: 'acme',
    app: 'web',
    container_id: cid('acme', 'web-1'),
    container_name: 'web-1',
    action: 'die',
    actor: 'docker',
    kind: 'operation',
    exit_code: 3,
    health: null,
    image: 'acme/web:1',
    message: null,
    attributes: {},
    networks: ['bridge'],
    ports,
  });
  assert.deepEqual(ids((await call(`/api/v1/containers/${cid('acme', 'web-1')}/lifecycle?order=asc`, TOKENS.acme)).body.items as Array<{ event_id: string }>), ['al-1', 'al-2', 'al-4']);
  const notFound = (id: string) => ({ status: 404, body: { error: `container ${JSON.stringify(id)} not found`, code: 'not_found' } });
  assert.deepEqual(await call('/api/v1/containers/shop-1/lifecycle', TOKENS.acme), notFound('shop-1'));
  assert.deepEqual(await call(`/api/v1/containers/${cid('globex', 'shop-1')}/lifecycle`, TOKENS.acme), notFound(cid('globex', 'shop-1')));
  assert.deepEqual(await call(`/api/v1/containers/${cid('globex', 'shop-1')}/lifecycle?tenant=globex`, TOKENS.acme), notFound(cid('globex', 'shop-1')));
  assert.deepEqual(await call('/api/v1/containers/nothing-here/lifecycle', TOKENS.acme), notFound('nothing-here'), 'absent looks the same as foreign');
  assert.equal((await call(`/api/v1/containers/${cid('globex', 'shop-1')}/lifecycle`, ADMIN)).status, 200);
  assert.deepEqual(ids((await call('/api/v1/containers/web-1/lifecycle?tenant=globex', ADMIN)).body.items as Array<{ event_id: string }>), ['gl-1']);
});
