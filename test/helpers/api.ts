/**
 * The API tests' shared ground (test/api*.test.ts): a known set of log lines, lifecycle
 * events, usage and billing rows of two tenants (acme, globex), and `apiFixture()`, which
 * stores them in the test file's own embedded ClickHouse and serves the API over it.
 */
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { openClickHouse, type ClickHouse } from '../../lib/clickhouse/client.js';
import { migrate } from '../../lib/clickhouse/migrate.js';
import { createRegistry } from '../../lib/metrics.js';
import { startApi, type ApiServer } from '../../api/server.js';
import type { LogItem } from '../../api/logs.js';
import type { AutoscaleSignal, RouteSet, WindowStats } from '../../schemas/events.js';
import { POLICY_DEFAULTS } from '../../processors/autoscale/config.js';
import { signalRow } from '../../processors/autoscale/store.js';
import { ROOT, namespace, type TestNamespace } from './env.js';


export const TOKENS = { acme: 'acme-token-0123456789abcdef', globex: 'globex-token-0123456789abcdef' };
export const ADMIN = 'admin-token-0123456789abcdef';

export const T0 = Date.parse('2026-11-26T10:00:00.000Z');
export const at = (offsetMs: number) => new Date(T0 + offsetMs).toISOString();
/** Docker-like 64-hex container ids, distinct per tenant even where names collide. */
export const cid = (tenant: string, name: string) => createHash('sha256').update(`${tenant}/${name}`).digest('hex');

// The logs table's columns as the log sink writes them: `line` arrives as base64 through the ephemeral `line_b64`.
export const LOG_COLUMNS: [string, ...string[]] = ['event_id', 'tenant', 'app', 'node', 'container_id', 'container_name', 'ts', 'ts_nanos', 'seq', 'stream', 'tty', 'line_b64', 'original_length', 'truncated', 'invalid_utf8', 'log_format', 'kind'];

