/**
 * Log sink: logs, lifecycle, HTTP requests, usage and dead letters from Kafka into
 * ClickHouse. Per batch: rows → batched insert (by rows and milliseconds) → the
 * consumer commits offsets only after the insert succeeded. Redelivered events carry
 * the same event_id and merge away (ReplacingMergeTree; reads use FINAL). When
 * ClickHouse is down the insert fails, the consumer retries with backoff and the
 * offsets stay where they were: nothing is lost.
 */
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/logger.js';
import type { ConsumedMessage, EventBus, Subscription } from '../../lib/bus/kafka.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { TableBatcher } from '../../lib/clickhouse/batcher.js';
import { counter } from '../../lib/metrics.js';
import type { Config } from '../../lib/config.js';
import type { EventMap, TopicName } from '../../schemas/events.js';
import { LOG_COLUMNS, deadLetterRow, httpRow, lifecycleRow, logRow, usageRow } from './rows.js';

export const SINK_TOPICS = ['logs', 'lifecycle', 'http', 'usage', 'dlq'] as const satisfies readonly TopicName[];

export interface SinkDeps {
  config: Config;
  bus: EventBus;
  ch: ClickHouse;
  logger: Logger;
  registry: Registry;
}

/** Retention per table, applied as ClickHouse TTLs at start (idempotent). */
export async function applyRetention(ch: ClickHouse, days: Config['processors']['retentionDays']): Promise<void> {
  for (const [table, n] of Object.entries(days)) {
    await ch.client.command({ query: `ALTER TABLE ${ch.table(table)} MODIFY TTL toDateTime(ts) + toIntervalDay(${Math.floor(n)})` });
  }
}

/** The events of a batch whose topic the caller has checked. */
function events<T extends TopicName>(batch: ConsumedMessage<TopicName>[], _topic: T): EventMap[T][] {
  return batch.map((m) => m.event as EventMap[T]);
}

export async function startLogSink(deps: SinkDeps): Promise<Subscription> {
  const { ch, config } = deps;
  const log = deps.logger.child({ component: 'log-sink' });
  const rowsWritten = counter(deps.registry, 'logmeter_sink_rows_written_total', 'Rows inserted into ClickHouse by the log sink', ['table']);
  const { sinkBatchRows: rows, sinkBatchMs: ms } = config.processors;
  const batcher = (table: string, columns?: readonly string[]) => new TableBatcher(ch, table, columns, rows, ms, (n) => rowsWritten.inc({ table }, n));
  const tables = {
    logs: batcher('logs', LOG_COLUMNS),
    lifecycle: batcher('lifecycle'),
    http: batcher('http_requests'),
    usage: batcher('usage'),
    dlq: batcher('dead_letters'),
  };
  await applyRetention(ch, config.processors.retentionDays);
  const sub = await deps.bus.subscribe({
    group: 'log-sink',
    topics: SINK_TOPICS,
    concurrency: config.kafka.partitions,
    handle: async (batch, { topic }) => {
      switch (topic) {
        case 'logs':
          return tables.logs.add(events(batch, topic).map(logRow));
        case 'lifecycle':
          return tables.lifecycle.add(events(batch, topic).map(lifecycleRow));
        case 'http':
          return tables.http.add(events(batch, topic).map(httpRow));
        case 'usage':
          // The newest computation of a usage row wins: its Kafka timestamp orders them, on replay too.
          return tables.usage.add(batch.map((m) => usageRow(m.event as EventMap['usage'], m.timestamp)));
        case 'dlq':
          return tables.dlq.add(events(batch, topic).map(deadLetterRow));
      }
    },
  });
  log.info({ topics: SINK_TOPICS }, 'log sink started');
  return sub;
}
