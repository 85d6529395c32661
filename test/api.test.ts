import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { openClickHouse } from '../lib/clickhouse/client.js';
import { migrate } from '../lib/clickhouse/migrate.js';
import { createHttpServer } from '../lib/http.js';
import { createRegistry } from '../lib/metrics.js';
import { startApi, type ApiServer } from '../api/server.js';
import { registerApi, type LogItem } from '../api/routes.js';
import { createAuthenticator } from '../api/auth.js';
import { runLogs } from '../cli/logs.js';
import { ROOT, eventually, namespace } from './helpers/env.js';

const TOKENS = { acme: 'acme-token-0123456789abcdef', globex: 'globex-token-0123456789abcdef' };
const ADMIN = 'admin-token-0123456789abcdef';
const ns = namespace({ LOGMETER_API_TOKENS: `acme:${TOKENS.acme},globex:${TOKENS.globex}`, LOGMETER_ADMIN_TOKEN: ADMIN });
const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
let api: ApiServer;

const T0 = Date.parse('2026-11-26T10:00:00.000Z');
const at = (offsetMs: number) => new Date(T0 + offsetMs).toISOString();
/** Docker-like 64-hex container ids, distinct per tenant even where names collide. */
const cid = (tenant: string, name: string) => createHash('sha256').update(`${tenant}/${name}`).digest('hex');

// The logs table's columns as the log sink writes them: `line` arrives as base64 through the ephemeral `line_b64`.
const LOG_COLUMNS: [string, ...string[]] = ['event_id', 'tenant', 'app', 'node', 'container_id', 'container_name', 'ts', 'ts_nanos', 'seq', 'stream', 'tty', 'line_b64', 'original_length', 'truncated', 'invalid_utf8', 'log_format', 'kind'];

interface LogFixture {
  id: string;
  tenant: string;
  app: string;
  container: string;
  ms: number;
  stream: 'stdout' | 'stderr';
  kind: 'access' | 'debug';
  line: string | Buffer;
  invalid?: boolean;
  /** Nanoseconds past the millisecond and the same-timestamp sequence (default 0). */
  nanos?: number;
  seq?: number;
}

function logRow(f: LogFixture) {
  const bytes = Buffer.isBuffer(f.line) ? f.line : Buffer.from(f.line, 'utf8');
  return {
    event_id: f.id,
    tenant: f.tenant,
    app: f.app,
    node: 'node-1',
    container_id: cid(f.tenant, f.container),
    container_name: f.container,
    ts: f.ms,
    ts_nanos: f.nanos ?? 0,
    seq: f.seq ?? 0,
    stream: f.stream,
    tty: false,
    line_b64: bytes.toString('base64'),
    original_length: bytes.length,
    truncated: false,
    invalid_utf8: Boolean(f.invalid),
    log_format: f.kind === 'access' ? 'nginx-combined' : '',
    kind: f.kind,
  };
}

async function insertLogs(fixtures: LogFixture[]): Promise<void> {
  await ch.client.insert({ table: ch.table('logs'), values: fixtures.map(logRow), format: 'JSONEachRow', columns: LOG_COLUMNS });
}

const INVALID = Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0x62, 0x79, 0x74, 0x65, 0x73]);

const LOGS: LogFixture[] = [
  { id: 'a-1', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 1000, stream: 'stdout', kind: 'access', line: 'GET /index.html 200' },
  { id: 'a-2', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 2000, stream: 'stderr', kind: 'debug', line: 'warning: slow query took 120ms' },
  { id: 'a-3', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 3000, stream: 'stdout', kind: 'debug', line: `user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left` },
  { id: 'a-4', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 4000, stream: 'stdout', kind: 'debug', line: 'path C:\\temp\\new is 100% done_ok' },
  { id: 'a-5', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 5000, stream: 'stderr', kind: 'debug', line: INVALID, invalid: true },
  { id: 'a-6', tenant: 'acme', app: 'api', container: 'api-1', ms: T0 + 6000, stream: 'stdout', kind: 'access', line: 'POST /login 302' },
  { id: 'a-7', tenant: 'acme', app: 'api', container: 'api-1', ms: T0 + 6000, stream: 'stdout', kind: 'access', line: 'POST /logout 200' },
  { id: 'a-8', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 7000, stream: 'stdout', kind: 'debug', line: 'progress 1000 items' },
  { id: 'a-9', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 8000, stream: 'stdout', kind: 'debug', line: 'ran SELECT * FROM logs WHERE 1=1' },
  { id: 'g-1', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 1500, stream: 'stdout', kind: 'access', line: 'GET /cart 200' },
  { id: 'g-2', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 2500, stream: 'stderr', kind: 'debug', line: `globex also said ' OR 1=1 -- here` },
  // Same app and container name as acme's: names are per tenant, never a way in.
  { id: 'g-3', tenant: 'globex', app: 'web', container: 'web-1', ms: T0 + 3500, stream: 'stdout', kind: 'debug', line: 'globex web 100% done_ok C:\\temp\\new' },
];

