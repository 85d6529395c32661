/**
 * The tenant log center API under `/api/v1`: log search, usage, billing reports and
 * containers, read from ClickHouse.
 *
 * Isolation: every query is scoped by the caller's principal, never by a parameter. A
 * tenant token always reads its own tenant's rows: its `tenant=` parameter is ignored,
 * and another tenant's report or container answers 404 (its existence is not
 * revealed). Only the operator reads across tenants, optionally narrowed by `tenant=`.
 *
 * Every table is a ReplacingMergeTree keyed by event id, so every read uses FINAL: a
 * redelivered event is one row. Every value reaches ClickHouse as a bound query
 * parameter; the only text spliced into statements is table names and expressions
 * chosen here.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { Logger } from '../lib/logger.js';
import { createAuthenticator, sendUnauthorized, type Authenticator, type Principal } from './auth.js';

export const API_PREFIX = '/api/v1';
export const LOG_KINDS = ['access', 'debug', 'start', 'operation'] as const;
export type LogKind = (typeof LOG_KINDS)[number];
export const MAX_LIMIT = 1000;

/** A 4xx answer, with the `{error, code}` body every logmeter error has. */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 404,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Whose rows a query may read. Built only by `scopeFor`, so a tenant can never widen it. */
export type Scope = { tenant: string } | { allTenants: true };

export function scopeFor(principal: Principal, requestedTenant: string | undefined): Scope {
  if (principal.kind === 'tenant') return { tenant: principal.tenant };
  return requestedTenant === undefined ? { allTenants: true } : { tenant: requestedTenant };
}

// ---------------------------------------------------------------------------------
// Parameters

const DURATION_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const ISO_TIME = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?)?$/i;
// DateTime64(3)'s range; outside it ClickHouse would clamp rather than refuse.
const MIN_TIME = Date.UTC(1900, 0, 1);
const MAX_TIME = Date.UTC(2299, 11, 31);

const inRange = (t: number) => Number.isSafeInteger(t) && t >= MIN_TIME && t <= MAX_TIME;

/** Whether `YYYY-MM-DD` names a day of the calendar (`Date.parse` rolls 2026-02-30 over to March 2). */
function isCalendarDate(date: string): boolean {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

/**
 * A point in time: ISO 8601 (`2026-11-26`, `2026-11-26T10:00:00Z`, `…+02:00`; no zone
 * means UTC) or a duration before `now` (`10m`, `2h`, `7d`, `30s`, `500ms`). Undefined
 * for anything else, and for times outside 1900–2299 (what ClickHouse stores).
 */
export function parseTime(s: string, now = Date.now()): number | undefined {
  const d = /^(\d{1,9})(ms|s|m|h|d)$/.exec(s);
  if (d) {
    const t = now - Number(d[1]) * DURATION_MS[d[2] as keyof typeof DURATION_MS];
    return inRange(t) ? t : undefined;
  }
  const m = ISO_TIME.exec(s);
  if (!m) return undefined;
  const [, date = '', time, zone] = m;
  if (!isCalendarDate(date)) return undefined;
  const t = Date.parse(time === undefined ? `${date}T00:00:00Z` : `${date}T${time}${zone ?? 'Z'}`);
  return inRange(t) ? t : undefined;
}

/** Position after a row in a newest-first (or oldest-first) listing: its sort key. */
export interface Cursor {
  ts: number;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.ts, c.id]), 'utf8').toString('base64url');
}

export function decodeCursor(s: string): Cursor | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
    // Only positions a listing can hand out: a time ClickHouse can hold and an id.
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'number' && inRange(v[0]) && typeof v[1] === 'string') return { ts: v[0], id: v[1] };
  } catch {
    /* not ours: refused below */
  }
  return undefined;
}

const shown = (s: string) => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

