/**
 * The whole configuration of a logmeter process: the shared settings of lib/config.ts
 * plus each component's section, each defined next to its component (ingest/config.ts,
 * processors/<name>/config.ts). One schema, validated once at start; every problem is
 * reported together (see lib/config.ts for the sources and their order).
 */
import { z } from 'zod';
import { BASE_ENV_VARS, baseConfigShape, csv, decimal, loadConfigWith, tenantTokens, unknownVariables as unknownOf, type EnvVar, type LoadOptions } from '../lib/config.js';
import { COLLECTOR_DEFAULTS, collectorConfigSchema } from '../ingest/config.js';
import { SCALER_DEFAULTS, scalerConfigSchema } from '../processors/scaler/config.js';
import { AUTOSCALE_DEFAULTS, autoscaleConfigSchema } from '../processors/autoscale/config.js';
import { routesConfigSchema } from '../processors/routes/config.js';
import { KEDA_DEFAULTS, kedaConfigSchema } from '../processors/keda/config.js';

export const configSchema = z
  .object({
    ...baseConfigShape,
    /**
     * Prefix of the container labels logmeter reads and writes (`<prefix>tenant`, `app`,
     * `lb-host`, …): one setting for the collector, the route table, autoscale and the
     * scaler, which each get it in their own config. Default `logmeter.`.
     */
    labelPrefix: z.string().default('logmeter.'),
    /** The per-node collector (see ingest/config.ts). */
    collector: collectorConfigSchema.omit({ labelPrefix: true }).default(COLLECTOR_DEFAULTS),
    /** Route table, HAProxy and the applier (see processors/routes/config.ts). */
    routes: routesConfigSchema.omit({ labelPrefix: true }).default(routesConfigSchema.parse({})),
    /** Autoscale signals: windows and per-app policy (see processors/autoscale/config.ts). */
    autoscale: autoscaleConfigSchema.default(AUTOSCALE_DEFAULTS),
    /** The scaler: autoscale signals → replicas started and stopped (see processors/scaler/config.ts). */
    scaler: scalerConfigSchema.omit({ labelPrefix: true }).default(SCALER_DEFAULTS),
    /** The KEDA external scaler: autoscale signals over gRPC (see processors/keda/config.ts). */
    keda: kedaConfigSchema.default(KEDA_DEFAULTS),
    api: z
      .object({
        /** Operator token: sees every tenant and may run `logmeter sql` through the running process. */
        adminToken: z.string().min(16, 'at least 16 characters').optional(),
        /** Tenant → bearer token for the log center API. */
        tokens: z.record(z.string().min(1), z.string().min(16, 'at least 16 characters')).default({}),
      })
      .strict()
      .default({ tokens: {} }),
    processors: z
      .object({
        /** Log sink batches: rows per insert… */
        sinkBatchRows: z.number().int().min(1).default(50_000),
        /** …or milliseconds. */
        sinkBatchMs: z.number().int().min(1).default(500),
        /** Days each table keeps its rows (ClickHouse TTL). */
        retentionDays: z
          .object({
            logs: z.number().int().min(1).default(30),
            lifecycle: z.number().int().min(1).default(400),
            http_requests: z.number().int().min(1).default(30),
            traffic: z.number().int().min(1).default(400),
          })
          .strict()
          .default({ logs: 30, lifecycle: 400, http_requests: 30, traffic: 400 }),
        /** Seconds between usage recomputations. */
        usageIntervalSeconds: z.number().positive().default(30),
        /** Hours back each usage recomputation covers. */
        usageLookbackHours: z.number().int().min(1).default(3),
        /** Price list for billing reports (YAML). Default: config/prices.yaml. */
        priceList: z.string().optional(),
        /** Billing report periods scheduled as bullmq repeatable jobs. */
        reportPeriods: z.array(z.enum(['hourly', 'daily', 'monthly'])).default(['hourly', 'daily']),
      })
      .strict()
      .default({
        sinkBatchRows: 50_000,
        sinkBatchMs: 500,
        retentionDays: { logs: 30, lifecycle: 400, http_requests: 30, traffic: 400 },
        usageIntervalSeconds: 30,
        usageLookbackHours: 3,
        reportPeriods: ['hourly', 'daily'],
      }),
  })
  .strict()
  // The one label prefix, handed to each component that reads or writes labels.
  .transform((c) => ({
    ...c,
    collector: { ...c.collector, labelPrefix: c.labelPrefix },
    routes: { ...c.routes, labelPrefix: c.labelPrefix },
    scaler: { ...c.scaler, labelPrefix: c.labelPrefix },
  }));