interface LifecycleFixture {
  id: string;
  tenant: string;
  app: string;
  container: string;
  ms: number;
  action: string;
  kind: 'start' | 'operation';
  image?: string;
  exit_code?: number;
  health?: string;
  ports?: Array<[number, string, string, number]>;
}

function lifecycleRow(f: LifecycleFixture) {
  return {
    event_id: f.id,
    tenant: f.tenant,
    app: f.app,
    node: 'node-1',
    container_id: cid(f.tenant, f.container),
    container_name: f.container,
    ts: f.ms,
    action: f.action,
    actor: 'docker',
    kind: f.kind,
    exit_code: f.exit_code ?? null,
    health: f.health ?? null,
    image: f.image ?? '',
    size: 'small',
    labels: { 'logmeter.tenant': f.tenant },
    networks: ['bridge'],
    // A named tuple reads from a JSON object (input_format_json_named_tuples_as_objects).
    ports: (f.ports ?? []).map(([container_port, protocol, host_ip, host_port]) => ({ container_port, protocol, host_ip, host_port })),
    nano_cpus: 0,
    memory_bytes: 0,
    message: null,
    attributes: {},
  };
}

const WEB_PORTS: Array<[number, string, string, number]> = [[8080, 'tcp', '0.0.0.0', 32768]];
const LIFECYCLE: LifecycleFixture[] = [
  { id: 'al-1', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 100, action: 'create', kind: 'start', image: 'acme/web:1' },
  { id: 'al-2', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 500, action: 'start', kind: 'start', image: 'acme/web:1', ports: WEB_PORTS },
  { id: 'al-3', tenant: 'acme', app: 'api', container: 'api-1', ms: T0 + 600, action: 'start', kind: 'start', image: 'acme/api:2' },
  { id: 'al-4', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 9000, action: 'die', kind: 'operation', image: 'acme/web:1', exit_code: 3, ports: WEB_PORTS },
  { id: 'gl-1', tenant: 'globex', app: 'web', container: 'web-1', ms: T0 + 650, action: 'start', kind: 'start', image: 'globex/web:7' },
  { id: 'gl-2', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 700, action: 'start', kind: 'start', image: 'globex/shop:5', ports: [[9090, 'tcp', '0.0.0.0', 32769]] },
  { id: 'gl-3', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 800, action: 'health_status', kind: 'operation', image: 'globex/shop:5', health: 'healthy' },
];

const HOUR = 3_600_000;
function usageRow(id: string, tenant: string, app: string, period: 'minute' | 'hour', ms: number, meter: string, unit: string, quantity: number, version = 1) {
  return { event_id: id, tenant, app, period, ts: ms, meter, unit, quantity, dimensions: {}, version };
}
const USAGE = [
  usageRow('u-1', 'acme', 'web', 'hour', T0, 'requests', 'count', 99, 1),
  usageRow('u-1', 'acme', 'web', 'hour', T0, 'requests', 'count', 10, 2), // a recomputation replaces the first
  usageRow('u-2', 'acme', 'web', 'minute', T0, 'requests', 'count', 1), // superseded by the hour row
  usageRow('u-3', 'acme', 'web', 'minute', T0 + 60_000, 'requests', 'count', 1),
  usageRow('u-4', 'acme', 'web', 'hour', T0 + HOUR, 'requests', 'count', 5),
  usageRow('u-5', 'acme', 'web', 'minute', T0 + 2 * HOUR, 'requests', 'count', 2), // an hour with minute rows only
  usageRow('u-6', 'acme', 'web', 'minute', T0 + 2 * HOUR + 60_000, 'requests', 'count', 3),
  usageRow('u-7', 'acme', 'api', 'hour', T0, 'requests', 'count', 4),
  usageRow('u-8', 'acme', 'web', 'hour', T0, 'egress_bytes', 'bytes', 1000),
  usageRow('u-9', 'acme', 'web', 'hour', T0 + 14 * HOUR, 'requests', 'count', 6), // 2026-11-27 00:00
  usageRow('gu-1', 'globex', 'shop', 'hour', T0, 'requests', 'count', 7),
];

