/**
 * The collector's settings (the `collector` section of the config file; environment
 * variables `LOGMETER_COLLECTOR_*` for the common ones).
 */
import { z } from 'zod';

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
    /** A Kafka batch is sent when it holds this many bytes… Default 512 KiB. */
    batchBytes: z.number().int().min(1024).default(512 * 1024),
    /** …or after this many milliseconds. Default 20. */
    lingerMs: z.number().int().min(0).default(20),
    /** Per-tenant limits (token buckets); a tenant's lines beyond them are dropped, counted and reported. */
    rateLimit: z
      .object({
        /** Lines per second per tenant. Default 20000. */
        linesPerSecond: z.number().positive().default(20_000),
        /** Bytes per second per tenant. Default 8 MiB. */
        bytesPerSecond: z.number().positive().default(8 * 1024 * 1024),
        /** Seconds of burst the buckets hold. Default 2. */
        burstSeconds: z.number().positive().default(2),
        /** Per-tenant overrides. */
        tenants: z
          .record(z.string(), z.object({ linesPerSecond: z.number().positive().optional(), bytesPerSecond: z.number().positive().optional() }).strict())
          .default({}),
      })
      .strict()
      .default({ linesPerSecond: 20_000, bytesPerSecond: 8 * 1024 * 1024, burstSeconds: 2, tenants: {} }),
    /**
     * Watchdog: when events are buffered and Kafka has acknowledged nothing for this many
     * seconds, the collector logs an error, counts it (`logmeter_collector_stalls_total`),
     * reports `/healthz` degraded and rebuilds its producer. Env `LOGMETER_STALL_SECONDS`. Default 30.
     */
    stallSeconds: z.number().positive().default(30),
    /** Seconds between drop reports per tenant and container. Default 1. */
    dropReportSeconds: z.number().positive().default(1),
  })
  .strict();

export type CollectorConfig = z.infer<typeof collectorConfigSchema>;
export const COLLECTOR_DEFAULTS: CollectorConfig = collectorConfigSchema.parse({});