export interface LogFixture {
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

export function logRow(f: LogFixture) {
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

export const INVALID = Buffer.from([0x62, 0x61, 0x64, 0x20, 0xff, 0xfe, 0x20, 0x62, 0x79, 0x74, 0x65, 0x73]);

export const LOGS: LogFixture[] = [
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

export interface LifecycleFixture {
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

export function lifecycleRow(f: LifecycleFixture) {
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

export const WEB_PORTS: Array<[number, string, string, number]> = [[8080, 'tcp', '0.0.0.0', 32768]];
export const LIFECYCLE: LifecycleFixture[] = [
  { id: 'al-1', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 100, action: 'create', kind: 'start', image: 'acme/web:1' },
  { id: 'al-2', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 500, action: 'start', kind: 'start', image: 'acme/web:1', ports: WEB_PORTS },
  { id: 'al-3', tenant: 'acme', app: 'api', container: 'api-1', ms: T0 + 600, action: 'start', kind: 'start', image: 'acme/api:2' },
  { id: 'al-4', tenant: 'acme', app: 'web', container: 'web-1', ms: T0 + 9000, action: 'die', kind: 'operation', image: 'acme/web:1', exit_code: 3, ports: WEB_PORTS },
  { id: 'gl-1', tenant: 'globex', app: 'web', container: 'web-1', ms: T0 + 650, action: 'start', kind: 'start', image: 'globex/web:7' },
  { id: 'gl-2', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 700, action: 'start', kind: 'start', image: 'globex/shop:5', ports: [[9090, 'tcp', '0.0.0.0', 32769]] },
  { id: 'gl-3', tenant: 'globex', app: 'shop', container: 'shop-1', ms: T0 + 800, action: 'health_status', kind: 'operation', image: 'globex/shop:5', health: 'healthy' },
];

export const HOUR = 3_600_000;
export function usageRow(id: string, tenant: string, app: string, period: 'minute' | 'hour', ms: number, meter: string, unit: string, quantity: number, version = 1) {
  return { event_id: id, tenant, app, period, ts: ms, meter, unit, quantity, dimensions: {}, version };
}
export const USAGE = [
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

export const DAY_START = Date.parse('2026-11-26T00:00:00Z');
export function billingRow(reportId: string, tenant: string, dayStart: number, meter: string, unit: string, quantity: number, free: number, price: number, amount: number, version = 1) {
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
export const BILLING = [
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'requests', 'count', 26, 10, 0.1, 99, 1),
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'requests', 'count', 26, 10, 0.1, 1.6, 2), // the re-run wins
  billingRow('acme/2026-11-26', 'acme', DAY_START, 'egress_bytes', 'bytes', 1000, 0, 0.00225, 2.25, 2),
  billingRow('acme/2026-11-25', 'acme', DAY_START - 24 * HOUR, 'requests', 'count', 20, 10, 0.1, 1, 1),
  billingRow('globex/2026-11-26', 'globex', DAY_START, 'requests', 'count', 7, 0, 0.1, 0.7, 1),
];

/** An autoscale signal of `tenant/app` at `ms` as the autoscale processor stores it (signalRow), with the default policy's targets. */
export function signalFixture(tenant: string, app: string, ms: number, s: { p95: number | null; rate: number; current: number; recommended: number; mode?: 'stable' | 'panic'; panicP95?: number | null; inFlight?: number; reason?: string }) {
  const w = (window_ms: number, p95: number | null): WindowStats => ({
    window_ms,
    requests: Math.round((s.rate * window_ms) / 1000),
    rate_rps: s.rate,
    p50_ms: p95 === null ? null : p95 / 2,
    p95_ms: p95,
    p99_ms: p95,
    rate_5xx: 0,
    rate_504: 0,
    queue_time_p95_ms: null,
    queue_length_max: null,
    in_flight: s.inFlight ?? 0,
  });
  const signal: AutoscaleSignal = {
    event_id: `sig-${tenant}-${app}-${ms}`,
    tenant,
    app,
    node: 'node-1',
    container_id: '',
    ts: ms,
    version: ms,
    host: `${app}.${tenant}.test`,
    stable: w(60_000, s.p95),
    panic: w(6_000, s.panicP95 ?? s.p95),
    current_replicas: s.current,
    recommended_replicas: s.recommended,
    mode: s.mode ?? 'stable',
    reason: s.reason ?? `holding ${s.current}`,
  };
  return signalRow(signal, POLICY_DEFAULTS);
}

/** A route set of `host` (of `tenant/app`) as the route processor publishes it. */
export function routeSetFixture(tenant: string, app: string, host: string, version: number, ms: number, upstreams: Array<[string, string, number]>, reason = 'container started'): RouteSet {
  return {
    event_id: `routes-${host}-${version}`,
    tenant,
    app,
    node: 'node-1',
    container_id: '',
    ts: ms,
    host,
    version,
    upstreams: upstreams.map(([container, address, port]) => ({ container_id: cid(tenant, container), address, port })),
    reason,
  };
}

export const ids = (list: Array<{ event_id: string }>) => list.map((i) => i.event_id);
export const logsQuery = (params: Record<string, string>) => `/api/v1/logs?${new URLSearchParams(params).toString()}`;

export const ACME_NEWEST_FIRST: Array<[string, string]> = [
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
export const GLOBEX_NEWEST_FIRST: Array<[string, string]> = [
  ['g-3', 'globex web 100% done_ok C:\\temp\\new'],
  ['g-2', `globex also said ' OR 1=1 -- here`],
  ['g-1', 'GET /cart 200'],
  ['gl-3', 'health_status health=healthy'],
  ['gl-2', 'start image=globex/shop:5'],
  ['gl-1', 'start image=globex/web:7'],
];

/** A port nothing listens on (it was free a moment ago). */
export { freePort as closedPort } from './env.js';

/** Runs an ES module script in a child process (this one already holds an embedded ClickHouse). */
export function script(code: string, env: NodeJS.ProcessEnv): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out, exited: new Promise((resolve) => child.on('close', resolve)) };
}

export interface ApiFixture {
  ns: TestNamespace;
  ch: ClickHouse;
  /** The API server, started before the file's tests. */
  server: () => ApiServer;
  insertLogs: (fixtures: LogFixture[]) => Promise<void>;
  call: (pathAndQuery: string, token?: string) => Promise<{ status: number; body: Record<string, unknown> }>;
  items: (pathAndQuery: string, token: string) => Promise<LogItem[]>;
}

/** The fixture rows in a new namespace's ClickHouse and the API over them, for the calling test file. */
export function apiFixture(): ApiFixture {
  const ns = namespace({ LOGMETER_API_TOKENS: `acme:${TOKENS.acme},globex:${TOKENS.globex}`, LOGMETER_ADMIN_TOKEN: ADMIN });
  const ch = openClickHouse({ database: ns.id, embeddedPath: path.join(ns.dataDir, 'clickhouse'), logger: ns.logger });
  let api: ApiServer | undefined;
  const server = () => {
    if (!api) throw new Error('the API server is started in before()');
    return api;
  };
  const insertLogs = (fixtures: LogFixture[]) => ch.insert('logs', fixtures.map(logRow), LOG_COLUMNS);
  const call = async (pathAndQuery: string, token?: string) => {
    const res = await fetch(`${server().address}${pathAndQuery}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  before(async () => {
    await migrate(ch, ns.logger);
    await insertLogs(LOGS);
    // The same line delivered again (a collector replay): same event_id, one row.
    await insertLogs(LOGS.filter((l) => l.id === 'a-6'));
    await ch.insert('lifecycle', LIFECYCLE.map(lifecycleRow));
    await ch.insert('lifecycle', LIFECYCLE.filter((l) => l.id === 'al-2').map(lifecycleRow));
    await ch.insert('usage', USAGE);
    await ch.insert('billing_line_items', BILLING);
    api = await startApi({ config: ns.config, ch, logger: ns.logger, registry: createRegistry(false) });
  });

  after(async () => {
    await api?.close();
    await ch.close();
    ns.cleanup();
  });

  return {
    ns,
    ch,
    server,
    insertLogs,
    call,
    items: async (pathAndQuery, token) => {
      const { status, body } = await call(pathAndQuery, token);
      assert.equal(status, 200, JSON.stringify(body));
      return body.items as LogItem[];
    },
  };
}
