/**
 * The autoscale processor's settings (the `autoscale` section of the config file).
 *
 * A policy says what an app should feel like (target p95 latency and/or target
 * in-flight requests per replica) and how far the recommendation may move (min/max
 * replicas, panic threshold, cooldown). `policy` is the default for every app;
 * `apps["<tenant>/<app>"]` overrides it per app. Container labels
 * (`<prefix>autoscale.target-p95-ms`, `.target-in-flight`, `.min`, `.max`) override the
 * default too, but not an operator's `apps` entry: defaults < labels < `apps`.
 */
import { z } from 'zod';

const policyFields = {
  /** Target p95 latency in ms; `null` turns the latency metric off. Default 300. */
  targetP95Ms: z.number().positive().nullable().default(300),
  /** Target in-flight requests per replica (rate × mean latency); `null` turns it off. Default 10. */
  targetInFlightPerReplica: z.number().positive().nullable().default(10),
  /** Fewest replicas recommended. Default 1. */
  minReplicas: z.number().int().min(0).default(1),
  /** Most replicas recommended (a hard cap, also in panic). Default 10. */
  maxReplicas: z.number().int().min(1).default(10),
  /** Panic when a panic-window value is at least this many times its target. Default 2. */
  panicThreshold: z.number().min(1).default(2),
  /** Milliseconds since the last change (recommended or running replicas) before a scale-down. Default 120000. */
  cooldownMs: z.number().int().min(0).default(120_000),
  /** Fewest requests in a window for its latency percentiles to count (one slow request is no trend). Default 10. */
  minRequests: z.number().int().min(1).default(10),
};

export const policySchema = z
  .object(policyFields)
  .strict()
  .superRefine((p, ctx) => {
    if (p.targetP95Ms === null && p.targetInFlightPerReplica === null) {
      ctx.addIssue({ code: 'custom', message: 'set targetP95Ms or targetInFlightPerReplica (or both)', path: ['targetP95Ms'] });
    }
    if (p.minReplicas > p.maxReplicas) ctx.addIssue({ code: 'custom', message: `minReplicas ${p.minReplicas} > maxReplicas ${p.maxReplicas}`, path: ['minReplicas'] });
  });

export type PolicyConfig = z.infer<typeof policySchema>;
export const POLICY_DEFAULTS: PolicyConfig = policySchema.parse({});

/** A per-app override: any policy field, nothing else. */
export const policyOverrideSchema = z
  .object({
    targetP95Ms: policyFields.targetP95Ms.removeDefault().optional(),
    targetInFlightPerReplica: policyFields.targetInFlightPerReplica.removeDefault().optional(),
    minReplicas: policyFields.minReplicas.removeDefault().optional(),
    maxReplicas: policyFields.maxReplicas.removeDefault().optional(),
    panicThreshold: policyFields.panicThreshold.removeDefault().optional(),
    cooldownMs: policyFields.cooldownMs.removeDefault().optional(),
    minRequests: policyFields.minRequests.removeDefault().optional(),
  })
  .strict();

export type PolicyOverride = z.infer<typeof policyOverrideSchema>;

const wholeSeconds = (what: string) =>
  z
    .number()
    .int()
    .min(1000)
    .refine((n) => n % 1000 === 0, `${what} must be whole seconds (a multiple of 1000)`);

export const autoscaleConfigSchema = z
  .object({
    /** Length of the stable window in ms (whole seconds). Default 60000. */
    stableWindowMs: wholeSeconds('stableWindowMs').default(60_000),
    /** Length of the panic window in ms (whole seconds, at most the stable window). Default 6000. */
    panicWindowMs: wholeSeconds('panicWindowMs').default(6_000),
    /** Milliseconds between signals of an active app. Default 1000. */
    intervalMs: z.number().int().min(100).default(1000),
    /**
     * Between signals, every this many ms the apps not in panic are checked for one: an app
     * entering panic gets its signal at once instead of at the next interval. 0 turns the
     * check off. Default 200.
     */
    panicCheckMs: z.number().int().min(0).default(200),
    /**
     * Relative accuracy of the latency and queue-time percentiles (DDSketch): a reported
     * p50/p95/p99 is within this fraction of the exact value. Default 0.01 (1 %).
     */
    relativeAccuracy: z.number().min(0.001).max(0.05).default(0.01),
    /**
     * `<tenant>/<app>` of the load balancer's own containers: not counted as replicas, and
     * its requests (HAProxy logs) are attributed to the app whose `lb-host` label equals
     * the request's host. Default `platform/lb`.
     */
    lbApp: z
      .string()
      .regex(/^[^/]+\/[^/]*$/, 'expected tenant/app')
      .default('platform/lb'),
    /** On start, http events are re-read from this long before the stable window (Kafka timestamps lag event time). Default 5000. */
    replaySlackMs: z.number().int().min(0).default(5_000),
    /** Signals kept for a ClickHouse retry when an insert fails; beyond it the oldest are dropped (counted). Default 10000. */
    maxPendingRows: z.number().int().min(1).default(10_000),
    /** The default policy of every app. */
    policy: policySchema.default(POLICY_DEFAULTS),
    /** Per-app overrides, keyed `<tenant>/<app>`; they win over container labels. */
    apps: z.record(z.string().regex(/^[^/]+\/[^/]*$/, 'expected tenant/app'), policyOverrideSchema).default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.panicWindowMs > c.stableWindowMs) {
      ctx.addIssue({ code: 'custom', message: `panicWindowMs ${c.panicWindowMs} > stableWindowMs ${c.stableWindowMs}`, path: ['panicWindowMs'] });
    }
    for (const [app, o] of Object.entries(c.apps)) {
      const min = o.minReplicas ?? c.policy.minReplicas;
      const max = o.maxReplicas ?? c.policy.maxReplicas;
      if (min > max) ctx.addIssue({ code: 'custom', message: `minReplicas ${min} > maxReplicas ${max}`, path: ['apps', app] });
      const p95 = o.targetP95Ms === undefined ? c.policy.targetP95Ms : o.targetP95Ms;
      const inFlight = o.targetInFlightPerReplica === undefined ? c.policy.targetInFlightPerReplica : o.targetInFlightPerReplica;
      if (p95 === null && inFlight === null) ctx.addIssue({ code: 'custom', message: 'no target left (targetP95Ms and targetInFlightPerReplica both null)', path: ['apps', app] });
    }
  });

export type AutoscaleConfig = z.infer<typeof autoscaleConfigSchema>;
export const AUTOSCALE_DEFAULTS: AutoscaleConfig = autoscaleConfigSchema.parse({});
