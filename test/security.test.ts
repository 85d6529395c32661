/**
 * Tenant isolation and API security, against the process's whole HTTP surface as
 * `logmeter up` serves it (app/runtime.ts): `/api/v1` (logs, usage, reports,
 * containers), the operator routes `POST /api/v1/admin/sql` and `/admin/report`,
 * `/metrics` and `/healthz`.
 *
 * Two tenants' data arrive through the real pipeline: containers on the real dockerd
 * print lines that look like SQL, query parameters, templates, format strings, pino
 * JSON and ANSI escapes; the collector sends them to Kafka, the log sink stores them in
 * the embedded ClickHouse; usage goes through the usage topic and the sink; reports are
 * computed through the operator route. Then every endpoint is tried, table-style, with
 * no token, wrong and malformed tokens, one tenant's token on the other's ids, SQL-like,
 * oversized and out-of-range parameters, unknown keys and path traversal. Each case
 * asserts an exact status and error code, and that no answer to one tenant holds a row
 * or identifier of the other. The table of cases and the counts are printed.
 *
 * Requests go over a raw socket so that what is sent is exactly what the case says:
 * `fetch` would resolve `../` and refuse NUL bytes before they reach the server.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { readdirSync, writeFileSync } from 'node:fs';
import { startProcess, type AppRuntime } from '../app/runtime.js';
import { startProcessors, stopAll, type Running } from '../app/pipeline.js';
import { createHttpServer } from '../lib/http.js';
import { createRegistry } from '../lib/metrics.js';
import { dataPath } from '../lib/config.js';
import { registerTenantRoutes } from '../api/index.js';
import { registerSqlRoute } from '../api/admin-sql.js';
import { registerReportRoute } from '../api/admin-report.js';
import { createCollector, type Collector } from '../ingest/collector.js';
import type { UsageRecord } from '../schemas/events.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers, runContainer } from './helpers/docker.js';

const A = 'alpha';
const B = 'bravo';
const TOKENS = { [A]: 'alpha-token-0123456789abcdef', [B]: 'bravo-token-0123456789abcdef' } as const;
const ADMIN = 'admin-token-0123456789abcdef';

const ns = namespace({ LOGMETER_API_TOKENS: `${A}:${TOKENS[A]},${B}:${TOKENS[B]}`, LOGMETER_ADMIN_TOKEN: ADMIN });
const prefix = `${ns.id}.`;
const config = { ...ns.config, collector: { ...ns.config.collector, labelPrefix: prefix }, processors: { ...ns.config.processors, sinkBatchMs: 100 } };

// ---------------------------------------------------------------------------------
// What the tenants' containers print

const ESC = '\u001b';
/**
 * Lines that would do something if anything on the way interpreted them: SQL,
 * ClickHouse query parameters, shell/JS/Jinja/ERB templates, printf formats, a
 * pino-looking JSON record claiming another tenant, ANSI escapes, prototype keys.
 */
const PAYLOADS: string[] = [
  `'; DROP TABLE logs; --`,
  `' OR '1'='1' UNION ALL SELECT tenant, line FROM logs --`,
  `SELECT * FROM system.tables WHERE name = {name:String}`,
  `param {tenant:String} {q:String} {limit:UInt32} {x:Array(String)}`,
  '${process.env.HOME} ${x} $HOME $(id) `id`',
  `{{7*7}} {{constructor.constructor('return process')()}} <%= 7*7 %> #{7*7} {x}`,
  `%s %d %i %j %o %O %% %n %x %c`,
  `{"level":50,"time":1764000000000,"tenant":"${B}","msg":"pino-looking record","err":{"type":"Error"}}`,
  `${ESC}[31mRED${ESC}[0m ${ESC}]0;window title\u0007 ${ESC}[2J${ESC}[H cleared`,
  `C:\\new\\table\\x \\\\ \\' \\" \\0 \\n`,
  `logmeter.tenant=${B} tenant=${B} __proto__ {"__proto__":{"polluted":true}}`,
  `tab\there and trailing spaces   `,
];

/** `sh -c` that prints the lines exactly: base64 keeps the shell from touching them. */
const printScript = (lines: string[]) => `echo '${Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8').toString('base64')}' | base64 -d`;

// B's lines carry a marker, so any of them in A's answers is plain to see.
const MARKER = `BRAVO-ONLY-${ns.id}`;
const A_LINES = PAYLOADS;
const B_LINES = PAYLOADS.map((p) => `${MARKER} ${p}`);
const APPS = { [A]: 'web', [B]: `secret-app-${ns.id}` } as const;
const NAMES = { [A]: `${ns.id}-alpha-web-1`, [B]: `${ns.id}-bravo-secret-1` } as const;

// The previous whole UTC hour: usage there, reports for it.
const HOUR = 3_600_000;
const USAGE_HOUR = Math.floor(Date.now() / HOUR) * HOUR - HOUR;
const PERIOD = new Date(USAGE_HOUR).toISOString().slice(0, 13);
/** A tenant name that is a path: its report files must still land inside the reports directory. */
const TRAVERSAL_TENANT = '../../escape';

/** Figures for the reader of the test output (the runner shows stdout). */
const print = (text: string) => void process.stdout.write(`${text}\n`);

let rt: AppRuntime;
let running: Running[] = [];
let collector: Collector;
let base: { host: string; port: number };

/** What belongs to one tenant: anything of it in the other's answers is a leak. */
interface Owned {
  containerIds: string[];
  eventIds: string[];
  reportIds: string[];
  /** Strings that only this tenant's rows contain. */
  markers: string[];
}
const owned: Record<typeof A | typeof B, Owned> = {
  [A]: { containerIds: [], eventIds: [], reportIds: [], markers: [] },
  [B]: { containerIds: [], eventIds: [], reportIds: [], markers: [MARKER, APPS[B], NAMES[B]] },
};

async function count(sql: string, params: Record<string, unknown>): Promise<number> {
  const rs = await rt.clickhouse!.client.query({ query: sql, query_params: params, format: 'JSONEachRow' });
  const [row] = await rs.json<{ n: number | string }>();
  return Number(row?.n ?? 0);
}

