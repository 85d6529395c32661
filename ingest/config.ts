/**
 * The collector's settings (the `collector` section of the config file; environment
 * variables `LOGMETER_COLLECTOR_*` for the common ones).
 */
import { z } from 'zod';

/**
 * The node budget's defaults: three quarters of what `logmeter up` (collector, processors
 * and API in one process) carried on the 2-core reference machine, measured by
 * bench/noisy-neighbor.ts (4,188 lines/s; BENCHMARKS.md, noisy neighbour), rounded down.
 * Bytes: 512 B per line, as before.
 */
export const NODE_DEFAULTS = { linesPerSecond: 3000, bytesPerSecond: 1536 * 1024, burstSeconds: 2 };
const TENANT_LINES = NODE_DEFAULTS.linesPerSecond / 2;
const TENANT_BYTES = NODE_DEFAULTS.bytesPerSecond / 2;

const nodeBudgetSchema = z
  .object({
    /** Lines per second this node carries, for all tenants together. Default 3000 (see NODE_DEFAULTS). */
    linesPerSecond: z.number().positive().default(NODE_DEFAULTS.linesPerSecond),
    /** Bytes per second this node carries, for all tenants together. Default 1.5 MiB. */
    bytesPerSecond: z.number().positive().default(NODE_DEFAULTS.bytesPerSecond),
    /** Seconds of burst a tenant's share holds. Default 2. */
    burstSeconds: z.number().positive().default(NODE_DEFAULTS.burstSeconds),
  })
  .strict();

export const collectorConfigSchema = z
  .object({
    /** Prefix of the identity labels. Default `logmeter.`. */
    labelPrefix: z.string().default('logmeter.'),
    /** Longest line kept, in bytes; longer lines are cut and flagged. Default 256 KiB. */
    maxLineBytes: z.number().int().min(1024).default(256 * 1024),
    /** Seconds between stats samples per container. Default 10. */
    statsIntervalSeconds: z.number().min(0.2).default(10),
    /** Docker network names whose traffic is internal (free). */
    internalNetworks: z.array(z.string()).default([]),
    /** Docker network names whose traffic is external (billed). */
    externalNetworks: z.array(z.string()).default([]),
    /** Class of a network in neither list. Default `external` (bill what is not known to be internal). */
    defaultTrafficClass: z.enum(['internal', 'external', 'unknown']).default('external'),
    /** Most bytes of events held in memory waiting for Kafka; reading from Docker pauses beyond it. Default 64 MiB. */
    maxBufferedBytes: z.number().int().min(64 * 1024).default(64 * 1024 * 1024),
    /**
     * The `logmeter collector` process's V8 heap: the old generation grows this many percent
     * past what the last major GC left live before the next one (lib/heap-limits.ts); 0 = V8's
     * own heuristics. Keeps the garbage of a full-speed read from piling up (issue 19).
     * Env `LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT`. Default 30.
     */
    heapGrowingPercent: z.number().int().min(0).max(1000).default(30),
    /** A Kafka batch is sent when it holds this many bytes… Default 512 KiB. */
    batchBytes: z.number().int().min(1024).default(512 * 1024),
    /** …or after this many milliseconds. Default 20. */
    lingerMs: z.number().int().min(0).default(20),
    /**
     * Pack each container's lines of a batch into shared Kafka records on the logs topic
     * (lib/bus/pack.ts; one Avro event per line still): ~300 lines per record instead of one.
     * Readers of the topic outside logmeter must unpack (docs/decisions/2026-12-05-packed-log-records.md).
     * Env `LOGMETER_PACK_LOGS` (`true`/`false`). Default true.
     */
    packLogs: z.boolean().default(true),
    /**
     * What a tenant may send (token buckets); a tenant's lines beyond them are dropped,
     * counted and reported. The per-tenant defaults are half the node's budget, so one
     * tenant alone cannot fill the node, and the node's budget is what this node's pipeline
     * carries (measured: BENCHMARKS.md, noisy neighbour).
     */
    rateLimit: z
      .object({
        /** Lines per second per tenant. Default 1500 (half the node's default budget). */
        linesPerSecond: z.number().positive().default(TENANT_LINES),
        /** Bytes per second per tenant. Default 768 KiB (half the node's default budget). */
        bytesPerSecond: z.number().positive().default(TENANT_BYTES),
        /** Seconds of burst the per-tenant buckets hold. Default 10 (15,000 lines at the default limit: what a collector catching up after a restart reads at once still passes). */
        burstSeconds: z.number().positive().default(10),
        /** Per-tenant overrides. */
        tenants: z
          .record(z.string(), z.object({ linesPerSecond: z.number().positive().optional(), bytesPerSecond: z.number().positive().optional() }).strict())
          .default({}),
        /**
         * The node's budget, shared max-min fairly among the tenants sending (ratelimit.ts),
         * on top of each tenant's own limits: set it to what this node's whole pipeline carries.
         * Unset: 3000 lines/s and 1.5 MiB/s, or the per-tenant default where that is higher
         * (lifting the tenants' limits lifts the node's with them; see `nodeBudget`).
         */
        node: nodeBudgetSchema.optional(),
      })
      .strict()
      .default({ linesPerSecond: TENANT_LINES, bytesPerSecond: TENANT_BYTES, burstSeconds: 10, tenants: {} }),
    /**
     * Watchdog: when events are buffered and Kafka has acknowledged nothing for this many
     * seconds, the collector logs an error, counts it (`logmeter_collector_stalls_total`),
     * reports `/healthz` degraded and rebuilds its producer. Env `LOGMETER_STALL_SECONDS`. Default 30.
     */
    stallSeconds: z.number().positive().default(30),
    /**
     * Longest wait for Docker to start answering a call (inspect, list, stats, and the opening
     * of a logs or events stream; a stream itself lives on): a call not answered by then is
     * aborted, logged and retried. Default 20.
     */
    dockerTimeoutSeconds: z.number().positive().default(20),
    /** On stop, how long to wait for Kafka to acknowledge what is buffered; the rest is read again at the next start. Default 15. */
    stopFlushSeconds: z.number().min(0).default(15),
    /** Seconds between drop reports per tenant and container. Default 1. */
    dropReportSeconds: z.number().positive().default(1),
    /**
     * Read by `logmeter up` only (app/collector-lane.ts), not by the collector: true runs it on
     * a worker thread of its own, its event loop shared with nothing else (issue 13: its reads
     * and sends, lifecycle events included, no longer wait behind the sink's, the parsers' and
     * the API's work), started again if it dies; false on the main thread next to them, as
     * before. `logmeter collector` is a process of its own either way. Env
     * `LOGMETER_COLLECTOR_THREAD`. Default true.
     */
    thread: z.boolean().default(true),
  })
  .strict();

export type CollectorConfig = z.infer<typeof collectorConfigSchema>;
export const COLLECTOR_DEFAULTS: CollectorConfig = collectorConfigSchema.parse({});

/** The node budget in force: the configured one, or the defaults (never below the per-tenant default). */
export function nodeBudget(rl: Pick<CollectorConfig['rateLimit'], 'linesPerSecond' | 'bytesPerSecond' | 'node'>): NodeBudgetConfig {
  return (
    rl.node ?? {
      linesPerSecond: Math.max(NODE_DEFAULTS.linesPerSecond, rl.linesPerSecond),
      bytesPerSecond: Math.max(NODE_DEFAULTS.bytesPerSecond, rl.bytesPerSecond),
      burstSeconds: NODE_DEFAULTS.burstSeconds,
    }
  );
}
export type NodeBudgetConfig = z.infer<typeof nodeBudgetSchema>;