const DAY_START = Date.parse('2026-11-26T00:00:00Z');
function billingRow(reportId: string, tenant: string, dayStart: number, meter: string, unit: string, quantity: number, free: number, price: number, amount: number, version = 1) {
  return {
    report_id: reportId,
    tenant,
    period_kind: 'daily',
    period_start: dayStart,
    period_end: dayStart + 24 * HOUR,
    meter,
    unit,
    quantity,
    free_quantity: free,
    billable: quantity - free,
    unit_price: price,
    amount,
    currency: 'EUR',
    version,
  };
}
const BILLING = [
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'requests', 'count', 26, 10, 0.1, 99, 1),
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'requests', 'count', 26, 10, 0.1, 1.6, 2), // the re-run wins
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'egress_bytes', 'bytes', 1000, 0, 0.00225, 2.25, 2),
  billingRow('acme/2026-11-25', 'acme', DAY_START - 24 * HOUR, 'requests', 'count', 20, 10, 0.1, 1, 1),
  billingRow('globex/2026-11-26', 'globex', DAY_START, 'requests', 'count', 7, 0, 0.1, 0.7, 1),
];

before(async () => {
  await migrate(ch, ns.logger);
  await insertLogs(LOGS);
  // The same line delivered again (a collector replay): same event_id, one row.
  await insertLogs(LOGS.filter((l) => l.id === 'a-6'));
  await ch.client.insert({ table: ch.table('lifecycle'), values: LIFECYCLE.map(lifecycleRow), format: 'JSONEachRow' });
  await ch.client.insert({ table: ch.table('lifecycle'), values: LIFECYCLE.filter((l) => l.id === 'al-2').map(lifecycleRow), format: 'JSONEachRow' });
  await ch.client.insert({ table: ch.table('usage'), values: USAGE, format: 'JSONEachRow' });
  await ch.client.insert({ table: ch.table('billing_line_items'), values: BILLING, format: 'JSONEachRow' });
  api = await startApi({ config: ns.config, ch, logger: ns.logger, registry: createRegistry(false) });
});

after(async () => {
  await api?.close();
  await ch.close();
  ns.cleanup();
});

async function call(pathAndQuery: string, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api.address}${pathAndQuery}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function items(pathAndQuery: string, token: string): Promise<LogItem[]> {
  const { status, body } = await call(pathAndQuery, token);
  assert.equal(status, 200, JSON.stringify(body));
  return body.items as LogItem[];
}

const ids = (list: Array<{ event_id: string }>) => list.map((i) => i.event_id);
const logsQuery = (params: Record<string, string>) => `/api/v1/logs?${new URLSearchParams(params).toString()}`;

const ACME_NEWEST_FIRST: Array<[string, string]> = [
  ['al-4', 'die exit_code=3'],
  ['a-9', 'ran SELECT * FROM logs WHERE 1=1'],
  ['a-8', 'progress 1000 items'],
  ['a-7', 'POST /logout 200'],
  ['a-6', 'POST /login 302'],
  ['a-5', INVALID.toString('utf8')],
  ['a-4', 'path C:\\temp\\new is 100% done_ok'],
  ['a-3', `user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left`],
  ['a-2', 'warning: slow query took 120ms'],
  ['a-1', 'GET /index.html 200'],
  ['al-3', 'start image=acme/api:2'],
  ['al-2', 'start image=acme/web:1'],
  ['al-1', 'create image=acme/web:1'],
];
const GLOBEX_NEWEST_FIRST: Array<[string, string]> = [
  ['g-3', 'globex web 100% done_ok C:\\temp\\new'],
  ['g-2', `globex also said ' OR 1=1 -- here`],
  ['g-1', 'GET /cart 200'],
  ['gl-3', 'health_status health=healthy'],
  ['gl-2', 'start image=globex/shop:5'],
  ['gl-1', 'start image=globex/web:7'],
];

test('each tenant searches exactly its own lines and events, newest first, a redelivered line once', async () => {
  const acme = await items('/api/v1/logs', TOKENS.acme);
  assert.deepEqual(acme.map((i) => [i.event_id, i.line]), ACME_NEWEST_FIRST);
  const globex = await items('/api/v1/logs', TOKENS.globex);
  assert.deepEqual(globex.map((i) => [i.event_id, i.line]), GLOBEX_NEWEST_FIRST);

  assert.deepEqual(
    acme.find((i) => i.event_id === 'a-1'),
    {
      ts: at(1000),
      ts_nanos: 0,
      seq: 0,
      event_id: 'a-1',
      tenant: 'acme',
      app: 'web',
      container_id: cid('acme', 'web-1'),
      container_name: 'web-1',
      stream: 'stdout',
      kind: 'access',
      line: 'GET /index.html 200',
      invalid_utf8: false,
      truncated: false,
      original_length: 19,
      action: null,
      exit_code: null,
    },
  );
  assert.deepEqual(
    acme.find((i) => i.event_id === 'al-4'),
    {
      ts: at(9000),
      ts_nanos: 0,
      seq: 0,
      event_id: 'al-4',
      tenant: 'acme',
      app: 'web',
      container_id: cid('acme', 'web-1'),
      container_name: 'web-1',
      stream: null,
      kind: 'operation',
      line: 'die exit_code=3',
      invalid_utf8: false,
      truncated: false,
      original_length: 15,
      action: 'die',
      exit_code: 3,
    },
  );
  const { body } = await call('/api/v1/logs', TOKENS.acme);
  assert.equal(body.next_cursor, null);
});