const timeParam = z.string().transform((s, ctx) => {
  const t = parseTime(s);
  if (t === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected an ISO 8601 time (2026-11-26T10:00:00Z) or a duration ago (10m, 2h, 7d), got ${shown(s)}` });
    return z.NEVER;
  }
  return t;
});

const intParam = (min: number, max: number) =>
  z.string().transform((s, ctx) => {
    const n = /^\d{1,9}$/.test(s) ? Number(s) : NaN;
    if (!(n >= min && n <= max)) {
      ctx.addIssue({ code: 'custom', message: `expected an integer from ${min} to ${max}, got ${shown(s)}` });
      return z.NEVER;
    }
    return n;
  });

const cursorParam = z.string().transform((s, ctx) => {
  const c = decodeCursor(s);
  if (!c) {
    ctx.addIssue({ code: 'custom', message: 'not a cursor from a previous response (next_cursor)' });
    return z.NEVER;
  }
  return c;
});

const nameParam = z.string().min(1, 'must not be empty').max(256, 'at most 256 characters');
const orderParam = z.enum(['asc', 'desc']);

/** Parameters every listing takes. Unknown parameters are refused, so a misspelt filter never silently widens a search. */
const listing = {
  tenant: nameParam.optional(),
  from: timeParam.optional(),
  to: timeParam.optional(),
  limit: intParam(1, MAX_LIMIT).optional(),
  cursor: cursorParam.optional(),
  order: orderParam.optional(),
};

function fromBeforeTo(v: { from?: number | undefined; to?: number | undefined }, ctx: z.RefinementCtx): void {
  if (v.from !== undefined && v.to !== undefined && v.from >= v.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'must be later than from' });
}

const logsQuery = z
  .object({
    ...listing,
    app: nameParam.optional(),
    container: nameParam.optional(),
    stream: z.enum(['stdout', 'stderr']).optional(),
    kind: z.enum(LOG_KINDS).optional(),
    q: z.string().min(1, 'must not be empty').max(1000, 'at most 1000 characters').optional(),
  })
  .strict()
  .superRefine(fromBeforeTo);

const usageQuery = z
  .object({
    tenant: nameParam.optional(),
    from: timeParam.optional(),
    to: timeParam.optional(),
    meter: nameParam.optional(),
    app: nameParam.optional(),
    period: z.enum(['hour', 'day', 'month']).optional(),
  })
  .strict()
  .superRefine(fromBeforeTo);

const reportsQuery = z
  .object({ ...listing, period_kind: z.enum(['hourly', 'daily', 'monthly']).optional() })
  .strict()
  .superRefine(fromBeforeTo);

const tenantOnlyQuery = z.object({ tenant: nameParam.optional() }).strict();

const containersQuery = z.object({ tenant: nameParam.optional(), app: nameParam.optional(), limit: intParam(1, MAX_LIMIT).optional(), cursor: cursorParam.optional() }).strict();

const lifecycleQuery = z.object(listing).strict().superRefine(fromBeforeTo);

function parse<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const r = schema.safeParse(raw ?? {});
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown parameter${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')}`;
    const param = i.path.map(String).join('.');
    return param ? `${param}: ${i.message.replace(/^Invalid input: /, '')}` : i.message;
  });
  throw new ApiError(400, 'bad_request', problems.join('; '));
}

// ---------------------------------------------------------------------------------
// SQL pieces

interface Where {
  conds: string[];
  params: Record<string, unknown>;
}

function scoped(scope: Scope): Where {
  return 'tenant' in scope ? { conds: ['tenant = {tenant:String}'], params: { tenant: scope.tenant } } : { conds: [], params: {} };
}

const ms = (param: string) => `fromUnixTimestamp64Milli({${param}:Int64}, 'UTC')`;

function timeRange(w: Where, column: string, from: number | undefined, to: number | undefined): void {
  if (from !== undefined) {
    w.conds.push(`${column} >= ${ms('from')}`);
    w.params.from = from;
  }
  if (to !== undefined) {
    w.conds.push(`${column} < ${ms('to')}`);
    w.params.to = to;
  }
}

/** Rows strictly after the cursor in the listing's order (keys compared as a tuple, like ORDER BY). */
function afterCursor(w: Where, tsExpr: string, idExpr: string, cursor: Cursor | undefined, order: 'asc' | 'desc'): void {
  if (!cursor) return;
  w.conds.push(`(${tsExpr}, ${idExpr}) ${order === 'desc' ? '<' : '>'} (${ms('cursor_ts')}, {cursor_id:String})`);
  w.params.cursor_ts = cursor.ts;
  w.params.cursor_id = cursor.id;
}

/**
 * A container named by its full id, an id prefix of at least 12 characters (what
 * `docker ps` shows), or its name.
 */
function containerMatch(w: Where, value: string): void {
  w.conds.push('(container_id = {container:String} OR container_name = {container:String} OR (length({container:String}) >= 12 AND startsWith(container_id, {container:String})))');
  w.params.container = value;
}