export type Config = z.infer<typeof configSchema>;

/** Environment variables and the config paths they set. */
export const ENV_VARS: readonly EnvVar[] = [
  ...BASE_ENV_VARS,
  { name: 'LOGMETER_ADMIN_TOKEN', path: ['api', 'adminToken'], secret: true },
  { name: 'LOGMETER_API_TOKENS', path: ['api', 'tokens'], parse: tenantTokens, secret: true },
  { name: 'LOGMETER_PRICE_LIST', path: ['processors', 'priceList'] },
  { name: 'LOGMETER_LABEL_PREFIX', path: ['labelPrefix'] },
  { name: 'LOGMETER_LB_BIND', path: ['routes', 'lb', 'bind'] },
  { name: 'LOGMETER_SCALER_MAX_CONTAINERS', path: ['scaler', 'maxContainersPerNode'], parse: decimal },
  { name: 'LOGMETER_SCALER_DRAIN_MS', path: ['scaler', 'drainMs'], parse: decimal },
  { name: 'LOGMETER_KEDA_LISTEN', path: ['keda', 'listen'] },
  { name: 'LOGMETER_COLLECTOR_THREAD', path: ['collector', 'thread'], parse: flag },
  { name: 'LOGMETER_INTERNAL_NETWORKS', path: ['collector', 'internalNetworks'], parse: csv },
  { name: 'LOGMETER_EXTERNAL_NETWORKS', path: ['collector', 'externalNetworks'], parse: csv },
  { name: 'LOGMETER_STATS_INTERVAL', path: ['collector', 'statsIntervalSeconds'], parse: decimal },
  { name: 'LOGMETER_MAX_LINE_BYTES', path: ['collector', 'maxLineBytes'], parse: decimal },
  { name: 'LOGMETER_STALL_SECONDS', path: ['collector', 'stallSeconds'], parse: decimal },
  { name: 'LOGMETER_PACK_LOGS', path: ['collector', 'packLogs'], parse: (raw) => (raw === 'true' ? true : raw === 'false' ? false : raw) },
  { name: 'LOGMETER_MAX_BUFFERED_BYTES', path: ['collector', 'maxBufferedBytes'], parse: decimal },
  { name: 'LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT', path: ['collector', 'heapGrowingPercent'], parse: decimal },
  { name: 'LOGMETER_TENANT_LINES_PER_SECOND', path: ['collector', 'rateLimit', 'linesPerSecond'], parse: decimal },
  { name: 'LOGMETER_TENANT_BYTES_PER_SECOND', path: ['collector', 'rateLimit', 'bytesPerSecond'], parse: decimal },
  { name: 'LOGMETER_NODE_LINES_PER_SECOND', path: ['collector', 'rateLimit', 'node', 'linesPerSecond'], parse: decimal },
  { name: 'LOGMETER_NODE_BYTES_PER_SECOND', path: ['collector', 'rateLimit', 'node', 'bytesPerSecond'], parse: decimal },
];

/** `true`/`false` (or `1`/`0`, `yes`/`no`, `on`/`off`); anything else is kept as text, so validation reports it with the value. */
export function flag(raw: string): unknown {
  const v = raw.trim().toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(v)) return true;
  if (['false', '0', 'no', 'off'].includes(v)) return false;
  return raw;
}

/** Loads, merges and validates the configuration; throws ConfigError listing every problem. */
export function loadConfig(opts: LoadOptions = {}): Config {
  return loadConfigWith(configSchema, ENV_VARS, opts);
}

/** `LOGMETER_*` variables that no config key reads, each with the closest known name. */
export function unknownVariables(env: NodeJS.ProcessEnv): Array<{ name: string; didYouMean: string | undefined }> {
  return unknownOf(env, ENV_VARS);
}