test('filters: app, container (name, id, id prefix), stream, kind, time range', async () => {
  const acme = (params: Record<string, string>) => items(logsQuery(params), TOKENS.acme).then(ids);
  assert.deepEqual(await acme({ app: 'api' }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: 'web-1' }), ['al-4', 'a-9', 'a-8', 'a-5', 'a-4', 'a-3', 'a-2', 'a-1', 'al-2', 'al-1']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1') }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1').slice(0, 12) }), ['a-7', 'a-6', 'al-3']);
  assert.deepEqual(await acme({ container: cid('acme', 'api-1').slice(0, 11) }), [], 'a prefix shorter than 12 characters matches nothing');
  assert.deepEqual(await acme({ stream: 'stderr' }), ['a-5', 'a-2']);
  assert.deepEqual(await acme({ kind: 'access' }), ['a-7', 'a-6', 'a-1']);
  assert.deepEqual(await acme({ kind: 'debug', app: 'web' }), ['a-9', 'a-8', 'a-5', 'a-4', 'a-3', 'a-2']);
  assert.deepEqual(await acme({ kind: 'start' }), ['al-3', 'al-2', 'al-1']);
  assert.deepEqual(await acme({ kind: 'operation' }), ['al-4']);
  assert.deepEqual(await acme({ from: at(2000), to: at(6000) }), ['a-5', 'a-4', 'a-3', 'a-2'], 'from inclusive, to exclusive');
  assert.deepEqual(await acme({ from: '2026-11-26T11:00:00+01:00', to: '2026-11-26T10:00:01' }), ['al-3', 'al-2', 'al-1'], 'zones honoured; no zone is UTC');
});

test("a tenant never sees another tenant's rows, whatever it asks for", async () => {
  const acme = (params: Record<string, string>) => items(logsQuery(params), TOKENS.acme).then(ids);
  const own = ACME_NEWEST_FIRST.map(([id]) => id);
  assert.deepEqual(await acme({ tenant: 'globex' }), own, 'tenant= is ignored for tenant tokens');
  assert.deepEqual(await acme({ app: 'shop' }), []);
  assert.deepEqual(await acme({ container: 'shop-1' }), []);
  assert.deepEqual(await acme({ container: cid('globex', 'shop-1') }), []);
  assert.deepEqual(await acme({ container: cid('globex', 'web-1') }), []);
  assert.deepEqual(await acme({ q: 'globex' }), []);
  assert.deepEqual(await acme({ app: 'web', container: 'web-1', kind: 'start' }), ['al-2', 'al-1'], "not globex's web-1 start");
});

test('search text is matched literally: quotes, backslashes, %, _ and SQL keywords', async () => {
  const search = (token: string, q: string) => items(logsQuery({ q }), token).then(ids);
  assert.deepEqual(await search(TOKENS.acme, `' OR 1=1 --`), ['a-3']);
  assert.deepEqual(await search(TOKENS.globex, `' OR 1=1 --`), ['g-2']);
  assert.deepEqual(await search(TOKENS.acme, `"; DROP TABLE logs; --`), ['a-3']);
  assert.deepEqual(await search(TOKENS.acme, 'drop table'), ['a-3'], 'ASCII letters case-insensitive');
  assert.deepEqual(await search(TOKENS.acme, 'select * from logs'), ['a-9']);
  assert.deepEqual(await search(TOKENS.acme, '\\'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, 'C:\\temp\\new'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, '\\\\'), [], 'two backslashes are two characters, not an escaped one');
  assert.deepEqual(await search(TOKENS.acme, '%'), ['a-4']);
  assert.deepEqual(await search(TOKENS.acme, '100%'), ['a-4'], "% is not a wildcard ('progress 1000 items' does not match)");
  assert.deepEqual(await search(TOKENS.acme, '_'), ['al-4', 'a-4'], "_ is not a wildcard (matches 'done_ok' and 'exit_code')");
  assert.deepEqual(await search(TOKENS.acme, '\\%'), []);
  assert.deepEqual(await search(TOKENS.acme, 'e_it'), []);
  assert.deepEqual(await search(TOKENS.acme, 'exit_code=3'), ['al-4'], 'lifecycle entries are searched as rendered');
  assert.deepEqual(await search(TOKENS.acme, "'"), ['a-3']);
  assert.deepEqual(await search(TOKENS.acme, '"'), ['a-3']);
  const rs = await ch.client.query({ query: `SELECT count() AS n FROM ${ch.table('logs')} FINAL`, format: 'JSONEachRow' });
  assert.deepEqual(await rs.json(), [{ n: LOGS.length }], 'the table is intact');
});

