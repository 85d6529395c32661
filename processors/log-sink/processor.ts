/**
 * Log sink: logs, lifecycle, HTTP requests, usage and dead letters from Kafka into
 * ClickHouse. Per batch: rows (rows.ts; the logs in embedded mode as their checked Avro
 * frames, written into the insert's columns from their bytes, log-frame.ts) → batched insert (by rows and milliseconds; for
 * `logs` and `http_requests`, the tables a tenant floods, each insert shared fairly among
 * tenants: fair-batcher.ts) →
 * the consumer commits offsets only after the insert succeeded (for `logs` the handler
 * returns once its rows are queued and the commit trails the insert, `deferCommit` in
 * lib/bus/bus.ts, so the next batch is fetched and decoded meanwhile). Redelivered events
 * carry the same event_id and merge away (ReplacingMergeTree; reads use FINAL). When
 * ClickHouse is down the insert fails, the consumer retries with backoff and the
 * offsets stay where they were: nothing is lost.
 *
 * Scale-out. Keys: whatever each topic is keyed by (logs, lifecycle and stats by
 * container, http and usage by tenant/app, dlq by source partition); the sink does not
 * care, rows carry their own ids. Groups: one per topic, `log-sink.<topic>`, so a table that cannot
 * take rows holds up only its own topic. State: only the rows of batches not yet inserted
 * (in memory; their offsets are never committed before the insert). N instances split
 * each topic's partitions and insert in parallel (one instance's rate into embedded chDB:
 * BENCHMARKS.md; a server takes the inserts of several). On a rebalance a
 * partition's new owner starts at the last commit: rows the old owner inserted and had
 * not committed yet are inserted again with the same ids and merge away (FINAL), so
 * nothing is lost or counted twice. The embedded ClickHouse admits one writing process:
 * with it, the sink runs in the process that holds the store (one instance); with
 * `CLICKHOUSE_URL` (a server), run N (docs/scale-out.md).
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { ConsumedMessage, EventBus, PayloadDecoder, Subscription } from '../../lib/bus/bus.js';
import { columnarInserts, type ClickHouse } from '../../lib/clickhouse/client.js';
import type { ColumnarEncoder } from '../../lib/clickhouse/columnar.js';
import { TableBatcher } from '../../lib/clickhouse/batcher.js';
import { FairBatcher } from './fair-batcher.js';
import type { RowEncoder } from '../../lib/clickhouse/tsv.js';
import type { EventMap, LogLine, TopicName } from '../../schemas/events.js';
import type { LogSinkConfig, RetentionDays } from './config.js';
import { LOG_TSV, deadLetterRow, httpRow, lifecycleRow, retentionStatement, usageRow } from './rows.js';
import { logSinkMetrics } from './telemetry.js';
import { SINK_LOG_COLUMNAR, logFrameDecoder, type SinkLog } from './log-frame.js';

export const SINK_TOPICS = ['logs', 'lifecycle', 'http', 'usage', 'dlq'] as const satisfies readonly TopicName[];

export interface SinkDeps {
  config: LogSinkConfig;
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
  /** Consumer group (default `log-sink`); another group reads the topics again from the start. */
  group?: string;
}

/** Retention per table, applied as ClickHouse TTLs at start (idempotent). */
export async function applyRetention(ch: ClickHouse, days: RetentionDays): Promise<void> {
  for (const [table, n] of Object.entries(days)) await ch.command(retentionStatement(ch.table(table), n));
}

/** How often a handler waiting for its inserts heartbeats (kafkajs sends at most one per its 3 s interval). */
const HEARTBEAT_MS = 2000;

/**
 * Waits for `inserted` while heartbeating. A failed heartbeat (a rebalance) is left to
 * the consumer: it does not commit a batch of a partition it no longer holds.
 */
async function beating(inserted: Promise<void>, ctx: { heartbeat(): Promise<void> }): Promise<void> {
  const timer = setInterval(() => void ctx.heartbeat().catch(() => undefined), HEARTBEAT_MS);
  try {
    await inserted;
  } finally {
    clearInterval(timer);
  }
}