const whereSql = (w: Where) => (w.conds.length ? `WHERE ${w.conds.join(' AND ')}` : '');

async function rows<T>(ch: ClickHouse, query: string, params: Record<string, unknown>): Promise<T[]> {
  const rs = await ch.client.query({ query, query_params: params, format: 'JSONEachRow' });
  return rs.json<T>();
}

const iso = (msValue: number) => new Date(msValue).toISOString();

/** ClickHouse compares Strings bytewise; sorting merged rows the same way keeps cursors consistent. */
export function compareCursors(a: Cursor, b: Cursor): number {
  return a.ts - b.ts || Buffer.compare(Buffer.from(a.id, 'utf8'), Buffer.from(b.id, 'utf8'));
}

function page<T>(sorted: T[], limit: number, key: (row: T) => Cursor): { items: T[]; next_cursor: string | null } {
  const items = sorted.slice(0, limit);
  const last = items[items.length - 1];
  return { items, next_cursor: sorted.length > limit && last ? encodeCursor(key(last)) : null };
}

// ---------------------------------------------------------------------------------
// Logs

export interface LogSearch {
  scope: Scope;
  from?: number | undefined;
  to?: number | undefined;
  app?: string | undefined;
  container?: string | undefined;
  stream?: 'stdout' | 'stderr' | undefined;
  kind?: LogKind | undefined;
  /** Text found anywhere in the line, literally, ASCII letters case-insensitive. */
  q?: string | undefined;
  limit: number;
  cursor?: Cursor | undefined;
  order: 'asc' | 'desc';
}

export interface LogItem {
  ts: string;
  /** Nanoseconds past `ts`'s millisecond (Docker's timestamp); 0 for lifecycle entries. */
  ts_nanos: number;
  /** Among lines of one stream with the very same Docker timestamp, their order; else 0. */
  seq: number;
  event_id: string;
  tenant: string;
  app: string;
  container_id: string;
  container_name: string;
  /** stdout or stderr; null for lifecycle entries. */
  stream: string | null;
  kind: LogKind;
  /** The line as UTF-8 text (invalid bytes shown as U+FFFD); for lifecycle entries, the rendered event. */
  line: string;
  /** The line's exact bytes, only when they are not clean UTF-8 text. */
  line_base64?: string;
  invalid_utf8: boolean;
  truncated: boolean;
  original_length: number;
  /** The lifecycle action (start, die, …); null for log lines. */
  action: string | null;
  exit_code: number | null;
}

/** Parses `/api/v1/logs` parameters (shared with `logmeter logs`); throws ApiError 400. */
export function parseLogSearch(raw: unknown, principal: Principal): LogSearch {
  const p = parse(logsQuery, raw);
  return {
    scope: scopeFor(principal, p.tenant),
    from: p.from,
    to: p.to,
    app: p.app,
    container: p.container,
    stream: p.stream,
    kind: p.kind,
    q: p.q,
    limit: p.limit ?? 100,
    cursor: p.cursor,
    order: p.order ?? 'desc',
  };
}

/**
 * How a lifecycle event reads as a log line: `die exit_code=3`,
 * `start image=acme/web:1`, `logs_dropped by=collector: 120 lines … dropped`.
 */
const LIFECYCLE_LINE = `concat(
  action,
  if(image != '' AND action IN ('create', 'start', 'restart'), concat(' image=', image), ''),
  if(isNull(exit_code), '', concat(' exit_code=', toString(assumeNotNull(exit_code)))),
  if(isNull(health), '', concat(' health=', assumeNotNull(health))),
  if(mapContains(attributes, 'signal'), concat(' signal=', attributes['signal']), ''),
  if(actor IN ('', 'docker'), '', concat(' by=', actor)),
  if(ifNull(message, '') = '', '', concat(': ', assumeNotNull(message))))`;

interface LogRow {
  ts_ms: number;
  ts_nanos: number;
  seq: number;
  /** Position within the millisecond (see LOG_POSITION). */
  pos: string;
  event_id: string;
  tenant: string;
  app: string;
  container_id: string;
  container_name: string;
  stream: string;
  kind: LogKind;
  text: string;
  line_b64: string;
  invalid_utf8: boolean | number;
  truncated: boolean | number;
  original_length: number;
  action: string;
  exit_code: number | null;
}