test('an invalid UTF-8 line comes back as text and as its exact bytes', async () => {
  const acme = await items('/api/v1/logs', TOKENS.acme);
  const bad = acme.find((i) => i.event_id === 'a-5');
  assert.ok(bad);
  assert.equal(bad.invalid_utf8, true);
  assert.equal(bad.line, 'bad \uFFFD\uFFFD bytes');
  assert.deepEqual(Buffer.from(bad.line_base64 ?? '', 'base64'), INVALID);
  assert.equal(bad.original_length, INVALID.length);
  assert.deepEqual(acme.filter((i) => 'line_base64' in i).map((i) => i.event_id), ['a-5'], 'only invalid lines carry line_base64');
});

test('missing or wrong token → 401; no answer leaks before authentication', async () => {
  const unauthorized = (error: string) => ({ status: 401, body: { error, code: 'unauthorized' } });
  assert.deepEqual(await call('/api/v1/logs'), unauthorized('missing bearer token'));
  assert.deepEqual(await call('/api/v1/logs', 'not-a-token'), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs', `${TOKENS.acme}x`), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs', TOKENS.acme.slice(0, -1)), unauthorized('invalid token'));
  assert.deepEqual(await call('/api/v1/logs?limit=0'), unauthorized('missing bearer token'), 'bad parameters are not judged for strangers');
  assert.deepEqual(await call('/api/v1/reports/acme%2F2026-11-26'), unauthorized('missing bearer token'));
  const basic = await fetch(`${api.address}/api/v1/usage`, { headers: { authorization: `Basic ${Buffer.from(`acme:${TOKENS.acme}`).toString('base64')}` } });
  assert.equal(basic.status, 401);
  assert.equal(basic.headers.get('www-authenticate'), 'Bearer');
  for (const route of ['/api/v1/usage', '/api/v1/reports', '/api/v1/containers', `/api/v1/containers/web-1/lifecycle`]) {
    assert.equal((await call(route, 'wrong-token-0123456789')).status, 401, route);
  }
});

test('bad parameters → 400 naming the parameter', async () => {
  const bad = async (pathAndQuery: string, param: RegExp) => {
    const { status, body } = await call(pathAndQuery, TOKENS.acme);
    assert.equal(status, 400, pathAndQuery);
    assert.equal(body.code, 'bad_request');
    assert.match(String(body.error), param, pathAndQuery);
  };
  await bad('/api/v1/logs?from=yesterday', /^from: expected an ISO 8601 time/);
  await bad('/api/v1/logs?to=2026-11-26T25:61:00Z', /^to: /);
  await bad('/api/v1/logs?from=2026-11-26T10:00:00Z&to=2026-11-26T09:00:00Z', /^to: must be later than from/);
  await bad('/api/v1/logs?limit=0', /^limit: expected an integer from 1 to 1000, got "0"/);
  await bad('/api/v1/logs?limit=10000', /^limit: expected an integer from 1 to 1000, got "10000"/);
  await bad('/api/v1/logs?limit=-1', /^limit: /);
  await bad('/api/v1/logs?limit=2.5', /^limit: /);
  await bad('/api/v1/logs?kind=trace', /^kind: .*"access"\|"debug"\|"start"\|"operation"/);
  await bad('/api/v1/logs?stream=stdin', /^stream: /);
  await bad('/api/v1/logs?cursor=garbage', /^cursor: not a cursor/);
  await bad('/api/v1/logs?q=', /^q: must not be empty/);
  await bad('/api/v1/logs?app=a&app=b', /^app: expected string, received array/);
  await bad('/api/v1/logs?contianer=web-1', /^unknown parameter contianer/);
  await bad('/api/v1/usage?period=week', /^period: /);
  await bad('/api/v1/usage?from=soon', /^from: /);
  await bad('/api/v1/reports?limit=1001', /^limit: /);
  await bad('/api/v1/containers?order=up', /^unknown parameter order/);
  await bad('/api/v1/containers/web-1/lifecycle?limit=0', /^limit: /);
});