export async function startLogSink(deps: SinkDeps): Promise<Subscription> {
  const { ch, config } = deps;
  const log = deps.logger.child({ component: 'log-sink' });
  const metrics = logSinkMetrics(deps.registry);
  const timing = { maxRows: config.batchRows, maxMs: config.batchMs };
  const batcher = (table: string, columns?: readonly string[]) => new TableBatcher(ch, table, columns, timing, (n) => metrics.rowsWritten.inc({ table }, n));
  // A tenant's backlog must not sit in front of the other tenants' rows (issue 20).
  const fair = <R extends object = Record<string, unknown>>(table: string, format?: RowEncoder<R> | ColumnarEncoder<R>) =>
    new FairBatcher<R>(ch, table, format, timing, { tenantOf: (row) => String((row as { tenant?: unknown }).tenant), onInsert: (n) => metrics.rowsWritten.inc({ table }, n) });
  // Embedded: the logs frames are checked as they come and written into the insert's
  // columns straight from their bytes (log-frame.ts); to a server, decoded events as TabSeparated.
  const columnar = columnarInserts(ch);
  const tables = {
    // Written straight from the events: binary columns into the embedded engine
    // (lib/clickhouse/columnar.ts, log-frame.ts SINK_LOG_COLUMNAR), TabSeparated to a server (tsv.ts, LOG_TSV).
    logs: fair<SinkLog | LogLine>('logs', columnar ? SINK_LOG_COLUMNAR : LOG_TSV),
    lifecycle: batcher('lifecycle'),
    http: fair('http_requests'),
    usage: batcher('usage'),
    dlq: batcher('dead_letters'),
  };
  await applyRetention(ch, config.retentionDays);
  // One consumer per topic: a table that cannot take rows (and is being retried) does
  // not hold up the others.
  const group = deps.group ?? 'log-sink';
  const subs: Subscription[] = [];
  const sub: Subscription = { group, stop: async () => void (await Promise.all(subs.map((s) => s.stop()))) };
  // Each partition's handler is a source for its table's batcher (see TableBatcher; the fair
  // batcher inserts as soon as rows wait and needs no sources).
  // Its rows may wait for several inserts (a fair batcher shares each one among tenants,
  // and a backlog fills many): the handler heartbeats meanwhile, or a fetch round longer
  // than the session timeout gets the consumer evicted from its group.
  type Ctx = { partition: number; heartbeat(): Promise<void>; deferCommit(done: Promise<void>): boolean };
  const handlers: { [T in (typeof SINK_TOPICS)[number]]: (events: ConsumedMessage<T, T extends 'logs' ? SinkLog | LogLine : EventMap[T]>[], ctx: Ctx) => Promise<void> } = {
    // The commit trails the insert (deferCommit): the next batch is fetched and decoded while
    // these rows wait for it, and their offsets are committed once it succeeded.
    logs: (b, c) => {
      const inserted = tables.logs.add(b.map((m) => m.event));
      return c.deferCommit(inserted) ? Promise.resolve() : beating(inserted, c);
    },
    lifecycle: (b, c) => beating(tables.lifecycle.add(b.map((m) => lifecycleRow(m.event)), `${c.partition}`), c),
    http: (b, c) => beating(tables.http.add(b.map((m) => httpRow(m.event))), c),
    // The newest computation of a usage row wins: its Kafka timestamp orders them, on replay too.
    usage: (b, c) => beating(tables.usage.add(b.map((m) => usageRow(m.event, m.timestamp)), `${c.partition}`), c),
    dlq: (b, c) => beating(tables.dlq.add(b.map((m) => deadLetterRow(m.event)), `${c.partition}`), c),
  };
  try {
    for (const topic of SINK_TOPICS) {
      subs.push(
        await deps.bus.subscribe({
          group: `${group}.${topic}`,
          topics: [topic],
          concurrency: config.concurrency,
          handle: handlers[topic] as (b: ConsumedMessage<typeof topic, unknown>[], ctx: Ctx) => Promise<void>,
          ...(topic === 'logs' && columnar ? { decode: logFrameDecoder(deps.bus.codec) as PayloadDecoder<(typeof SINK_TOPICS)[number], unknown> } : {}),
        }),
      );
    }
  } catch (err) {
    await sub.stop();
    throw err;
  }
  log.info({ topics: SINK_TOPICS }, 'log sink started');
  return sub;
}