/**
 * Lines keep the order they were printed in, also within one millisecond (a stack trace
 * is printed in a burst): after the time, rows sort by this string — nanoseconds past the
 * millisecond, the sequence among lines with the very same Docker timestamp, then the
 * event id. Lifecycle entries have neither (zeros). The cursor carries it as its id.
 */
const LOG_POSITION = `concat(leftPad(toString(ts_nanos), 6, '0'), leftPad(toString(seq), 10, '0'), '-', event_id)`;
const EVENT_POSITION = `concat('0000000000000000-', event_id)`;

/** A search result's place in the listing, as its cursor holds it. */
export function logItemCursor(item: Pick<LogItem, 'ts' | 'ts_nanos' | 'seq' | 'event_id'>): Cursor {
  return { ts: Date.parse(item.ts), id: `${String(item.ts_nanos).padStart(6, '0')}${String(item.seq).padStart(10, '0')}-${item.event_id}` };
}

export async function searchLogs(ch: ClickHouse, s: LogSearch): Promise<{ items: LogItem[]; next_cursor: string | null }> {
  const wantLines = (s.kind === undefined || s.kind === 'access' || s.kind === 'debug');
  // Lifecycle entries have no stream: a stream filter asks for container output only.
  const wantEvents = (s.kind === undefined || s.kind === 'start' || s.kind === 'operation') && s.stream === undefined;
  const dir = s.order === 'desc' ? 'DESC' : 'ASC';
  const fetchN = s.limit + 1;
  const common = (): Where => {
    const w = scoped(s.scope);
    timeRange(w, 'ts', s.from, s.to);
    if (s.app !== undefined) {
      w.conds.push('app = {app:String}');
      w.params.app = s.app;
    }
    if (s.container !== undefined) containerMatch(w, s.container);
    if (s.kind !== undefined) {
      w.conds.push('kind = {kind:String}');
      w.params.kind = s.kind;
    }
    w.params.limit = fetchN;
    return w;
  };

  const found: LogRow[] = [];
  if (wantLines) {
    const w = common();
    afterCursor(w, 'ts', LOG_POSITION, s.cursor, s.order);
    if (s.stream !== undefined) {
      w.conds.push('stream = {stream:String}');
      w.params.stream = s.stream;
    }
    if (s.q !== undefined) {
      // Bound as a value and matched by position, so quotes, backslashes, % and _ are plain characters.
      w.conds.push('positionCaseInsensitive(line, {q:String}) > 0');
      w.params.q = s.q;
    }
    found.push(
      ...(await rows<LogRow>(
        ch,
        `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, ts_nanos, seq, ${LOG_POSITION} AS pos, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
                toString(container_name) AS container_name, toString(stream) AS stream, toString(kind) AS kind,
                toValidUTF8(line) AS text, if(invalid_utf8, base64Encode(line), '') AS line_b64,
                invalid_utf8, truncated, original_length, '' AS action, CAST(NULL AS Nullable(Int32)) AS exit_code
         FROM ${ch.table('logs')} FINAL ${whereSql(w)}
         ORDER BY ts ${dir}, pos ${dir} LIMIT {limit:UInt32}`,
        w.params,
      )),
    );
  }
  if (wantEvents) {
    const w = common();
    afterCursor(w, 'ts', EVENT_POSITION, s.cursor, s.order);
    if (s.q !== undefined) {
      w.conds.push(`positionCaseInsensitive(${LIFECYCLE_LINE}, {q:String}) > 0`);
      w.params.q = s.q;
    }
    found.push(
      ...(await rows<LogRow>(
        ch,
        `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, toUInt32(0) AS ts_nanos, toUInt32(0) AS seq, ${EVENT_POSITION} AS pos, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
                toString(container_name) AS container_name, '' AS stream, toString(kind) AS kind,
                ${LIFECYCLE_LINE} AS text, '' AS line_b64, false AS invalid_utf8, false AS truncated,
                length(text) AS original_length, toString(action) AS action, exit_code
         FROM ${ch.table('lifecycle')} FINAL ${whereSql(w)}
         ORDER BY ts ${dir}, pos ${dir} LIMIT {limit:UInt32}`,
        w.params,
      )),
    );
  }
  const key = (r: LogRow): Cursor => ({ ts: Number(r.ts_ms), id: r.pos });
  found.sort((a, b) => (s.order === 'desc' ? -1 : 1) * compareCursors(key(a), key(b)));
  const { items, next_cursor } = page(found, s.limit, key);
  return { items: items.map(logItem), next_cursor };
}