test('paging returns every row exactly once, newest first (and oldest first with order=asc)', async () => {
  const all = ACME_NEWEST_FIRST.map(([id]) => id);
  for (const order of ['desc', 'asc'] as const) {
    const expected = order === 'desc' ? all : [...all].reverse();
    for (const limit of [1, 2, 3, 4, 5, 12, 13]) {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const { status, body } = await call(logsQuery({ limit: String(limit), order, ...(cursor ? { cursor } : {}) }), TOKENS.acme);
        assert.equal(status, 200);
        const page = body.items as LogItem[];
        assert.ok(page.length <= limit);
        seen.push(...ids(page));
        cursor = body.next_cursor as string | null;
        assert.ok(++pages <= all.length + 1, 'paging terminates');
      } while (cursor);
      assert.deepEqual(seen, expected, `order=${order} limit=${limit}`);
    }
  }
});

test('a cursor is stable: rows arriving between pages neither repeat nor shift the next page', async () => {
  const tenant = 'initech';
  const line = (id: string, ms: number): LogFixture => ({ id, tenant, app: 'app', container: 'c-1', ms, stream: 'stdout', kind: 'debug', line: `line ${id}` });
  await insertLogs([line('i-1', T0 + 1), line('i-2', T0 + 2), line('i-3', T0 + 3), line('i-4', T0 + 4)]);
  const first = await call(logsQuery({ tenant, limit: '2' }), ADMIN);
  assert.deepEqual(ids(first.body.items as LogItem[]), ['i-4', 'i-3']);
  // Newer rows, and an older one with the cursor's own timestamp but a later id.
  await insertLogs([line('i-5', T0 + 5), line('i-6', T0 + 6), line('i-3b', T0 + 3)]);
  const second = await call(logsQuery({ tenant, limit: '2', cursor: first.body.next_cursor as string }), ADMIN);
  assert.deepEqual(ids(second.body.items as LogItem[]), ['i-2', 'i-1']);
  assert.equal(second.body.next_cursor, null);
});

test('the operator sees every tenant, or one with tenant=', async () => {
  const admin = (params: Record<string, string>) => items(logsQuery(params), ADMIN);
  const every = await admin({});
  assert.deepEqual(new Set(every.filter((i) => i.tenant !== 'initech').map((i) => i.event_id)), new Set([...ACME_NEWEST_FIRST, ...GLOBEX_NEWEST_FIRST].map(([id]) => id)));
  assert.deepEqual(ids(await admin({ tenant: 'globex' })), GLOBEX_NEWEST_FIRST.map(([id]) => id));
  assert.deepEqual(ids(await admin({ tenant: 'acme', q: `' OR 1=1 --` })), ['a-3']);
  assert.deepEqual(ids(await admin({ q: `' OR 1=1 --` })), ['a-3', 'g-2']);
});

test('usage per meter, app and period: recomputed rows replaced, hour rows supersede minute rows', async () => {
  const usage = async (query: string, token = TOKENS.acme) => {
    const { status, body } = await call(`/api/v1/usage${query}`, token);
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  };
  const row = (period_start: string, app: string, meter: string, unit: string, quantity: number, tenant = 'acme') => ({ tenant, app, meter, unit, period_start, quantity });
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

test('without an admin token, nobody is the operator, not even a loopback caller with no token; tenants stay scoped', async () => {
  const http = createHttpServer({ listen: '127.0.0.1:0', registry: createRegistry(false), logger: ns.logger });
  registerApi(http.app, { ch, tokens: TOKENS, logger: ns.logger });
  try {
    const remote = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '10.1.2.3' });
    assert.equal(remote.statusCode, 401);
    const local = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '127.0.0.1' });
    assert.equal(local.statusCode, 401, 'loopback is not trusted (issue 12)');
    const tenant = await http.app.inject({ url: '/api/v1/logs?tenant=globex', remoteAddress: '127.0.0.1', headers: { authorization: `Bearer ${TOKENS.acme}` } });
    assert.deepEqual(ids(tenant.json<{ items: LogItem[] }>().items), ACME_NEWEST_FIRST.map(([id]) => id));
    const wrong = await http.app.inject({ url: '/api/v1/logs', remoteAddress: '127.0.0.1', headers: { authorization: 'Bearer nope' } });
    assert.equal(wrong.statusCode, 401, 'a wrong token is refused even from loopback');
  } finally {
    await http.close();
  }
});

test('tokens: one per principal, or the API refuses to start', () => {
  assert.throws(() => createAuthenticator({ tokens: { a: 'same-token-0123456789', b: 'same-token-0123456789' } }), /tenant a and tenant b are the same/);
  assert.throws(() => createAuthenticator({ tokens: { a: ADMIN }, adminToken: ADMIN }), /the admin and tenant a are the same/);
});

