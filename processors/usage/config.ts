/**
 * The usage processor's settings. The config file keeps them where they always were
 * (`processors.usageIntervalSeconds`, `processors.usageLookbackHours`); the composition
 * (lib/pipeline.ts) maps them here.
 */
import { z } from 'zod';

export const usageConfigSchema = z
  .object({
    /** Seconds between usage recomputations. Default 30 (`processors.usageIntervalSeconds`). */
    intervalSeconds: z.number().positive().default(30),
    /** Hours back each recomputation covers, besides the current one. Default 3 (`processors.usageLookbackHours`). */
    lookbackHours: z.number().int().min(1).default(3),
  })
  .strict();

export type UsageConfig = z.infer<typeof usageConfigSchema>;
export const USAGE_DEFAULTS: UsageConfig = usageConfigSchema.parse({});