function logItem(r: LogRow): LogItem {
  const invalid = Boolean(r.invalid_utf8);
  const bytes = invalid && r.line_b64 ? Buffer.from(r.line_b64, 'base64') : undefined;
  return {
    ts: iso(Number(r.ts_ms)),
    ts_nanos: Number(r.ts_nanos),
    seq: Number(r.seq),
    event_id: r.event_id,
    tenant: r.tenant,
    app: r.app,
    container_id: r.container_id,
    container_name: r.container_name,
    stream: r.stream === '' ? null : r.stream,
    kind: r.kind,
    // From the exact bytes, decoded as every UTF-8 decoder does (one U+FFFD per bad byte), so `line` agrees with `line_base64`.
    line: bytes ? bytes.toString('utf8') : r.text,
    ...(bytes ? { line_base64: r.line_b64 } : {}),
    invalid_utf8: invalid,
    truncated: Boolean(r.truncated),
    original_length: Number(r.original_length),
    action: r.action === '' ? null : r.action,
    exit_code: r.exit_code,
  };
}

// ---------------------------------------------------------------------------------
// Usage

export interface UsageItem {
  tenant: string;
  app: string;
  meter: string;
  unit: string;
  period_start: string;
  quantity: number;
}

const PERIOD_BUCKET = {
  hour: 'hour',
  day: 'toStartOfDay(hour)',
  month: "toDateTime(toStartOfMonth(hour), 'UTC')",
} as const;

/**
 * Usage per meter, app and period. The usage table may hold both minute and hour rows
 * for the same hour (the usage topic allows either): an hour that has an `hour` row is
 * counted from it alone, otherwise from its finer rows, so nothing is counted twice.
 */
export async function queryUsage(
  ch: ClickHouse,
  q: { scope: Scope; from?: number | undefined; to?: number | undefined; meter?: string | undefined; app?: string | undefined; period: keyof typeof PERIOD_BUCKET },
): Promise<UsageItem[]> {
  const w = scoped(q.scope);
  timeRange(w, 'ts', q.from, q.to);
  if (q.meter !== undefined) {
    w.conds.push('meter = {meter:String}');
    w.params.meter = q.meter;
  }
  if (q.app !== undefined) {
    w.conds.push('app = {app:String}');
    w.params.app = q.app;
  }
  const found = await rows<{ tenant: string; app: string; meter: string; unit: string; start_s: number; quantity: number }>(
    ch,
    `SELECT tenant, app, meter, unit, toUnixTimestamp(${PERIOD_BUCKET[q.period]}) AS start_s, sum(hour_quantity) AS quantity
     FROM (
       SELECT toString(tenant) AS tenant, toString(app) AS app, toString(meter) AS meter, toString(unit) AS unit, toStartOfHour(ts) AS hour,
              if(countIf(period = 'hour') > 0, sumIf(quantity, period = 'hour'), sumIf(quantity, period != 'hour')) AS hour_quantity
       FROM ${ch.table('usage')} FINAL ${whereSql(w)}
       GROUP BY tenant, app, meter, unit, hour
     )
     GROUP BY tenant, app, meter, unit, start_s
     ORDER BY start_s, tenant, app, meter, unit`,
    w.params,
  );
  return found.map((r) => ({ tenant: r.tenant, app: r.app, meter: r.meter, unit: r.unit, period_start: iso(Number(r.start_s) * 1000), quantity: r.quantity }));
}

// ---------------------------------------------------------------------------------
// Billing reports

export interface ReportSummary {
  report_id: string;
  tenant: string;
  period_kind: string;
  period_start: string;
  period_end: string;
  /** Amount due per currency. */
  totals: Record<string, number>;
  line_items: number;
}

export interface ReportLineItem {
  meter: string;
  unit: string;
  quantity: number;
  free_quantity: number;
  billable: number;
  unit_price: number;
  amount: number;
  currency: string;
}

export type Report = Omit<ReportSummary, 'line_items'> & { items: ReportLineItem[] };

interface ReportRow {
  report_id: string;
  tenant: string;
  period_kind: string;
  start_ms: number;
  end_ms: number;
  totals: [string[], number[]];
  line_items: number;
}

