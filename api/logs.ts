/**
 * `GET /api/v1/logs`: search of log lines and lifecycle events (shown as lines), newest
 * first by default, in one listing. `logmeter logs` runs the same parsing and search
 * when it reads ClickHouse directly.
 */
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { Principal } from './auth.js';
import { compareCursors, page, type Cursor } from './cursor.js';
import type { TenantRouter } from './handler.js';
import { fromBeforeTo, listing, nameParam, parse } from './params.js';
import { afterCursor, containerMatch, equals, scopeFor, scoped, timeRange, whereSql, type Scope, type Where } from './scope.js';
import { iso } from './time.js';

export const LOG_KINDS = ['access', 'debug', 'start', 'operation'] as const;
export type LogKind = (typeof LOG_KINDS)[number];

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
    equals(w, 'app', s.app);
    if (s.container !== undefined) containerMatch(w, s.container);
    equals(w, 'kind', s.kind);
    w.params.limit = fetchN;
    return w;
  };

  const found: LogRow[] = [];
  if (wantLines) {
    const w = common();
    afterCursor(w, 'ts', LOG_POSITION, s.cursor, s.order);
    equals(w, 'stream', s.stream);
    if (s.q !== undefined) {
      // Bound as a value and matched by position, so quotes, backslashes, % and _ are plain characters.
      w.conds.push('positionCaseInsensitive(line, {q:String}) > 0');
      w.params.q = s.q;
    }
    found.push(
      ...(await ch.query<LogRow>(`SELECT toUnixTimestamp64Milli(ts) AS ts_ms, ts_nanos, seq, ${LOG_POSITION} AS pos, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
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
      ...(await ch.query<LogRow>(`SELECT toUnixTimestamp64Milli(ts) AS ts_ms, toUInt32(0) AS ts_nanos, toUInt32(0) AS seq, ${EVENT_POSITION} AS pos, event_id, toString(tenant) AS tenant, toString(app) AS app, container_id,
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

export function registerLogRoutes(r: TenantRouter): void {
  r.get('/logs', async (principal, raw) => searchLogs(r.ch, parseLogSearch(raw, principal)));
}
