/**
 * The KEDA external scaler's settings (the `keda` section of the config file).
 */
import { z } from 'zod';

export const kedaConfigSchema = z
  .object({
    /**
     * `host:port` the gRPC service listens on (`LOGMETER_KEDA_LISTEN`). It serves every
     * tenant's signals without authentication, so it binds to loopback by default; expose
     * it only to KEDA's operator (a NetworkPolicy, or a sidecar). Default `127.0.0.1:9095`.
     */
    listen: z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$/, 'expected host:port')
      .default('127.0.0.1:9095'),
    /** A signal older than this is no signal: metric 0, inactive (autoscale stops signalling an app without requests). Default 60000. */
    staleMs: z.number().int().min(1000).default(60_000),
  })
  .strict();

export type KedaConfig = z.infer<typeof kedaConfigSchema>;
export const KEDA_DEFAULTS: KedaConfig = kedaConfigSchema.parse({});