before(async () => {
  rt = await startProcess(config, { clickhouse: true, logger: ns.logger });
  running = await startProcessors(rt, ['log-sink']);
  collector = createCollector({
    cfg: config.collector,
    node: config.node,
    stateDir: dataPath(config, 'collector'),
    docker,
    bus: rt.bus,
    codec: rt.codec,
    logger: ns.logger,
    registry: rt.registry,
  });
  await collector.start();
  const addr = new URL(await rt.http.listen());
  base = { host: addr.hostname, port: Number(addr.port) };

  const a = await runContainer({ prefix, tenant: A, app: APPS[A], name: NAMES[A], script: printScript(A_LINES) });
  const b = await runContainer({ prefix, tenant: B, app: APPS[B], name: NAMES[B], script: printScript(B_LINES) });
  owned[A].containerIds.push(a.id);
  owned[B].containerIds.push(b.id);
  await a.wait();
  await b.wait();

  const usage = (tenant: string, app: string, meter: string, unit: string, quantity: number): UsageRecord => ({
    event_id: `sec-${tenant}-${app}-${meter}`,
    tenant,
    app,
    node: config.node,
    container_id: '',
    ts: USAGE_HOUR,
    period: 'hour',
    meter,
    unit,
    quantity,
    dimensions: {},
  });
  await rt.bus.publish('usage', [
    { event: usage(A, APPS[A], 'requests', 'request', 1200) },
    { event: usage(A, APPS[A], 'log_bytes', 'byte', 4096) },
    { event: usage(B, APPS[B], 'requests', 'request', 3400) },
    { event: usage(B, APPS[B], 'log_bytes', 'byte', 8192) },
    { event: usage(TRAVERSAL_TENANT, 'x', 'requests', 'request', 1) },
  ]);

  const logs = rt.clickhouse!.table('logs');
  await eventually(
    'both containers\' lines and usage in ClickHouse',
    async () => {
      const lines = await count(`SELECT count() AS n FROM ${logs} FINAL WHERE container_id IN ({a:String}, {b:String})`, { a: a.id, b: b.id });
      const rows = await count(`SELECT count() AS n FROM ${rt.clickhouse!.table('usage')} FINAL WHERE event_id LIKE 'sec-%'`, {});
      const life = await count(`SELECT count() AS n FROM ${rt.clickhouse!.table('lifecycle')} FINAL WHERE container_id IN ({a:String}, {b:String}) AND action = 'die'`, { a: a.id, b: b.id });
      return lines === A_LINES.length + B_LINES.length && rows === 5 && life === 2 ? true : undefined;
    },
    120_000,
  );
  for (const tenant of [A, B, TRAVERSAL_TENANT]) {
    const r = await send({ method: 'POST', target: '/api/v1/admin/report', auth: ADMIN, json: { tenant, period: PERIOD, format: 'json' } });
    assert.equal(r.status, 200, r.text);
  }
  // Everything each tenant owns, as the operator sees it.
  for (const tenant of [A, B] as const) {
    const logsSeen = await send({ method: 'GET', target: `/api/v1/logs?tenant=${tenant}&limit=1000`, auth: ADMIN });
    owned[tenant].eventIds.push(...(logsSeen.json as { items: Array<{ event_id: string }> }).items.map((i) => i.event_id));
    const reports = await send({ method: 'GET', target: `/api/v1/reports?tenant=${tenant}`, auth: ADMIN });
    owned[tenant].reportIds.push(...(reports.json as { items: Array<{ report_id: string }> }).items.map((i) => i.report_id));
  }
  assert.deepEqual(owned[A].reportIds, [`${A}/${PERIOD}`]);
  assert.deepEqual(owned[B].reportIds, [`${B}/${PERIOD}`]);
});

after(async () => {
  await collector?.stop();
  await stopAll(running);
  await rt?.close();
  await removeTestContainers(prefix);
  ns.cleanup();
});

// ---------------------------------------------------------------------------------
// A raw HTTP/1.1 client: the request line and headers go out byte for byte.

interface Sent {
  method: string;
  /** Request target, sent as latin1 bytes (so `\0`, `..` and `\` arrive as written). */
  target: string;
  /** A token (sent as `Bearer <token>`), or `{ header }` for the exact Authorization value(s). */
  auth?: string | { header: string | string[] };
  headers?: Record<string, string>;
  json?: unknown;
  body?: string;
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
  json: unknown;
}