function summary(r: ReportRow): ReportSummary {
  const totals: Record<string, number> = {};
  r.totals[0].forEach((currency, i) => (totals[currency] = r.totals[1][i] ?? 0));
  return {
    report_id: r.report_id,
    tenant: r.tenant,
    period_kind: r.period_kind,
    period_start: iso(Number(r.start_ms)),
    period_end: iso(Number(r.end_ms)),
    totals,
    line_items: Number(r.line_items),
  };
}

const REPORT_COLUMNS = `report_id, toString(tenant) AS tenant, toString(any(period_kind)) AS period_kind,
  toUnixTimestamp64Milli(min(period_start)) AS start_ms, toUnixTimestamp64Milli(max(period_end)) AS end_ms,
  sumMap([toString(currency)], [amount]) AS totals, count() AS line_items`;

export async function listReports(
  ch: ClickHouse,
  q: { scope: Scope; from?: number | undefined; to?: number | undefined; periodKind?: string | undefined; limit: number; cursor?: Cursor | undefined; order: 'asc' | 'desc' },
): Promise<{ items: ReportSummary[]; next_cursor: string | null }> {
  const w = scoped(q.scope);
  timeRange(w, 'period_start', q.from, q.to);
  if (q.periodKind !== undefined) {
    w.conds.push('period_kind = {period_kind:String}');
    w.params.period_kind = q.periodKind;
  }
  const having: Where = { conds: [], params: w.params };
  afterCursor(having, 'min(period_start)', 'report_id', q.cursor, q.order);
  w.params.limit = q.limit + 1;
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const found = await rows<ReportRow>(
    ch,
    `SELECT ${REPORT_COLUMNS} FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)}
     GROUP BY report_id, tenant ${having.conds.length ? `HAVING ${having.conds.join(' AND ')}` : ''}
     ORDER BY start_ms ${dir}, report_id ${dir} LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.start_ms), id: r.report_id }));
  return { items: items.map(summary), next_cursor };
}

/** One report, or undefined when it does not exist within the scope. */
export async function getReport(ch: ClickHouse, scope: Scope, reportId: string): Promise<Report | undefined> {
  const w = scoped(scope);
  w.conds.push('report_id = {report_id:String}');
  w.params.report_id = reportId;
  const [head] = await rows<ReportRow>(ch, `SELECT ${REPORT_COLUMNS} FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)} GROUP BY report_id, tenant`, w.params);
  if (!head) return undefined;
  const items = await rows<ReportLineItem>(
    ch,
    `SELECT toString(meter) AS meter, toString(unit) AS unit, quantity, free_quantity, billable, unit_price, amount, toString(currency) AS currency
     FROM ${ch.table('billing_line_items')} FINAL ${whereSql(w)} ORDER BY meter, unit`,
    w.params,
  );
  const { line_items: _n, ...rest } = summary(head);
  return { ...rest, items };
}

// ---------------------------------------------------------------------------------
// Containers

export interface PortBinding {
  container_port: number;
  protocol: string;
  host_ip: string;
  host_port: number;
}

export interface ContainerItem {
  tenant: string;
  container_id: string;
  container_name: string;
  app: string;
  image: string;
  /** running, exited, created, paused, removed, or unknown; from the last Docker event. */
  state: string;
  /** The latest Docker event (create, start, die, …); null when only operations were seen. */
  last_action: string | null;
  last_action_at: string | null;
  /** Exit code of the latest exit; null when it never exited. */
  exit_code: number | null;
  health: string | null;
  ports: PortBinding[];
  first_seen: string;
  last_seen: string;
}

const STATE_AFTER: Record<string, string> = {
  create: 'created',
  start: 'running',
  restart: 'running',
  unpause: 'running',
  health_status: 'running',
  pause: 'paused',
  die: 'exited',
  stop: 'exited',
  kill: 'exited',
  oom: 'exited',
  destroy: 'removed',
};

// Aliases differ from column names: ClickHouse resolves a name to its alias first, even inside aggregates.
interface ContainerRow {
  tenant_name: string;
  container_id: string;
  last_name: string;
  last_app: string;
  last_image: string;
  docker_events: number;
  last_action: string;
  last_action_ms: number;
  exits: number;
  last_exit_code: number | null;
  last_health: string | null;
  last_ports: PortBinding[];
  first_ms: number;
  last_ms: number;
}

export async function listContainers(
  ch: ClickHouse,
  q: { scope: Scope; app?: string | undefined; limit: number; cursor?: Cursor | undefined },
): Promise<{ items: ContainerItem[]; next_cursor: string | null }> {
  const w = scoped(q.scope);
  if (q.app !== undefined) {
    w.conds.push('app = {app:String}');
    w.params.app = q.app;
  }
  const having: Where = { conds: [], params: w.params };
  afterCursor(having, 'max(ts)', 'container_id', q.cursor, 'desc');
  w.params.limit = q.limit + 1;
  const at = '(ts, event_id)';
  const found = await rows<ContainerRow>(
    ch,
    `SELECT toString(tenant) AS tenant_name, container_id,
            toString(argMax(container_name, ${at})) AS last_name, toString(argMax(app, ${at})) AS last_app,
            argMaxIf(image, ${at}, image != '') AS last_image,
            countIf(actor = 'docker') AS docker_events,
            toString(argMaxIf(action, ${at}, actor = 'docker')) AS last_action,
            toUnixTimestamp64Milli(maxIf(ts, actor = 'docker')) AS last_action_ms,
            countIf(isNotNull(exit_code)) AS exits,
            argMaxIf(exit_code, ${at}, isNotNull(exit_code)) AS last_exit_code,
            argMaxIf(health, ${at}, isNotNull(health)) AS last_health,
            argMaxIf(ports, ${at}, notEmpty(ports)) AS last_ports,
            toUnixTimestamp64Milli(min(ts)) AS first_ms, toUnixTimestamp64Milli(max(ts)) AS last_ms
     FROM ${ch.table('lifecycle')} FINAL ${whereSql(w)}
     GROUP BY tenant, container_id ${having.conds.length ? `HAVING ${having.conds.join(' AND ')}` : ''}
     ORDER BY last_ms DESC, container_id DESC LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.last_ms), id: r.container_id }));
  return {
    items: items.map((r) => {
      const docker = Number(r.docker_events) > 0;
      return {
        tenant: r.tenant_name,
        container_id: r.container_id,
        container_name: r.last_name,
        app: r.last_app,
        image: r.last_image,
        state: docker ? (STATE_AFTER[r.last_action] ?? 'unknown') : 'unknown',
        last_action: docker ? r.last_action : null,
        last_action_at: docker ? iso(Number(r.last_action_ms)) : null,
        exit_code: Number(r.exits) > 0 ? r.last_exit_code : null,
        health: r.last_health ?? null,
        ports: r.last_ports,
        first_seen: iso(Number(r.first_ms)),
        last_seen: iso(Number(r.last_ms)),
      };
    }),
    next_cursor,
  };
}

