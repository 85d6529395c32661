/**
 * Events → ClickHouse rows, one mapping per table, and the retention statement. Pure.
 */
import type { DeadLetter, HttpRequest, LifecycleEvent, LogLine, UsageRecord } from '../../schemas/events.js';
import { isAccessLogFormat, parseAccessLine } from '../access-log/parse.js';
import { identityOf } from '../../lib/identity.js';
import type { RowEncoder, TsvWriter } from '../../lib/clickhouse/tsv.js';
import type { ColumnarEncoder, ColumnarWriter } from '../../lib/clickhouse/columnar.js';

export const START_ACTIONS = new Set(['create', 'start', 'restart']);

/**
 * The tenant log center's kinds: access and debug lines, start and operation events.
 * A line is an access line when it parses in its container's access-log format; any
 * other line (errors on stderr, start-up messages) is an ordinary debug line.
 */
export function logKind(e: LogLine): 'access' | 'debug' {
  const f = e.log_format;
  return f && isAccessLogFormat(f) && parseAccessLine(f, e.line.toString('utf8')).ok ? 'access' : 'debug';
}

export function lifecycleKind(action: string): 'start' | 'operation' {
  return START_ACTIONS.has(action) ? 'start' : 'operation';
}

export const LOG_COLUMNS = ['event_id', 'tenant', 'app', 'node', 'container_id', 'container_name', 'ts', 'ts_nanos', 'seq', 'stream', 'tty', 'line_b64', 'original_length', 'truncated', 'invalid_utf8', 'log_format', 'kind'] as const;

export function logRow(e: LogLine): Record<(typeof LOG_COLUMNS)[number], unknown> {
  return {
    event_id: e.event_id,
    tenant: e.tenant,
    app: e.app,
    node: e.node,
    container_id: e.container_id,
    container_name: e.container_name,
    ts: e.ts,
    ts_nanos: e.ts_nanos,
    seq: e.seq,
    stream: e.stream,
    tty: e.tty,
    // JSON cannot carry invalid UTF-8; the table decodes this into `line`, byte for byte.
    line_b64: e.line.toString('base64'),
    original_length: e.original_length,
    truncated: e.truncated,
    invalid_utf8: e.invalid_utf8,
    log_format: e.log_format ?? '',
    kind: logKind(e),
  };
}

/**
 * The log sink's insert of log lines: each event written straight as a `TabSeparated` row
 * (lib/clickhouse/tsv.ts), the line's bytes into `line` itself (escaped, byte for byte)
 * rather than base64 into `line_b64`. Same values as `logRow`.
 */
export const LOG_TSV: RowEncoder<LogLine> = {
  columns: ['event_id', 'tenant', 'app', 'node', 'container_id', 'container_name', 'ts', 'ts_nanos', 'seq', 'stream', 'tty', 'line', 'original_length', 'truncated', 'invalid_utf8', 'log_format', 'kind'],
  write(e: LogLine, w: TsvWriter): void {
    w.text(e.event_id).tab().text(e.tenant).tab().text(e.app).tab().text(e.node).tab().text(e.container_id).tab().text(e.container_name).tab();
    w.epochMs(e.ts).tab().int(e.ts_nanos).tab().int(e.seq).tab().text(e.stream).tab().bool(e.tty).tab();
    w.binary(e.line).tab().int(e.original_length).tab().bool(e.truncated).tab().bool(e.invalid_utf8).tab().text(e.log_format ?? '').tab().text(logKind(e));
    w.endRow();
  },
};

/**
 * The log sink's insert of log lines in embedded mode: each event written straight into
 * binary columns (lib/clickhouse/columnar.ts), the line's bytes as they are. Same columns
 * and values as `LOG_TSV`; the server mode (`CLICKHOUSE_URL`) keeps `LOG_TSV`.
 */
export const LOG_COLUMNAR: ColumnarEncoder<LogLine> = {
  columns: [
    { name: 'event_id', type: 'bytes' },
    { name: 'tenant', type: 'bytes' },
    { name: 'app', type: 'bytes' },
    { name: 'node', type: 'bytes' },
    { name: 'container_id', type: 'bytes' },
    { name: 'container_name', type: 'bytes' },
    { name: 'ts', type: 'ms' },
    { name: 'ts_nanos', type: 'u32' },
    { name: 'seq', type: 'u32' },
    { name: 'stream', type: 'bytes' },
    { name: 'tty', type: 'bool' },
    { name: 'line', type: 'bytes' },
    { name: 'original_length', type: 'u64' },
    { name: 'truncated', type: 'bool' },
    { name: 'invalid_utf8', type: 'bool' },
    { name: 'log_format', type: 'bytes' },
    { name: 'kind', type: 'bytes' },
  ],
  write(e: LogLine, w: ColumnarWriter): void {
    w.text(0, e.event_id).text(1, e.tenant).text(2, e.app).text(3, e.node).text(4, e.container_id).text(5, e.container_name);
    w.ms(6, e.ts).u32(7, e.ts_nanos).u32(8, e.seq).text(9, e.stream).bool(10, e.tty);
    w.bytes(11, e.line).u64(12, e.original_length).bool(13, e.truncated).bool(14, e.invalid_utf8).text(15, e.log_format ?? '').text(16, logKind(e));
    w.endRow();
  },
};

export function lifecycleRow(e: LifecycleEvent): Record<string, unknown> {
  return {
    event_id: e.event_id,
    tenant: e.tenant,
    app: e.app,
    node: e.node,
    container_id: e.container_id,
    container_name: e.container_name,
    ts: e.ts,
    action: e.action,
    actor: e.actor,
    kind: lifecycleKind(e.action),
    exit_code: e.exit_code,
    health: e.health,
    image: e.image,
    size: sizeLabel(e),
    labels: e.labels,
    networks: e.networks.map((n) => n.name),
    // Named tuples are JSON objects in JSONEachRow.
    ports: e.ports.map((p) => ({ container_port: p.container_port, protocol: p.protocol, host_ip: p.host_ip, host_port: p.host_port })),
    nano_cpus: e.limits.nano_cpus,
    memory_bytes: e.limits.memory_bytes,
    message: e.message,
    attributes: e.attributes,
  };
}

/** The container's size class (what its container-seconds are billed by), as the collector resolved it. */
export function sizeLabel(e: Pick<LifecycleEvent, 'tenant' | 'labels' | 'identity'>): string {
  return identityOf({ app: '', ...e }).size ?? '';
}

export function httpRow(e: HttpRequest): Record<string, unknown> {
  return { ...e };
}

export function usageRow(e: UsageRecord, version: number): Record<string, unknown> {
  return { event_id: e.event_id, tenant: e.tenant, app: e.app, node: e.node, period: e.period, ts: e.ts, meter: e.meter, unit: e.unit, quantity: e.quantity, dimensions: e.dimensions, version };
}

export function deadLetterRow(e: DeadLetter): Record<string, unknown> {
  return {
    event_id: e.event_id,
    node: e.node,
    ts: e.ts,
    source_topic: e.source_topic,
    source_partition: e.source_partition,
    source_offset: e.source_offset,
    source_timestamp: e.source_timestamp,
    consumer_group: e.consumer_group,
    key: e.key ? e.key.toString('base64') : null,
    payload: e.payload ? e.payload.toString('base64') : null,
    error_code: e.error_code,
    reason: e.reason,
  };
}

/** The TTL statement of a table (`<database>.<table>`) keeping `days` of rows. */
export function retentionStatement(table: string, days: number): string {
  return `ALTER TABLE ${table} MODIFY TTL toDateTime(ts) + toIntervalDay(${Math.floor(days)})`;
}
