/**
 * Log sink: logs, lifecycle, HTTP requests, usage and dead letters from Kafka into
 * ClickHouse. Per batch: rows (rows.ts) → batched insert (by rows and milliseconds) →
 * the consumer commits offsets only after the insert succeeded. Redelivered events
 * carry the same event_id and merge away (ReplacingMergeTree; reads use FINAL). When
 * ClickHouse is down the insert fails, the consumer retries with backoff and the
 * offsets stay where they were: nothing is lost.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { ConsumedMessage, EventBus, Subscription } from '../../lib/bus/bus.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { TableBatcher } from '../../lib/clickhouse/batcher.js';
import type { TopicName } from '../../schemas/events.js';
import type { LogSinkConfig, RetentionDays } from './config.js';
import type { RowEncoder } from '../../lib/clickhouse/tsv.js';
import { LOG_TSV, deadLetterRow, httpRow, lifecycleRow, retentionStatement, usageRow } from './rows.js';
import { logSinkMetrics } from './telemetry.js';

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

export async function startLogSink(deps: SinkDeps): Promise<Subscription> {
  const { ch, config } = deps;
  const log = deps.logger.child({ component: 'log-sink' });
  const metrics = logSinkMetrics(deps.registry);
  const batcher = <R = Record<string, unknown>>(table: string, format?: RowEncoder<R>) =>
    new TableBatcher<R>(ch, table, format, { maxRows: config.batchRows, maxMs: config.batchMs }, (n) => metrics.rowsWritten.inc({ table }, n));
  const tables = {
    logs: batcher('logs', LOG_TSV),
    lifecycle: batcher('lifecycle'),
    http: batcher('http_requests'),
    usage: batcher('usage'),
    dlq: batcher('dead_letters'),
  };
  await applyRetention(ch, config.retentionDays);
  // One consumer per topic: a table that cannot take rows (and is being retried) does
  // not hold up the others.
  const group = deps.group ?? 'log-sink';
  const subs: Subscription[] = [];
  const sub: Subscription = { group, stop: async () => void (await Promise.all(subs.map((s) => s.stop()))) };
  // Each partition's handler is a source for its table's batcher (see TableBatcher).
  const handlers: { [T in (typeof SINK_TOPICS)[number]]: (events: ConsumedMessage<T>[], ctx: { partition: number }) => Promise<void> } = {
    logs: (b, c) => tables.logs.add(b.map((m) => m.event), `${c.partition}`),
    lifecycle: (b, c) => tables.lifecycle.add(b.map((m) => lifecycleRow(m.event)), `${c.partition}`),
    http: (b, c) => tables.http.add(b.map((m) => httpRow(m.event)), `${c.partition}`),
    // The newest computation of a usage row wins: its Kafka timestamp orders them, on replay too.
    usage: (b, c) => tables.usage.add(b.map((m) => usageRow(m.event, m.timestamp)), `${c.partition}`),
    dlq: (b, c) => tables.dlq.add(b.map((m) => deadLetterRow(m.event)), `${c.partition}`),
  };
  try {
    for (const topic of SINK_TOPICS) {
      subs.push(
        await deps.bus.subscribe({
          group: `${group}.${topic}`,
          topics: [topic],
          concurrency: config.concurrency,
          handle: handlers[topic] as (b: ConsumedMessage<typeof topic>[], ctx: { partition: number }) => Promise<void>,
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