export interface LifecycleItem {
  ts: string;
  event_id: string;
  tenant: string;
  app: string;
  container_id: string;
  container_name: string;
  action: string;
  actor: string;
  kind: string;
  exit_code: number | null;
  health: string | null;
  image: string;
  message: string | null;
  attributes: Record<string, string>;
  networks: string[];
  ports: PortBinding[];
}

/** One container's lifecycle events, or undefined when the scope has no such container. */
export async function containerLifecycle(
  ch: ClickHouse,
  q: { scope: Scope; container: string; from?: number | undefined; to?: number | undefined; limit: number; cursor?: Cursor | undefined; order: 'asc' | 'desc' },
): Promise<{ items: LifecycleItem[]; next_cursor: string | null } | undefined> {
  const known = scoped(q.scope);
  containerMatch(known, q.container);
  const [exists] = await rows<{ n: number }>(ch, `SELECT count() AS n FROM ${ch.table('lifecycle')} FINAL ${whereSql(known)}`, known.params);
  if (!exists || Number(exists.n) === 0) return undefined;

  const w = scoped(q.scope);
  containerMatch(w, q.container);
  timeRange(w, 'ts', q.from, q.to);
  afterCursor(w, 'ts', 'event_id', q.cursor, q.order);
  w.params.limit = q.limit + 1;
  const dir = q.order === 'desc' ? 'DESC' : 'ASC';
  const found = await rows<Omit<LifecycleItem, 'ts'> & { ts_ms: number }>(
    ch,
    `SELECT toUnixTimestamp64Milli(ts) AS ts_ms, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
            toString(container_name) AS container_name, toString(action) AS action, toString(actor) AS actor, toString(kind) AS kind,
            exit_code, health, image, message, attributes, networks, ports
     FROM ${ch.table('lifecycle')} FINAL ${whereSql(w)}
     ORDER BY ts ${dir}, event_id ${dir} LIMIT {limit:UInt32}`,
    w.params,
  );
  const { items, next_cursor } = page(found, q.limit, (r) => ({ ts: Number(r.ts_ms), id: r.event_id }));
  return { items: items.map(({ ts_ms, ...r }) => ({ ts: iso(Number(ts_ms)), ...r })), next_cursor };
}

