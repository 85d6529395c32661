/**
 * Settings of the route table, the load balancer (HAProxy) and the applier that keeps
 * the two in step. Validated once at start (unknown keys refused, every problem
 * reported together). Environment: `LOGMETER_LB_BIND` sets `lb.bind`.
 */
import { z } from 'zod';
import { ConfigError } from '../../lib/errors.js';

const hostPort = z.string().superRefine((s, ctx) => {
  const m = /^([^\s:/]+):(\d{1,5})$/.exec(s);
  if (!m) ctx.addIssue({ code: 'custom', message: `expected host:port, got "${s}"` });
  else if (Number(m[2]) < 1 || Number(m[2]) > 65535) ctx.addIssue({ code: 'custom', message: `port must be 1-65535, got ${m[2]}` });
});

export const healthPolicySchema = z
  .object({
    /** Share of 5xx answers (504 included) in the window at which an upstream is taken out. Default 0.5. */
    errorRate: z.number().gt(0).max(1).default(0.5),
    /** Fewest requests in the window before the rate counts (one 502 is not "sustained"). Default 5. */
    minRequests: z.number().int().min(1).default(5),
    /** Sliding window of an upstream's requests, by the requests' own timestamps, in ms. Default 10000. */
    windowMs: z.number().int().min(100).default(10_000),
    /**
     * How long an upstream taken out for errors stays out before it is put back on
     * probation, in ms. Each further ejection doubles it (up to `maxProbationMs`);
     * a healthy window on probation resets it. Default 10000.
     */
    probationMs: z.number().int().min(0).default(10_000),
    /** Longest time out of rotation after repeated ejections, in ms. Default 120000. */
    maxProbationMs: z.number().int().min(0).default(120_000),
  })
  .strict();

export type HealthPolicy = z.infer<typeof healthPolicySchema>;

export const routesConfigSchema = z
  .object({
    /** Prefix of the identity labels (`<prefix>lb-host`, `<prefix>lb-port`, …). Default `logmeter.`. */
    labelPrefix: z.string().default('logmeter.'),
    /** Address routed to for ports published on every interface (`0.0.0.0` or empty). Default `127.0.0.1`. */
    wildcardAddress: z.string().min(1).default('127.0.0.1'),
    /**
     * How long a host stays in the route table with no upstream published and none of its
     * containers running, in seconds; then it is dropped (a tombstone on the routes topic,
     * its HAProxy backend slot and map entry freed). Default 600.
     */
    emptyHostGraceSeconds: z.number().min(0).default(600),
    /** Health beyond "TCP connects": sustained 5xx/504 per upstream. */
    health: healthPolicySchema.default(healthPolicySchema.parse({})),
    lb: z
      .object({
        /** Where HAProxy's HTTP frontend listens (`LOGMETER_LB_BIND`). Default `127.0.0.1:8080`. */
        bind: hostPort.default('127.0.0.1:8080'),
        /** Image built with `docker import` from the Debian haproxy. Default `logmeter/haproxy:1`. */
        image: z.string().min(1).default('logmeter/haproxy:1'),
        /**
         * Empty backends declared in the config and handed to app hosts at run time (a
         * host → backend map entry), so a new host needs no reload. Default 128.
         */
        backendSlots: z.number().int().min(1).max(10_000).default(128),
        /** HAProxy `timeout connect`, ms. Default 2000 (upstreams are local; a failed connect is retried elsewhere). */
        connectTimeoutMs: z.number().int().min(1).default(2000),
        /** HAProxy `timeout client` and `timeout server`, ms. Default 30000. */
        idleTimeoutMs: z.number().int().min(1).default(30_000),
        /** HAProxy `retries` (with `option redispatch`: a retry goes to another server). Default 2. */
        retries: z.number().int().min(0).max(10).default(2),
      })
      .strict()
      .default({ bind: '127.0.0.1:8080', image: 'logmeter/haproxy:1', backendSlots: 128, connectTimeoutMs: 2000, idleTimeoutMs: 30_000, retries: 2 }),
    applier: z
      .object({
        /** How often the applier asks HAProxy whether it restarted (`show info`), ms. Default 1000. */
        checkIntervalMs: z.number().int().min(50).default(1000),
        /** How long a removed server keeps its in-flight requests before they are cut, ms. Default 10000. */
        drainTimeoutMs: z.number().int().min(0).default(10_000),
        /** Longest wait for the routes topic to be read to its end at start before reconciling anyway, ms. Default 15000. */
        catchUpTimeoutMs: z.number().int().min(100).default(15_000),
        /** Time allowed for one runtime API command, ms. Default 2000. */
        commandTimeoutMs: z.number().int().min(10).default(2000),
        /**
         * Start hints (start-hints.ts): a container start seen in Docker's own event stream is
         * brought into HAProxy before its lifecycle event went through Kafka and the route
         * table; the set that confirms it must follow within this many ms, or the hinted
         * server is taken out again. 0 turns the hints off. Default 10000.
         */
        hintConfirmMs: z.number().int().min(0).default(10_000),
      })
      .strict()
      .default({ checkIntervalMs: 1000, drainTimeoutMs: 10_000, catchUpTimeoutMs: 15_000, commandTimeoutMs: 2000, hintConfirmMs: 10_000 }),
  })
  .strict();

export type RoutesConfig = z.infer<typeof routesConfigSchema>;
export type RoutesConfigInput = z.input<typeof routesConfigSchema>;

/** Validates `input` (a `routes` config section) with `LOGMETER_LB_BIND` applied; throws ConfigError listing every problem. */
export function loadRoutesConfig(input: unknown = {}, env: NodeJS.ProcessEnv = process.env): RoutesConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new ConfigError(['routes: expected a mapping']);
  const raw: Record<string, unknown> = { ...(input as Record<string, unknown>) };
  const bind = env.LOGMETER_LB_BIND;
  if (bind !== undefined && bind !== '') raw.lb = { ...(typeof raw.lb === 'object' && raw.lb !== null ? raw.lb : {}), bind };
  const result = routesConfigSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new ConfigError(
    result.error.issues.map((issue) => {
      const key = issue.path.map(String).join('.');
      return `${key === 'lb.bind' && bind ? 'LOGMETER_LB_BIND' : `routes.${key || '(top level)'}`}: ${issue.message}`;
    }),
  );
}