test('logmeter logs through the running process: oldest to newest, filters, tail limit', async () => {
  const cfg = { ...ns.config, http: { listen: api.address.replace(/^http:\/\//, '') } };
  const run = async (opts: Parameters<typeof runLogs>[1]) => {
    let out = '';
    await runLogs(cfg, opts, (s) => (out += s));
    return out;
  };
  assert.equal(
    await run({ tenant: 'acme', app: 'web', grep: "' or 1=1" }),
    `${at(3000)} acme/web web-1 stdout: user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left\n`,
  );
  assert.equal(
    await run({ tenant: 'acme', container: 'web-1', limit: '3' }),
    [`${at(7000)} acme/web web-1 stdout: progress 1000 items`, `${at(8000)} acme/web web-1 stdout: ran SELECT * FROM logs WHERE 1=1`, `${at(9000)} acme/web web-1 operation: die exit_code=3`, ''].join('\n'),
  );
  const all = await run({ tenant: 'globex', limit: '1000' });
  assert.deepEqual(
    all.trimEnd().split('\n').map((l) => l.slice(l.indexOf(': ') + 2)),
    [...GLOBEX_NEWEST_FIRST].reverse().map(([, line]) => line),
  );
  await assert.rejects(run({ tenant: 'acme', kind: 'trace' }), /^LogmeterError: kind: Invalid option/);
  await assert.rejects(run({ tenant: 'acme', since: 'a while' }), /--since: expected a duration ago/);
  await assert.rejects(run({ tenant: 'acme', limit: '0' }), /--limit: expected a positive integer/);
});

test('logmeter logs --follow prints new rows once, late ones within the grace window too', async () => {
  const cfg = { ...ns.config, http: { listen: api.address.replace(/^http:\/\//, '') } };
  const tenant = 'hooli';
  const now = Date.now();
  const line = (id: string, ms: number): LogFixture => ({ id, tenant, app: 'app', container: 'c-1', ms, stream: 'stdout', kind: 'debug', line: `line ${id}` });
  await insertLogs([line('h-1', now - 60_000), line('h-2', now - 30_000), line('h-3', now - 20_000)]);
  let out = '';
  const stop = new AbortController();
  const running = runLogs(cfg, { tenant, limit: '2', follow: true }, (s) => (out += s), stop.signal);
  try {
    await eventually('the tail', async () => (out.includes('line h-3') ? true : undefined));
    await insertLogs([line('h-4', Date.now())]);
    await eventually('a new line', async () => (out.includes('line h-4') ? true : undefined));
    // Redelivered, and a line that reached ClickHouse late, stamped before the newest printed one.
    await insertLogs([line('h-4', Date.now()), line('h-5', Date.now() - 2000), line('h-6', Date.now() + 1)]);
    await eventually('the late line', async () => (out.includes('line h-5') && out.includes('line h-6') ? true : undefined));
    // Two more polls, which must not print anything again.
    await new Promise((r) => setTimeout(r, 2500));
  } finally {
    stop.abort();
    await running;
  }
  const printed = out.trimEnd().split('\n').map((l) => l.slice(l.lastIndexOf(' ') + 1));
  assert.deepEqual(printed.slice(0, 3), ['h-2', 'h-3', 'h-4'], 'h-1 is older than the tail of two and never printed');
  assert.deepEqual(new Set(printed.slice(3)), new Set(['h-5', 'h-6']));
  assert.equal(printed.length, 5, `each line once:\n${out}`);
});

/** A port nothing listens on (it was free a moment ago). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs an ES module script in a child process (this one already holds an embedded ClickHouse). */
function script(code: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise((resolve) => child.on('close', resolve)) };
}

test('logmeter logs reads ClickHouse directly when no process answers', async () => {
  const own = namespace({ LOGMETER_HTTP: `127.0.0.1:${await closedPort()}` });
  try {
    // It stores two lines, then runs the command, which finds no process on LOGMETER_HTTP.
    const run = script(
      `
      import { Command } from 'commander';
      import { loadConfig } from './lib/config.ts';
      import { createLogger } from './lib/logger.ts';
      import { clickHouseOptions, openClickHouse } from './lib/clickhouse/client.ts';
      import { migrate } from './lib/clickhouse/migrate.ts';
      import { logsCommand } from './cli/logs.ts';
      const config = () => loadConfig({ env: process.env });
      const ch = openClickHouse(clickHouseOptions(config(), createLogger('warn', 2)));
      await migrate(ch, createLogger('warn', 2));
      await ch.client.insert({ table: ch.table('logs'), format: 'JSONEachRow', columns: ${JSON.stringify(LOG_COLUMNS)},
        values: ${JSON.stringify([logRow(LOGS[2]!), logRow(LOGS[10]!)])} });
      await ch.close();
      const program = new Command().exitOverride();
      logsCommand(program, config);
      await program.parseAsync(['node', 'logmeter', 'logs', '--tenant', 'acme', '--grep', "' OR 1=1 --"]);
    `,
      own.env,
    );
    assert.equal(await run.exited, 0, run.output());
    assert.equal(run.output(), `${at(3000)} acme/web web-1 stdout: user said ' OR 1=1 -- and "; DROP TABLE logs; -- then left\n`);
  } finally {
    own.cleanup();
  }
});

test('logmeter api serves the API, /healthz and the operator SQL route, and stops cleanly on SIGTERM', async () => {
  const port = await closedPort();
  const own = namespace({ LOGMETER_HTTP: `127.0.0.1:${port}`, LOGMETER_LOG_LEVEL: 'info', LOGMETER_API_TOKENS: `acme:${TOKENS.acme}`, LOGMETER_ADMIN_TOKEN: ADMIN });
  const run = script(
    `
    import { Command } from 'commander';
    import { loadConfig } from './lib/config.ts';
    import { apiCommand } from './cli/api.ts';
    const program = new Command().exitOverride();
    apiCommand(program, () => loadConfig({ env: process.env }));
    await program.parseAsync(['node', 'logmeter', 'api']);
  `,
    own.env,
  );
  try {
    await eventually('logmeter api up', async () => (run.output().includes('"msg":"logmeter api up"') ? true : undefined), 60_000);
    const base = `http://127.0.0.1:${port}`;
    const health = await fetch(`${base}/healthz`);
    assert.deepEqual(await health.json(), { status: 'ok', checks: { clickhouse: 'ok' } });
    const logs = await fetch(`${base}/api/v1/logs`, { headers: { authorization: `Bearer ${TOKENS.acme}` } });
    assert.deepEqual({ status: logs.status, body: await logs.json() }, { status: 200, body: { items: [], next_cursor: null } });
    assert.equal((await fetch(`${base}/api/v1/logs`)).status, 401);
    const sql = await fetch(`${base}/api/v1/admin/sql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ADMIN}` },
      body: JSON.stringify({ query: `SELECT count() AS n FROM ${own.id}.logs` }),
    });
    assert.equal(await sql.text(), '{"n":0}\n');
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output());
    assert.match(run.output(), /"msg":"stopped"/);
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    own.cleanup();
  }
});

test('lines printed within one millisecond keep their printed order, across pages, both directions', async () => {
  const tenant = 'burst';
  // A burst (a stack trace): same millisecond, rising nanoseconds, ids that sort the other way;
  // then three lines with the very same Docker timestamp, told apart by their sequence.
  const burst: LogFixture[] = Array.from({ length: 9 }, (_, i) => ({ id: `z-${9 - i}`, tenant, app: 'app', container: 'c-1', ms: T0 + 500, nanos: 1000 * (i + 1), stream: i % 3 === 2 ? 'stderr' : 'stdout', kind: 'debug', line: `frame ${i}` }));
  const same: LogFixture[] = [0, 1, 2].map((k) => ({ id: `y-${3 - k}`, tenant, app: 'app', container: 'c-1', ms: T0 + 500, nanos: 999_999, seq: k, stream: 'stdout', kind: 'debug', line: `same ${k}` }));
  await insertLogs([...same].reverse().concat([...burst].reverse()));
  const printed = [...burst.map((f) => f.line), ...same.map((f) => f.line)];
  for (const order of ['asc', 'desc'] as const) {
    const seen: LogItem[] = [];
    let cursor: string | null = null;
    do {
      const { status, body } = await call(logsQuery({ tenant, order, limit: '5', ...(cursor ? { cursor } : {}) }), ADMIN);
      assert.equal(status, 200);
      seen.push(...(body.items as LogItem[]));
      cursor = body.next_cursor as string | null;
    } while (cursor);
    assert.deepEqual(seen.map((i) => i.line), order === 'asc' ? printed : [...printed].reverse(), `order=${order}`);
  }
  const { body } = await call(logsQuery({ tenant, order: 'asc', limit: '12' }), ADMIN);
  const items = body.items as LogItem[];
  assert.deepEqual(items.map((i) => [i.ts, i.ts_nanos, i.seq]).slice(-4), [[at(500), 9000, 0], [at(500), 999_999, 0], [at(500), 999_999, 1], [at(500), 999_999, 2]]);
});
