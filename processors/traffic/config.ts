/**
 * The traffic processor's settings. The config file has no section for them: the
 * composition (lib/pipeline.ts) starts it with these defaults.
 */
import { z } from 'zod';

export const trafficConfigSchema = z
  .object({
    /** An insert into `traffic` is made when the batch holds this many rows… Default 10 000. */
    batchRows: z.number().int().min(1).default(10_000),
    /** …or after this many milliseconds. Default 200. */
    batchMs: z.number().int().min(1).default(200),
    /** Partitions of the stats topic handled at the same time. Default 4. */
    concurrency: z.number().int().min(1).default(4),
  })
  .strict();

export type TrafficConfig = z.infer<typeof trafficConfigSchema>;
export const TRAFFIC_DEFAULTS: TrafficConfig = trafficConfigSchema.parse({});
