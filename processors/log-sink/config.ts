/**
 * The log sink's settings. The config file keeps them where they always were
 * (`processors.sinkBatchRows`, `processors.sinkBatchMs`, `processors.retentionDays`,
 * `kafka.partitions`); the composition (lib/pipeline.ts) maps them here.
 */
import { z } from 'zod';

export const retentionDaysSchema = z
  .object({
    /** Days `logs` keeps its rows. Default 30. */
    logs: z.number().int().min(1).default(30),
    /** Days `lifecycle` keeps its rows. Default 400. */
    lifecycle: z.number().int().min(1).default(400),
    /** Days `http_requests` keeps its rows. Default 30. */
    http_requests: z.number().int().min(1).default(30),
    /** Days `traffic` keeps its rows. Default 400. */
    traffic: z.number().int().min(1).default(400),
  })
  .strict();

export const logSinkConfigSchema = z
  .object({
    /** An insert is made when a table's batch holds this many rows… Default 50 000 (`processors.sinkBatchRows`). */
    batchRows: z.number().int().min(1).default(50_000),
    /**
     * …or after this many milliseconds. Default 500 (`processors.sinkBatchMs`). For `logs` and
     * `http_requests` (fair-batcher.ts) an insert starts as soon as rows wait, at most one per
     * batchMs / 5.
     */
    batchMs: z.number().int().min(1).default(500),
    /** Days each table keeps its rows, applied as ClickHouse TTLs at start (`processors.retentionDays`). */
    retentionDays: retentionDaysSchema.default({ logs: 30, lifecycle: 400, http_requests: 30, traffic: 400 }),
    /** Partitions of a topic handled at the same time, per topic: the per-container topics' partition count. Default 6 (`kafka.partitions`). */
    concurrency: z.number().int().min(1).default(6),
  })
  .strict();

export type LogSinkConfig = z.infer<typeof logSinkConfigSchema>;
export type RetentionDays = LogSinkConfig['retentionDays'];
export const LOG_SINK_DEFAULTS: LogSinkConfig = logSinkConfigSchema.parse({});