function send(req: Sent, to: { host: string; port: number } = base): Promise<Answer> {
  const lines = [`${req.method} ${req.target} HTTP/1.1`, `host: ${to.host}:${to.port}`, 'connection: close'];
  const auths = req.auth === undefined ? [] : typeof req.auth === 'string' ? [`Bearer ${req.auth}`] : [req.auth.header].flat();
  for (const a of auths) lines.push(`authorization: ${a}`);
  const body = req.json !== undefined ? Buffer.from(JSON.stringify(req.json)) : req.body !== undefined ? Buffer.from(req.body) : undefined;
  const headers: Record<string, string> = { ...(req.json !== undefined ? { 'content-type': 'application/json' } : {}), ...req.headers };
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body) lines.push(`content-length: ${body.length}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(to.port, to.host);
    // The server may answer (431, 413) and close before the whole request is written: the answer counts, not the write.
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`no HTTP answer to ${req.method} ${req.target.slice(0, 200)}: ${JSON.stringify(all.toString('latin1').slice(0, 200))}`));
      const [statusLine = '', ...headerLines] = all.subarray(0, split).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
      const hdrs: Record<string, string> = {};
      for (const h of headerLines) hdrs[h.slice(0, h.indexOf(':')).toLowerCase()] = h.slice(h.indexOf(':') + 1).trim();
      let raw: Buffer = all.subarray(split + 4);
      if (hdrs['transfer-encoding'] === 'chunked') raw = dechunk(raw);
      else if (hdrs['content-length'] !== undefined) raw = raw.subarray(0, Number(hdrs['content-length']));
      const text = raw.toString('utf8');
      let json: unknown;
      try {
        json = hdrs['content-type']?.startsWith('application/json') ? JSON.parse(text) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, headers: hdrs, text, json });
    });
    socket.write(head);
    if (body) socket.write(body);
  });
}

function dechunk(raw: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', at);
    const size = parseInt(raw.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) return Buffer.concat(out);
    out.push(raw.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

// ---------------------------------------------------------------------------------
// Log lines are never interpreted

interface LogItem {
  event_id: string;
  tenant: string;
  app: string;
  container_id: string;
  line: string;
  line_base64?: string;
  invalid_utf8: boolean;
  original_length: number;
}

const q = (params: Record<string, string>) => new URLSearchParams(params).toString();
const lineBytes = (i: LogItem) => (i.line_base64 !== undefined ? Buffer.from(i.line_base64, 'base64') : Buffer.from(i.line, 'utf8'));

test('log lines that look like SQL, parameters, templates, formats, JSON or ANSI come back byte-exact and are never interpreted', async () => {
  for (const tenant of [A, B] as const) {
    const r = await send({ method: 'GET', target: `/api/v1/logs?${q({ container: owned[tenant].containerIds[0]!, kind: 'debug', order: 'asc', limit: '1000' })}`, auth: TOKENS[tenant] });
    assert.equal(r.status, 200, r.text);
    const got = (r.json as { items: LogItem[] }).items;
    const expected = tenant === A ? A_LINES : B_LINES;
    // Lines printed in the same millisecond are listed by event id, not print order: compared as a set of exact byte strings.
    const hex = (b: Buffer) => b.toString('hex');
    assert.deepEqual(got.map((i) => hex(lineBytes(i))).sort(), expected.map((l) => hex(Buffer.from(l, 'utf8'))).sort(), `${tenant}: every line exactly as printed`);
    for (const i of got) {
      assert.equal(i.original_length, lineBytes(i).length, `${tenant}: its length as printed`);
      assert.equal(i.tenant, tenant, 'the tenant comes from the container label, never from the line (the pino-looking line claims another)');
      assert.equal(i.app, APPS[tenant]);
    }
    assert.ok(!r.text.includes(ESC), 'escape bytes reach clients JSON-escaped (\\u001b), never raw');
  }

  // Each payload searched for literally by each tenant: exactly its own copy, whatever it contains.
  const table: string[] = [];
  for (const [n, payload] of PAYLOADS.entries()) {
    for (const tenant of [A, B] as const) {
      const r = await send({ method: 'GET', target: `/api/v1/logs?${q({ q: payload, limit: '1000' })}`, auth: TOKENS[tenant] });
      assert.equal(r.status, 200, r.text);
      const got = (r.json as { items: LogItem[] }).items;
      table.push(`  payload ${String(n).padStart(2)} as ${tenant}: ${r.status}, ${got.length} row(s) ${JSON.stringify(payload).slice(0, 70)}`);
      assert.deepEqual(
        got.map((i) => [i.tenant, lineBytes(i).toString('utf8')]),
        [[tenant, tenant === A ? payload : `${MARKER} ${payload}`]],
        `q=${JSON.stringify(payload)} as ${tenant}`,
      );
    }
  }
  print(`literal search, one row per tenant per payload:\n${table.join('\n')}`);

  // Nothing was expanded or executed: no template rendered, no parameter substituted, no table dropped.
  const all = (await send({ method: 'GET', target: `/api/v1/logs?${q({ container: owned[A].containerIds[0]!, kind: 'debug', limit: '1000' })}`, auth: TOKENS[A] })).json as { items: LogItem[] };
  const text = all.items.map((i) => lineBytes(i).toString('utf8')).join('\n');
  for (const rendered of ['49', process.env.HOME ?? '/root', 'uid=', '[object Object]', 'undefined']) assert.ok(!text.includes(rendered), `nothing rendered as ${rendered}`);
  assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution from a line');
  const ch = rt.clickhouse!;
  assert.equal(await count(`SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE container_id IN ({a:String}, {b:String})`, { a: owned[A].containerIds[0], b: owned[B].containerIds[0] }), PAYLOADS.length * 2, 'the logs table is intact');
  assert.equal(await count(`SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name = 'logs'`, { db: ch.database }), 1);

  // The operator's SQL route binds nothing from lines either: a line's text used as a value is just a value.
  const sql = await send({
    method: 'POST',
    target: '/api/v1/admin/sql',
    auth: ADMIN,
    json: { query: `SELECT count() AS n FROM ${ch.table('logs')} FINAL WHERE position(line, '{tenant:String}') > 0` },
  });
  assert.deepEqual([sql.status, sql.text], [200, '{"n":2}\n']);
});

// ---------------------------------------------------------------------------------
// Every endpoint × hostile requests, table-style

type Tenant = typeof A | typeof B;
/** Whose rows an answer may hold: a tenant's, everyone's (the operator), or no one's (public or refused). */
type Viewer = Tenant | 'operator' | 'nobody';

interface Case {
  group: string;
  name: string;
  req: Sent;
  /** Which server: the main one (admin token configured) or the one without an admin token. */
  server?: 'main' | 'no-admin';
  expect: number;
  /** The `code` of the JSON error body. */
  code?: string;
  viewer: Viewer;
  /** For a 200 listing: it must hold rows (`some`) or none (`none`). */
  rows?: 'some' | 'none';
}

type ParamKind = 'tenant' | 'name' | 'text' | 'time' | 'int' | 'cursor' | 'enum';
interface Endpoint {
  name: string;
  /** The path for a tenant's own ids. */
  path: (t: Tenant) => string;
  params: Record<string, ParamKind>;
}

const reportId = (t: Tenant) => owned[t].reportIds[0]!;
const containerId = (t: Tenant) => owned[t].containerIds[0]!;
const ENDPOINTS: Endpoint[] = [
  {
    name: 'logs',
    path: () => '/api/v1/logs',
    params: { tenant: 'tenant', from: 'time', to: 'time', limit: 'int', cursor: 'cursor', order: 'enum', app: 'name', container: 'name', stream: 'enum', kind: 'enum', q: 'text' },
  },
  { name: 'usage', path: () => '/api/v1/usage', params: { tenant: 'tenant', from: 'time', to: 'time', meter: 'name', app: 'name', period: 'enum' } },
  { name: 'reports', path: () => '/api/v1/reports', params: { tenant: 'tenant', from: 'time', to: 'time', limit: 'int', cursor: 'cursor', order: 'enum', period_kind: 'enum' } },
  { name: 'report', path: (t) => `/api/v1/reports/${encodeURIComponent(reportId(t))}`, params: { tenant: 'tenant' } },
  { name: 'containers', path: () => '/api/v1/containers', params: { tenant: 'tenant', app: 'name', limit: 'int', cursor: 'cursor' } },
  { name: 'lifecycle', path: (t) => `/api/v1/containers/${containerId(t)}/lifecycle`, params: { tenant: 'tenant', from: 'time', to: 'time', limit: 'int', cursor: 'cursor', order: 'enum' } },
];
const isListing = (e: Endpoint) => e.name !== 'report';

/** Values that would change a query if they were spliced into SQL, or a path if joined to one. */
const SQLISH = [
  `' OR 1=1 --`,
  `') OR tenant = '${B}' OR ('`,
  `${B}' UNION ALL SELECT * FROM system.tables --`,
  `{tenant:String}`,
  `\\`,
  `\\' OR 1=1 --`,
  `\u0000`,
  `%_*`,
  `../../etc/passwd`,
  `\r\nx-injected: 1`,
  `\u202e𝕏`,
];
const cursorOf = (v: unknown) => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

/** What each kind of parameter answers to a value: 200 (accepted; a tenant's own rows at most) or 400. */
function paramCases(kind: ParamKind): Array<[string, string, number]> {
  const cases: Array<[string, string, number]> = [];
  const textual = kind === 'tenant' || kind === 'name' || kind === 'text';
  for (const v of SQLISH) cases.push([JSON.stringify(v).slice(1, -1), v, textual ? 200 : 400]);
  cases.push(['empty', '', 400]);
  cases.push(['300 chars', 'x'.repeat(300), kind === 'text' ? 200 : 400]);
  cases.push(['2000 chars', 'x'.repeat(2000), 400]);
  if (kind === 'int') {
    for (const v of ['99999999999999999999', '-1', '0', '1001', 'abc', '1e3', '0x10', ' 1', '+1', '1.0', '\u0661']) cases.push([v, v, 400]);
    for (const v of ['1000', '01']) cases.push([v, v, 200]);
  }
  if (kind === 'time') {
    for (const v of ['999999999d', '999999999h', '999999999m', '-1h', '1y', '2300-01-01', '1899-12-31', '2026-02-30', '2026-11-26T10:00:00+99:99', '2026-11-26T10:00:00Z OR 1=1']) cases.push([v, v, 400]);
    for (const v of ['999999999s', '1900-01-01', '2026-11-26T10:00:00+14:00']) cases.push([v, v, 200]);
  }
  if (kind === 'cursor') {
    cases.push(['ts past the newest time', cursorOf([Number.MAX_SAFE_INTEGER, 'x']), 400]);
    cases.push(['ts before the oldest time', cursorOf([-Number.MAX_SAFE_INTEGER, 'x']), 400]);
    cases.push(['fractional ts', cursorOf([1.5, 'x']), 400]);
    cases.push(['string ts', cursorOf(['1', 'x']), 400]);
    cases.push(['one element', cursorOf([0]), 400]);
    cases.push(['object', cursorOf({ ts: 0, id: 'x' }), 400]);
    cases.push(['SQL in its id', cursorOf([Date.now(), `' OR 1=1 --`]), 200]);
    cases.push(['placeholder in its id', cursorOf([Date.now(), '{cursor_id:String}']), 200]);
  }
  if (kind === 'enum') for (const v of ['ASC', 'desc ', 'all']) cases.push([JSON.stringify(v), v, 400]);
  return cases;
}

