/**
 * The scaler's settings (the `scaler` section of the config file).
 *
 * Per-app templates are keyed `<tenant>/<app>`. A template is optional: without one a
 * new replica is a copy of the app's newest replica. Fields a template declares win
 * over that copy; fields it leaves out are still copied, so a template may be as small
 * as `{ image: 'shop:2' }`. An app with no container at all can only be scaled from a
 * template that names at least the image.
 */
import { z } from 'zod';

const portSpec = z
  .object({
    /** Port inside the container. */
    containerPort: z.number().int().min(1).max(65535),
    /** Default `tcp`. */
    protocol: z.enum(['tcp', 'udp', 'sctp']).default('tcp'),
    /** Host address the port is published on; the host port is always chosen by Docker. Default `127.0.0.1`. */
    hostIp: z.string().default('127.0.0.1'),
  })
  .strict();

export const appTemplateSchema = z
  .object({
    /** Image of new replicas. */
    image: z.string().min(1).optional(),
    /** Command (Docker `Cmd`). */
    cmd: z.array(z.string()).min(1).optional(),
    /** Entrypoint (Docker `Entrypoint`). */
    entrypoint: z.array(z.string()).optional(),
    /** Environment, merged over the copied replica's. */
    env: z.record(z.string().min(1), z.string()).optional(),
    /** Labels, merged over the copied replica's (the identity labels are always set by the scaler). */
    labels: z.record(z.string().min(1), z.string()).optional(),
    /** Docker networks, all attached; the first is the container's primary network. Replaces the copied list. */
    networks: z.array(z.string().min(1)).min(1).optional(),
    /** Published ports (dynamic host ports). Replaces the copied ports. */
    publish: z.array(portSpec).optional(),
    /** Memory limit in bytes (0 = none). */
    memoryBytes: z.number().int().min(0).optional(),
    /** CPU limit in billionths of a CPU (0 = none). */
    nanoCpus: z.number().int().min(0).optional(),
    /** Run Docker's init as PID 1 (fast, clean stops). Default: the copied replica's, else true. */
    init: z.boolean().optional(),
  })
  .strict();

export type AppTemplate = z.infer<typeof appTemplateSchema>;


export const scalerConfigSchema = z
  .object({
    /** Prefix of the identity labels (`<prefix>tenant`, `<prefix>app`, `<prefix>scaled-by`); must match the collector's. Default `logmeter.`. */
    labelPrefix: z.string().default('logmeter.'),
    /** Minimum time since an app's last change (either way) before it may change again. */
    cooldownMs: z
      .object({
        /** Before scaling up. Default 30 000 (30 s). */
        up: z.number().int().min(0).default(30_000),
        /** Before scaling down. Default 120 000 (2 min). */
        down: z.number().int().min(0).default(120_000),
      })
      .strict()
      .default({ up: 30_000, down: 120_000 }),
    /** Most running tenant containers (any app, with a `<prefix>tenant` label) on this node; growth beyond it is refused. Default 50. */
    maxContainersPerNode: z.number().int().min(1).default(50),
    /** Time between publishing a replica's `drain` and stopping it, for the route table to take it out and in-flight requests to finish. Default 2000. */
    drainMs: z.number().int().min(0).default(2000),
    /** Seconds Docker waits after SIGTERM before SIGKILL when stopping a replica. Default 10. */
    stopTimeoutSeconds: z.number().int().min(0).default(10),
    /** Attempts per scale job. Default 5. */
    jobAttempts: z.number().int().min(1).default(5),
    /** Retry delay of a failed scale job. */
    backoff: z
      .object({
        /** Default `exponential` (delay doubles each attempt). */
        type: z.enum(['exponential', 'fixed']).default('exponential'),
        /** First retry delay in ms. Default 1000. */
        delayMs: z.number().int().min(0).default(1000),
      })
      .strict()
      .default({ type: 'exponential', delayMs: 1000 }),
    /** Scale jobs run at the same time (for different apps; one app never runs twice at once). Default 4. */
    concurrency: z.number().int().min(1).default(4),
    /** Signals older than this (by their `ts`) are skipped: a newer one supersedes them. 0 = never skip. Default 30 000. */
    maxSignalAgeMs: z.number().int().min(0).default(30_000),
    /** Milliseconds between sweeps for scaler replicas of apps whose tenant removed their own containers (drained and removed). 0 = no sweep. Default 5000. */
    sweepMs: z.number().int().min(0).default(5000),
    /**
     * Several Docker nodes, a scaler on each: a bullmq queue per node (`<topicPrefix>scaler.<node>`, the node being
     * `LOGMETER_NODE`), each node's room and its apps' templates reported into Redis, replicas placed on the node with
     * the most room (nodes.ts). Default false: one engine, one queue `<topicPrefix>scaler`.
     */
    severalNodes: z.boolean().default(false),
    /** With `severalNodes`: milliseconds between a node's reports (a report is also written after each change). Default 5000. */
    nodeReportMs: z.number().int().min(100).default(5000),
    /** With `severalNodes`: how long a report lives unless refreshed; a node that stopped reporting gets no replica. Default 30 000. */
    nodeReportTtlMs: z.number().int().min(1000).default(30_000),
    /** Per-app templates keyed `<tenant>/<app>`. Default none. */
    apps: z
      .record(z.string(), appTemplateSchema)
      // Keys checked here rather than by the record, so a bad key and its entry's problems are all reported, named.
      .superRefine((apps, ctx) => {
        for (const key of Object.keys(apps)) {
          if (!/^[^/]+\/[^/]+$/.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: `expected "<tenant>/<app>", got "${key}"` });
        }
      })
      .default({}),
  })
  .strict();

export type ScalerConfig = z.infer<typeof scalerConfigSchema>;
export type ScalerConfigInput = z.input<typeof scalerConfigSchema>;
export const SCALER_DEFAULTS: ScalerConfig = scalerConfigSchema.parse({});