// ---------------------------------------------------------------------------------
// Routes

export interface ApiDeps {
  ch: ClickHouse;
  /** Tenant → bearer token. */
  tokens: Record<string, string>;
  /** Operator token; unset = operator requests only from loopback without a token. */
  adminToken?: string | undefined;
  logger: Logger;
}

type Handler = (principal: Principal, query: unknown, params: Record<string, string>) => Promise<unknown>;

function get(app: FastifyInstance, auth: Authenticator, log: Logger, path: string, handler: Handler): void {
  app.get(`${API_PREFIX}${path}`, async (req, reply) => {
    // Authentication comes first: an anonymous caller learns nothing, not even which parameters are wrong.
    const who = auth.authenticate(req);
    if (!who.ok) return sendUnauthorized(reply, who.error);
    try {
      return await handler(who.principal, req.query, req.params as Record<string, string>);
    } catch (err) {
      if (err instanceof ApiError) return reply.status(err.status).send({ error: err.message, code: err.code });
      // ClickHouse's messages quote our SQL: logged for the operator, not shown to tenants.
      log.error({ err, route: path, request: req.id }, 'API request failed');
      return reply.status(500).send({ error: `internal error (request ${req.id})`, code: 'internal' });
    }
  });
}

const notFound = (what: string) => new ApiError(404, 'not_found', `${what} not found`);

function pathParam(params: Record<string, string>, key: string, name: string): string {
  const v = params[key] ?? '';
  if (v.length === 0 || v.length > 256) throw new ApiError(400, 'bad_request', `${name}: expected 1 to 256 characters`);
  return v;
}

export function registerApi(app: FastifyInstance, deps: ApiDeps): void {
  const { ch } = deps;
  const auth = createAuthenticator({ tokens: deps.tokens, adminToken: deps.adminToken });
  const log = deps.logger.child({ component: 'api' });

  get(app, auth, log, '/logs', async (principal, raw) => searchLogs(ch, parseLogSearch(raw, principal)));

  get(app, auth, log, '/usage', async (principal, raw) => {
    const p = parse(usageQuery, raw);
    const period = p.period ?? 'hour';
    return { period, items: await queryUsage(ch, { scope: scopeFor(principal, p.tenant), from: p.from, to: p.to, meter: p.meter, app: p.app, period }) };
  });

  get(app, auth, log, '/reports', async (principal, raw) => {
    const p = parse(reportsQuery, raw);
    return listReports(ch, { scope: scopeFor(principal, p.tenant), from: p.from, to: p.to, periodKind: p.period_kind, limit: p.limit ?? 100, cursor: p.cursor, order: p.order ?? 'desc' });
  });

  // Report ids contain a slash (`acme/2026-11-26`): sent URL-encoded (%2F) or as further path segments.
  get(app, auth, log, '/reports/*', async (principal, raw, params) => {
    const p = parse(tenantOnlyQuery, raw);
    const id = pathParam(params, '*', 'report_id');
    const report = await getReport(ch, scopeFor(principal, p.tenant), id);
    if (!report) throw notFound(`report ${JSON.stringify(id)}`);
    return report;
  });

  get(app, auth, log, '/containers', async (principal, raw) => {
    const p = parse(containersQuery, raw);
    return listContainers(ch, { scope: scopeFor(principal, p.tenant), app: p.app, limit: p.limit ?? 100, cursor: p.cursor });
  });

  get(app, auth, log, '/containers/:id/lifecycle', async (principal, raw, params) => {
    const p = parse(lifecycleQuery, raw);
    const id = pathParam(params, 'id', 'id');
    const found = await containerLifecycle(ch, { scope: scopeFor(principal, p.tenant), container: id, from: p.from, to: p.to, limit: p.limit ?? 100, cursor: p.cursor, order: p.order ?? 'desc' });
    if (!found) throw notFound(`container ${JSON.stringify(id)}`);
    return found;
  });

  log.debug({ prefix: API_PREFIX, tenants: Object.keys(deps.tokens).length, adminToken: Boolean(deps.adminToken) }, 'log center API registered');
}