function buildCases(): Case[] {
  const cases: Case[] = [];
  const add = (c: Case) => cases.push(c);

  // -- authentication, on every route
  const AUTH: Array<{ name: string; auth?: Sent['auth']; api: number; viewer?: Viewer }> = [
    { name: 'no Authorization', api: 401 },
    { name: 'wrong token', auth: 'wrong-token-0123456789abcdef', api: 401 },
    { name: "A's token + 1 char", auth: `${TOKENS[A]}x`, api: 401 },
    { name: "A's token - 1 char", auth: TOKENS[A].slice(0, -1), api: 401 },
    { name: "A's token, other case", auth: TOKENS[A].toUpperCase(), api: 401 },
    { name: '"Bearer" alone', auth: { header: 'Bearer' }, api: 401 },
    { name: 'Basic scheme', auth: { header: `Basic ${Buffer.from(`${A}:${TOKENS[A]}`).toString('base64')}` }, api: 401 },
    { name: 'Token scheme', auth: { header: `Token ${TOKENS[A]}` }, api: 401 },
    { name: 'two tokens, one header', auth: { header: `Bearer ${TOKENS[A]} ${TOKENS[B]}` }, api: 401 },
    { name: 'two headers, wrong first', auth: { header: ['Bearer wrong-token-0123456789abcdef', `Bearer ${TOKENS[A]}`] }, api: 401 },
    { name: 'latin1 byte in token', auth: { header: `Bearer ${TOKENS[A]}\u00ff` }, api: 401 },
    { name: 'SQL as token', auth: { header: `Bearer '||1=1--` }, api: 401 },
    { name: 'placeholder as token', auth: { header: 'Bearer {tenant:String}' }, api: 401 },
    { name: '8 KiB token', auth: 'x'.repeat(8192), api: 401 },
    { name: '20 KiB token', auth: 'x'.repeat(20_480), api: 431 },
  ];
  const operatorRoutes: Array<{ name: string; target: string; json: unknown }> = [
    { name: 'admin/sql', target: '/api/v1/admin/sql', json: { query: 'SELECT 1 AS one' } },
    { name: 'admin/report', target: '/api/v1/admin/report', json: { tenant: A, period: PERIOD, format: 'json' } },
  ];
  const open = ['/metrics', '/healthz'];
  for (const a of AUTH) {
    const code = a.api === 401 ? 'unauthorized' : undefined;
    for (const e of ENDPOINTS) add({ group: 'auth', name: `${e.name}: ${a.name}`, req: { method: 'GET', target: e.path(A), auth: a.auth }, expect: a.api, code, viewer: 'nobody' });
    add({ group: 'auth', name: `HEAD logs: ${a.name}`, req: { method: 'HEAD', target: '/api/v1/logs', auth: a.auth }, expect: a.api, viewer: 'nobody' });
    for (const o of operatorRoutes) add({ group: 'auth', name: `${o.name}: ${a.name}`, req: { method: 'POST', target: o.target, auth: a.auth, json: o.json }, expect: a.api, code, viewer: 'nobody' });
    // /metrics and /healthz are public, for scrapers and probes: whatever the header, 200 (or 431 when it is too large).
    for (const target of open) add({ group: 'auth', name: `${target}: ${a.name}`, req: { method: 'GET', target, auth: a.auth }, expect: a.api === 431 ? 431 : 200, viewer: 'nobody' });
  }
  for (const t of [A, B] as const) {
    for (const e of ENDPOINTS) add({ group: 'auth', name: `${e.name}: ${t}'s own token`, req: { method: 'GET', target: e.path(t), auth: TOKENS[t] }, expect: 200, viewer: t, ...(isListing(e) ? { rows: 'some' as const } : {}) });
    for (const o of operatorRoutes) add({ group: 'auth', name: `${o.name}: ${t}'s token`, req: { method: 'POST', target: o.target, auth: TOKENS[t], json: o.json }, expect: 401, code: 'unauthorized', viewer: t });
  }
  for (const e of ENDPOINTS) add({ group: 'auth', name: `${e.name}: lower-case "bearer"`, req: { method: 'GET', target: e.path(A), auth: { header: `bearer ${TOKENS[A]}` } }, expect: 200, viewer: A });
  for (const e of ENDPOINTS) add({ group: 'auth', name: `${e.name}: operator token`, req: { method: 'GET', target: e.path(B), auth: ADMIN }, expect: 200, viewer: 'operator' });
  add({ group: 'auth', name: 'HEAD logs: own token', req: { method: 'HEAD', target: '/api/v1/logs', auth: TOKENS[A] }, expect: 200, viewer: A });
  for (const o of operatorRoutes) {
    add({ group: 'auth', name: `${o.name}: operator token`, req: { method: 'POST', target: o.target, auth: ADMIN, json: o.json }, expect: 200, viewer: 'operator' });
    add({ group: 'auth', name: `${o.name}: lower-case "bearer" + operator token`, req: { method: 'POST', target: o.target, auth: { header: `bearer ${ADMIN}` }, json: o.json }, expect: 200, viewer: 'operator' });
  }

  // -- one tenant's token on the other's ids (both ways)
  for (const [me, other] of [[A, B], [B, A]] as const) {
    const mine = TOKENS[me];
    const g = `cross ${me}→${other}`;
    const nf = { expect: 404, code: 'not_found', viewer: me } as const;
    const none = { expect: 200, viewer: me, rows: 'none' } as const;
    const ownRows = { expect: 200, viewer: me, rows: 'some' } as const;
    add({ group: g, name: "other's report, %2F", req: { method: 'GET', target: `/api/v1/reports/${encodeURIComponent(reportId(other))}`, auth: mine }, ...nf });
    add({ group: g, name: "other's report, raw slash", req: { method: 'GET', target: `/api/v1/reports/${reportId(other)}`, auth: mine }, ...nf });
    add({ group: g, name: "other's report, tenant=other", req: { method: 'GET', target: `/api/v1/reports/${encodeURIComponent(reportId(other))}?tenant=${other}`, auth: mine }, ...nf });
    add({ group: g, name: "other's report, lower-case %2f", req: { method: 'GET', target: `/api/v1/reports/${reportId(other).replace('/', '%2f')}`, auth: mine }, ...nf });
    add({ group: g, name: "other's container id", req: { method: 'GET', target: `/api/v1/containers/${containerId(other)}/lifecycle`, auth: mine }, ...nf });
    add({ group: g, name: "other's container id, tenant=other", req: { method: 'GET', target: `/api/v1/containers/${containerId(other)}/lifecycle?tenant=${other}`, auth: mine }, ...nf });
    add({ group: g, name: "other's container id prefix (12)", req: { method: 'GET', target: `/api/v1/containers/${containerId(other).slice(0, 12)}/lifecycle`, auth: mine }, ...nf });
    add({ group: g, name: "other's container name", req: { method: 'GET', target: `/api/v1/containers/${NAMES[other]}/lifecycle`, auth: mine }, ...nf });
    add({ group: g, name: "other's container id upper-case", req: { method: 'GET', target: `/api/v1/containers/${containerId(other).toUpperCase()}/lifecycle`, auth: mine }, ...nf });
    add({ group: g, name: 'logs container=other id', req: { method: 'GET', target: `/api/v1/logs?${q({ container: containerId(other) })}`, auth: mine }, ...none });
    add({ group: g, name: 'logs container=other name', req: { method: 'GET', target: `/api/v1/logs?${q({ container: NAMES[other] })}`, auth: mine }, ...none });
    add({ group: g, name: 'logs app=other app', req: { method: 'GET', target: `/api/v1/logs?${q({ app: APPS[other] })}`, auth: mine }, ...(APPS[other] === APPS[me] ? ownRows : none) });
    add({ group: g, name: "logs q=other's marker", req: { method: 'GET', target: `/api/v1/logs?${q({ q: other === B ? MARKER : NAMES[A] })}`, auth: mine }, ...none });
    add({ group: g, name: 'logs tenant=other (ignored)', req: { method: 'GET', target: `/api/v1/logs?tenant=${other}`, auth: mine }, ...ownRows });
    add({ group: g, name: 'logs tenant=other&tenant=other', req: { method: 'GET', target: `/api/v1/logs?tenant=${other}&tenant=${other}`, auth: mine }, expect: 400, code: 'bad_request', viewer: me });
    // A cursor is only a position (time, id): another tenant's is a position in one's own rows (maybe past all of them).
    add({ group: g, name: "logs cursor from other's listing", req: { method: 'GET', target: `/api/v1/logs?cursor=${cursors[other]}`, auth: mine }, expect: 200, viewer: me });
    add({ group: g, name: 'usage app=other, tenant=other', req: { method: 'GET', target: `/api/v1/usage?${q({ app: APPS[other], tenant: other })}`, auth: mine }, ...none });
    add({ group: g, name: 'usage tenant=other (ignored)', req: { method: 'GET', target: `/api/v1/usage?tenant=${other}`, auth: mine }, ...ownRows });
    add({ group: g, name: 'reports tenant=other (ignored)', req: { method: 'GET', target: `/api/v1/reports?tenant=${other}`, auth: mine }, ...ownRows });
    add({ group: g, name: 'containers tenant=other (ignored)', req: { method: 'GET', target: `/api/v1/containers?tenant=${other}`, auth: mine }, ...ownRows });
    add({ group: g, name: 'containers app=other', req: { method: 'GET', target: `/api/v1/containers?${q({ app: APPS[other] })}`, auth: mine }, ...(APPS[other] === APPS[me] ? ownRows : none) });
    add({ group: g, name: "admin/sql reading other's rows", req: { method: 'POST', target: '/api/v1/admin/sql', auth: mine, json: { query: `SELECT line FROM ${ns.id}.logs WHERE tenant = '${other}'` } }, expect: 401, code: 'unauthorized', viewer: me });
    add({ group: g, name: "admin/report for other", req: { method: 'POST', target: '/api/v1/admin/report', auth: mine, json: { tenant: other, period: PERIOD, format: 'json' } }, expect: 401, code: 'unauthorized', viewer: me });
  }

  // -- parameters: SQL-like, oversized, out of range, unknown keys (tenant A's token)
  for (const e of ENDPOINTS) {
    const target = e.path(A);
    for (const [param, kind] of Object.entries(e.params)) {
      for (const [label, value, expect] of paramCases(kind)) {
        add({
          group: `params ${e.name}`,
          name: `${param}=${label}`,
          req: { method: 'GET', target: `${target}?${q({ [param]: value })}`, auth: TOKENS[A] },
          expect,
          ...(expect === 400 ? { code: 'bad_request' } : {}),
          viewer: A,
        });
      }
    }
    for (const key of ['foo', '__proto__', 'constructor', 'hasOwnProperty', 'toString', 'tenant[]', 'app[x]', 'Tenant', 'limit ', '']) {
      add({ group: `params ${e.name}`, name: `unknown key ${JSON.stringify(key)}`, req: { method: 'GET', target: `${target}?${encodeURIComponent(key)}=1`, auth: TOKENS[A] }, expect: 400, code: 'bad_request', viewer: A });
    }
    add({ group: `params ${e.name}`, name: 'tenant given twice', req: { method: 'GET', target: `${target}?tenant=${A}&tenant=${B}`, auth: TOKENS[A] }, expect: 400, code: 'bad_request', viewer: A });
    add({ group: `params ${e.name}`, name: '100 KiB query string', req: { method: 'GET', target: `${target}?tenant=${'x'.repeat(100 * 1024)}`, auth: TOKENS[A] }, expect: 431, viewer: A });
  }

  // -- path parameters: traversal, encodings, NUL, oversize (tenant A's token)
  const PATHS: Array<[string, string, number]> = [
    ['..%2F..%2Fhealthz', '/api/v1/reports/..%2F..%2Fhealthz', 404],
    ['raw ../../../etc/passwd', '/api/v1/reports/../../../etc/passwd', 404],
    ['%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/api/v1/reports/%2e%2e%2f%2e%2e%2fetc%2fpasswd', 404],
    ['%252e%252e%252f (double-encoded)', '/api/v1/reports/%252e%252e%252fetc', 404],
    ['absolute %2Fetc%2Fpasswd', '/api/v1/reports/%2Fetc%2Fpasswd', 404],
    ['//etc/passwd', '/api/v1/reports//etc/passwd', 404],
    ['raw backslashes', '/api/v1/reports/..\\..\\windows\\win.ini', 404],
    ['%5c..%5c..%5cboot.ini', '/api/v1/reports/%5c..%5c..%5cboot.ini', 404],
    ['report file name .csv', `/api/v1/reports/${encodeURIComponent(reportId(A))}.csv`, 404],
    ['report id + /../ + own id', `/api/v1/reports/${reportId(A)}/../${PERIOD}`, 404],
    ['other report via ../', `/api/v1/reports/${A}/../${reportId(B)}`, 404],
    ['%00 in id', `/api/v1/reports/${encodeURIComponent(reportId(A))}%00`, 404],
    ['%00.csv', `/api/v1/reports/${A}%00.csv`, 404],
    ['SQL in id', `/api/v1/reports/${encodeURIComponent(`' OR 1=1 --`)}`, 404],
    ['SQL in id, closing tenant', `/api/v1/reports/${encodeURIComponent(`x' OR tenant = '${B}`)}`, 404],
    ['placeholder id', `/api/v1/reports/${encodeURIComponent('{report_id:String}')}`, 404],
    ['* id', '/api/v1/reports/*', 404],
    ['257-char id', `/api/v1/reports/${'r'.repeat(257)}`, 400],
    ['4 KiB id', `/api/v1/reports/${'r'.repeat(4096)}`, 400],
    ['malformed %zz', '/api/v1/reports/%zz', 400],
    ['overlong UTF-8 %C0%AE%C0%AE%2F', '/api/v1/reports/%C0%AE%C0%AE%2F', 400],
    ['lone surrogate %ED%A0%80', '/api/v1/reports/%ED%A0%80', 400],
    ['container ..%2F..%2Fhealthz', '/api/v1/containers/..%2F..%2Fhealthz/lifecycle', 404],
    ['container raw ..', '/api/v1/containers/../lifecycle', 404],
    ['container %00', '/api/v1/containers/%00/lifecycle', 404],
    ['container own id + %00', `/api/v1/containers/${containerId(A)}%00/lifecycle`, 404],
    ['container SQL', `/api/v1/containers/${encodeURIComponent(`' OR 1=1 --`)}/lifecycle`, 404],
    ['container placeholder', `/api/v1/containers/${encodeURIComponent('{container:String}')}/lifecycle`, 404],
    ['container own id prefix (11)', `/api/v1/containers/${containerId(A).slice(0, 11)}/lifecycle`, 404],
    ['container backslash', '/api/v1/containers/..\\..\\x/lifecycle', 404],
    // A path parameter (`:id`) is at most 100 characters (Fastify's maxParamLength): longer is 414.
    ['container 101-char id', `/api/v1/containers/${'c'.repeat(101)}/lifecycle`, 414],
    ['container 4 KiB id', `/api/v1/containers/${'c'.repeat(4096)}/lifecycle`, 414],
    ['container malformed %zz', '/api/v1/containers/%zz/lifecycle', 400],
  ];
  for (const [name, target, expect] of PATHS) {
    // A path that does not decode is refused by the router, with Fastify's code.
    const code = expect === 404 ? 'not_found' : expect === 414 ? 'FST_ERR_MAX_PARAM_LENGTH' : name.includes('%') || name.includes('UTF-8') ? 'FST_ERR_BAD_URL' : 'bad_request';
    add({ group: 'paths', name, req: { method: 'GET', target, auth: TOKENS[A] }, expect, code, viewer: A });
  }
  // A raw NUL byte in the request line itself is refused by Node's HTTP parser (Fastify answers its JSON 400).
  add({ group: 'paths', name: 'raw NUL byte in path', req: { method: 'GET', target: `/api/v1/reports/${A}\u0000x`, auth: TOKENS[A] }, expect: 400, viewer: 'nobody' });
  add({ group: 'paths', name: 'raw NUL byte in query', req: { method: 'GET', target: `/api/v1/logs?q=a\u0000b`, auth: TOKENS[A] }, expect: 400, viewer: 'nobody' });

  // -- routes that do not exist, other methods, odd request targets
  const ROUTES: Array<[string, string, string]> = [
    ['GET', '/api/v1', 'no route'],
    ['GET', '/api/v1/', 'no route'],
    ['GET', '/api/v2/logs', 'no route'],
    ['GET', '/api/v1/tenants', 'no route'],
    ['GET', '/api/v1/admin', 'no route'],
    ['GET', '/api/v1/admin/sql', 'GET on a POST route'],
    ['GET', '/api/v1/admin/report', 'GET on a POST route'],
    ['POST', '/api/v1/logs', 'POST on a GET route'],
    ['PUT', '/api/v1/containers', 'PUT'],
    ['DELETE', `/api/v1/reports/${encodeURIComponent(`${A}/${PERIOD}`)}`, 'DELETE a report'],
    ['PATCH', '/api/v1/usage', 'PATCH'],
    ['OPTIONS', '/api/v1/logs', 'OPTIONS'],
    ['GET', '/API/V1/LOGS', 'upper-case path'],
    ['GET', '/api/v1/logs/', 'trailing slash'],
    ['GET', '/api/v1//logs', 'double slash'],
    ['GET', '/api/v1/./logs', 'dot segment'],
    ['GET', '/api/v1/containers/lifecycle', 'lifecycle without id'],
  ];
  for (const [method, target, name] of ROUTES) {
    for (const [who, auth] of [['none', undefined], [A, TOKENS[A]]] as const) {
      add({ group: 'routes', name: `${name} (${who})`, req: { method, target, auth }, expect: 404, code: 'not_found', viewer: 'nobody' });
    }
  }
  add({ group: 'routes', name: 'OPTIONS *', req: { method: 'OPTIONS', target: '*' }, expect: 404, code: 'not_found', viewer: 'nobody' });
  // The wildcard route takes an empty report id: authentication first, then the id is refused.
  add({ group: 'routes', name: 'report with empty id (none)', req: { method: 'GET', target: '/api/v1/reports/' }, expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ group: 'routes', name: `report with empty id (${A})`, req: { method: 'GET', target: '/api/v1/reports/', auth: TOKENS[A] }, expect: 400, code: 'bad_request', viewer: A });
  add({ group: 'routes', name: 'container with empty id', req: { method: 'GET', target: '/api/v1/containers//lifecycle', auth: TOKENS[A] }, expect: 400, code: 'bad_request', viewer: A });
  // HTTP/1.1 servers must accept the absolute form (RFC 9112 3.2.2): the path is what counts, the host is ignored.
  add({ group: 'routes', name: 'absolute-form target (none)', req: { method: 'GET', target: 'http://evil.example/api/v1/logs' }, expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ group: 'routes', name: `absolute-form target (${A})`, req: { method: 'GET', target: 'http://evil.example/api/v1/logs', auth: TOKENS[A] }, expect: 200, viewer: A, rows: 'some' });

  // -- the operator routes' bodies (operator token)
  const sql = (json: unknown) => ({ method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, json });
  const report = (json: unknown) => ({ method: 'POST', target: '/api/v1/admin/report', auth: ADMIN, json });
  const BODIES: Array<[string, Sent, number, string | undefined]> = [
    ['sql: text/plain body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'text/plain' }, body: 'SELECT 1' }, 400, 'bad_request'],
    ['sql: form body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'query=SELECT+1' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['sql: no content-type', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, body: '{"query":"SELECT 1"}' }, 415, 'FST_ERR_CTP_INVALID_MEDIA_TYPE'],
    ['sql: truncated JSON', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/json' }, body: '{"query":' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['sql: empty JSON body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/json' }, body: '' }, 400, 'FST_ERR_CTP_EMPTY_JSON_BODY'],
    ['sql: __proto__ in body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/json' }, body: '{"__proto__":{"query":"SELECT 1"}}' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['sql: constructor.prototype in body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/json' }, body: '{"constructor":{"prototype":{"query":"SELECT 1"}}}' }, 400, 'FST_ERR_CTP_INVALID_JSON_BODY'],
    ['sql: 2 MiB body', { method: 'POST', target: '/api/v1/admin/sql', auth: ADMIN, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: `SELECT '${'x'.repeat(2 * 1024 * 1024)}'` }) }, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'],
    ['sql: query is a number', sql({ query: 1 }), 400, 'bad_request'],
    ['sql: no query', sql({}), 400, 'bad_request'],
    ['sql: body is an array', sql(['SELECT 1']), 400, 'bad_request'],
    ['sql: DROP TABLE', sql({ query: `DROP TABLE ${ns.id}.logs` }), 400, 'sql_refused'],
    ['sql: SELECT; DROP', sql({ query: `SELECT 1; DROP TABLE ${ns.id}.logs` }), 400, 'sql_refused'],
    ['sql: INSERT', sql({ query: `INSERT INTO ${ns.id}.logs (tenant) VALUES ('x')` }), 400, 'sql_refused'],
    ['sql: ALTER … DELETE', sql({ query: `ALTER TABLE ${ns.id}.logs DELETE WHERE 1` }), 400, 'sql_refused'],
    ['sql: unbound {x:String}', sql({ query: 'SELECT {x:String}' }), 400, undefined],
    ['sql: syntax error', sql({ query: 'SELECT FROM WHERE' }), 400, undefined],
    ['report: no tenant', report({ period: PERIOD }), 400, 'bad_request'],
    ['report: tenant is a number', report({ tenant: 1, period: PERIOD }), 400, 'bad_request'],
    ['report: body is a string', report('alpha'), 400, 'bad_request'],
    ['report: unknown tenant', report({ tenant: 'nobody-here', period: PERIOD }), 400, 'unknown_tenant'],
    ['report: tenant ../../etc/passwd', report({ tenant: '../../etc/passwd', period: PERIOD }), 400, 'unknown_tenant'],
    ['report: tenant with NUL', report({ tenant: `${A}\u0000`, period: PERIOD }), 400, 'unknown_tenant'],
    ['report: tenant SQL', report({ tenant: `${A}' OR 1=1 --`, period: PERIOD }), 400, 'unknown_tenant'],
    ['report: period ../../x', report({ tenant: A, period: '../../x' }), 400, 'invalid_period'],
    ['report: period SQL', report({ tenant: A, period: `2026-11' OR 1=1 --` }), 400, 'invalid_period'],
    ['report: no period', report({ tenant: A }), 400, 'invalid_period'],
    ['report: period and from/to', report({ tenant: A, period: PERIOD, from: PERIOD, to: PERIOD }), 400, 'invalid_period'],
    ['report: from/to not times', report({ tenant: A, from: 'yesterday', to: 'today' }), 400, 'invalid_period'],
    ['report: format xml', report({ tenant: A, period: PERIOD, format: 'xml' }), 400, 'bad_request'],
    ['report: format csv', report({ tenant: A, period: PERIOD, format: 'csv' }), 200, undefined],
    ["report: other tenant's (operator)", report({ tenant: B, period: PERIOD, format: 'table' }), 200, undefined],
  ];
  for (const [name, req, expect, code] of BODIES) add({ group: 'operator bodies', name, req, expect, ...(code ? { code } : {}), viewer: 'operator' });

  // -- the same process without an admin token: nobody is the operator, not even a loopback caller (issue 12); a presented token never is
  const na = { server: 'no-admin' } as const;
  add({ ...na, group: 'no admin token', name: 'logs, no token from loopback', req: { method: 'GET', target: `/api/v1/logs?tenant=${B}` }, expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ ...na, group: 'no admin token', name: 'admin/sql, no token from loopback', req: sqlOf(undefined), expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ ...na, group: 'no admin token', name: "logs, A's token", req: { method: 'GET', target: `/api/v1/logs?tenant=${B}`, auth: TOKENS[A] }, expect: 200, viewer: A, rows: 'some' });
  add({ ...na, group: 'no admin token', name: 'logs, wrong token', req: { method: 'GET', target: '/api/v1/logs', auth: 'wrong-token-0123456789abcdef' }, expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ ...na, group: 'no admin token', name: "admin/sql, A's token", req: sqlOf(TOKENS[A]), expect: 401, code: 'unauthorized', viewer: A });
  add({ ...na, group: 'no admin token', name: 'admin/sql, wrong token', req: sqlOf('wrong-token-0123456789abcdef'), expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ ...na, group: 'no admin token', name: 'admin/sql, malformed header', req: { ...sqlOf(undefined), auth: { header: 'Basic eDp5' } }, expect: 401, code: 'unauthorized', viewer: 'nobody' });
  add({ ...na, group: 'no admin token', name: "admin/report for B, A's token", req: { method: 'POST', target: '/api/v1/admin/report', auth: TOKENS[A], json: { tenant: B, period: PERIOD } }, expect: 401, code: 'unauthorized', viewer: A });
  return cases;
}

/** The operator SQL route asked for B's lines. */
function sqlOf(auth: string | undefined): Sent {
  return { method: 'POST', target: '/api/v1/admin/sql', auth, json: { query: `SELECT line FROM ${ns.id}.logs WHERE tenant = '${B}'` } };
}

/** A first-page cursor of each tenant's log listing. */
const cursors: Record<Tenant, string> = { [A]: '', [B]: '' };

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Every `tenant` value anywhere in a JSON answer. */
function tenantsIn(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) tenantsIn(x, out);
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'tenant' && typeof x === 'string') out.push(x);
      else tenantsIn(x, out);
    }
  }
  return out;
}

/** Identifiers of tenants other than the viewer's in the answer that the request did not itself name. */
function leaked(c: Case, a: Answer): string[] {
  if (c.viewer === 'operator') return [];
  const others = ([A, B] as const).filter((t) => t !== c.viewer);
  const asked = `${decoded(c.req.target)} ${c.req.json !== undefined ? JSON.stringify(c.req.json) : (c.req.body ?? '')}`;
  const found: string[] = [];
  for (const t of others) {
    const o = owned[t];
    for (const id of [...o.containerIds, ...o.containerIds.map((x) => x.slice(0, 12)), ...o.eventIds, ...o.reportIds, ...o.markers]) {
      if (a.text.includes(id) && !asked.includes(id)) found.push(id);
    }
  }
  return found;
}

test('every endpoint × no token, wrong and malformed tokens, the other tenant\'s ids, hostile parameters and paths: exact statuses, no row of the other tenant, never a 500', async () => {
  for (const t of [A, B] as const) {
    const r = await send({ method: 'GET', target: '/api/v1/logs?limit=1', auth: TOKENS[t] });
    cursors[t] = (r.json as { next_cursor: string }).next_cursor;
    assert.ok(cursors[t], `${t} has more than one row`);
  }
  // The same routes on a server of the same process without an admin token.
  const noAdmin = createHttpServer({ listen: '127.0.0.1:0', registry: createRegistry(false), logger: ns.logger });
  registerTenantRoutes(noAdmin.app, { ch: rt.clickhouse!, tokens: config.api.tokens, logger: ns.logger });
  registerSqlRoute(noAdmin.app, rt.clickhouse!, undefined);
  registerReportRoute(noAdmin.app, { ch: rt.clickhouse!, adminToken: undefined, priceList: config.processors.priceList, reportsDir: dataPath(config, 'reports'), logger: ns.logger });
  const noAdminAddr = new URL(await noAdmin.listen());
  const servers = { main: base, 'no-admin': { host: noAdminAddr.hostname, port: Number(noAdminAddr.port) } };

  const cases = buildCases();
  const rows: string[] = [];
  const markdown: string[] = ['| # | group | case | request | expected | observed | result |', '| ---: | --- | --- | --- | --- | ---: | --- |'];
  const failures: string[] = [];
  const byStatus = new Map<number, number>();
  const byGroup = new Map<string, { n: number; statuses: Map<number, number> }>();
  let otherTenantRows = 0;
  let leaks = 0;
  const started = Date.now();
  try {
    for (const [n, c] of cases.entries()) {
      const a = await send(c.req, servers[c.server ?? 'main']);
      const problems: string[] = [];
      if (a.status !== c.expect) problems.push(`status ${a.status}, expected ${c.expect}: ${a.text.slice(0, 300)}`);
      if (a.status >= 400 && c.req.method !== 'HEAD') {
        const body = a.json as { error?: unknown; code?: unknown } | undefined;
        if (typeof body?.error !== 'string' || body.error === '') problems.push(`no JSON error message: ${a.text.slice(0, 200)}`);
        if (c.code !== undefined && body?.code !== c.code) problems.push(`code ${String(body?.code)}, expected ${c.code}`);
      }
      if (c.viewer === A || c.viewer === B) {
        const foreign = tenantsIn(a.json).filter((t) => t !== c.viewer);
        otherTenantRows += foreign.length;
        if (foreign.length) problems.push(`${foreign.length} row(s) of ${[...new Set(foreign)].join(', ')}`);
      }
      const leak = leaked(c, a);
      leaks += leak.length;
      if (leak.length) problems.push(`identifiers of the other tenant: ${leak.join(', ')}`);
      if (a.status === 200 && c.rows) {
        const listed = (a.json as { items?: unknown[] } | undefined)?.items;
        if (!Array.isArray(listed)) problems.push('no items');
        else if (c.rows === 'some' ? listed.length === 0 : listed.length > 0) problems.push(`${listed.length} rows, expected ${c.rows}`);
      }
      byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
      const g = byGroup.get(c.group) ?? { n: 0, statuses: new Map<number, number>() };
      g.n++;
      g.statuses.set(a.status, (g.statuses.get(a.status) ?? 0) + 1);
      byGroup.set(c.group, g);
      const shownTarget = JSON.stringify(c.req.target.length > 70 ? `${c.req.target.slice(0, 70)}…(${c.req.target.length} chars)` : c.req.target).slice(1, -1);
      rows.push(`${String(n + 1).padStart(4)}  ${c.group.padEnd(18)} ${c.name.slice(0, 48).padEnd(48)} ${c.req.method.padEnd(7)} ${shownTarget.padEnd(80)} ${String(c.expect)} ${String(a.status)} ${problems.length ? 'FAIL' : 'ok'}`);
      // Code spans keep backslashes and markup as written; only the cell separator and backticks need care.
      const cell = (v: string) => `\`${v.replaceAll('|', '\\|').replaceAll('`', "'")}\``;
      markdown.push(`| ${n + 1} | ${c.group} | ${cell(c.name)} | ${c.req.method} ${cell(shownTarget)} | ${c.expect}${c.code ? ` ${c.code}` : ''} | ${a.status} | ${problems.length ? 'FAIL' : 'ok'} |`);
      if (problems.length) failures.push(`#${n + 1} ${c.group} / ${c.name} (${c.req.method} ${shownTarget}): ${problems.join('; ')}`);
    }
  } finally {
    await noAdmin.close();
  }
  const elapsed = Date.now() - started;
  const statuses = (m: Map<number, number>) => [...m].sort((x, y) => x[0] - y[0]).map(([s, k]) => `${s} × ${k}`).join(', ');
  print(['   #  group              case                                             method  target                                                                           exp got', ...rows].join('\n'));
  print(`\n${cases.length} requests in ${elapsed} ms; by status: ${statuses(byStatus)}`);
  for (const [g, v] of byGroup) print(`  ${g.padEnd(18)} ${String(v.n).padStart(4)} requests: ${statuses(v.statuses)}`);
  print(`rows of the other tenant returned: ${otherTenantRows}; identifiers of the other tenant returned: ${leaks}; 500s: ${byStatus.get(500) ?? 0}`);
  // SECURITY_TABLE_OUT=file writes every case as Markdown rows, for docs/reliability/security.md.
  if (process.env.SECURITY_TABLE_OUT) writeFileSync(process.env.SECURITY_TABLE_OUT, `${markdown.join('\n')}\n`);
  assert.deepEqual(failures, []);
  assert.equal(byStatus.get(500) ?? 0, 0);
  assert.equal(otherTenantRows, 0);
  assert.equal(leaks, 0);
});

test('report files stay inside the reports directory whatever the tenant name', async () => {
  const reportsDir = dataPath(config, 'reports');
  const r = await send({ method: 'POST', target: '/api/v1/admin/report', auth: ADMIN, json: { tenant: TRAVERSAL_TENANT, period: PERIOD, format: 'json' } });
  assert.equal(r.status, 200, r.text);
  const files = (r.json as { files: { csv: string; json: string } }).files;
  for (const f of [files.csv, files.json]) assert.ok(path.resolve(f).startsWith(`${path.resolve(reportsDir)}${path.sep}`), `${f} is inside ${reportsDir}`);
  assert.deepEqual(readdirSync(reportsDir).sort(), [A, B, encodeURIComponent(TRAVERSAL_TENANT)].sort());
  assert.deepEqual(readdirSync(path.join(reportsDir, encodeURIComponent(TRAVERSAL_TENANT))).sort(), [`${PERIOD}.csv`, `${PERIOD}.json`]);
  // Nothing was written next to or above the data directory.
  assert.deepEqual(readdirSync(path.dirname(reportsDir)).filter((f) => f === 'escape'), []);
  assert.deepEqual(readdirSync(path.dirname(path.dirname(reportsDir))).filter((f) => f === 'escape'), []);
});
