/**
 * `GET /api/v1/apps/:app/signals` and `/apps/:app/routes`: an app's autoscale signal over
 * time (what the autoscale processor stored in `autoscale_signals`, with its policy's
 * targets) and the current route set of its hosts (`route_sets`, the routes topic as the
 * route processor published it, processors/routes/store.ts).
 *
 * An app is known to a tenant once it has a lifecycle event, a signal or a route set of
 * that tenant; any other name — another tenant's app included — answers 404, as an absent
 * container or report does.
 */
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { TenantRouter } from './handler.js';
import { fromBeforeTo, intParam, nameParam, notFound, parse, pathParam, timeParam } from './params.js';
import { equals, scopeFor, scoped, timeRange, whereSql, type Scope } from './scope.js';
import { iso } from './time.js';

const signalsQuery = z
  .object({ tenant: nameParam.optional(), from: timeParam.optional(), to: timeParam.optional(), step: intParam(1, 86_400).optional() })
  .strict()
  .superRefine(fromBeforeTo);

const tenantOnlyQuery = z.object({ tenant: nameParam.optional() }).strict();

/** Default range of `/signals`: the last hour. */
const DEFAULT_RANGE_MS = 3_600_000;
/**
 * Without `step`, buckets are as wide as needed for about this many points (whole
 * seconds of the range; buckets start at multiples of the step, so one more may show).
 */
const MAX_POINTS = 720;

export interface SignalPoint {
  tenant: string;
  /** Start of the bucket (`step_s` wide). */
  ts: string;
  /** `panic` when any signal of the bucket was in panic. */
  mode: string;
  /** Running and recommended replicas of the bucket's last signal. */
  current_replicas: number;
  recommended_replicas: number;
  /** Highest p95 of the stable and the panic window in the bucket; null without enough requests. */
  p95_ms: number | null;
  panic_p95_ms: number | null;
  /** The policy's p95 target at the bucket's last signal; null when the policy has none. */
  target_p95_ms: number | null;
  /** Mean request rate of the stable window over the bucket's signals. */
  rate_rps: number;
  /** In-flight requests (stable window, highest in the bucket) and the per-replica target. */
  in_flight: number;
  target_in_flight: number | null;
  /** The bucket's last reason. */
  reason: string;
  /** Signals in the bucket. */
  signals: number;
}

export interface RouteSetItem {
  tenant: string;
  host: string;
  version: number;
  ts: string;
  upstreams: Array<{ container_id: string; address: string; port: number }>;
  reason: string;
}

/** Whether `app` is an app of the scope (any of its tables has a row of it). */
async function appKnown(ch: ClickHouse, scope: Scope, app: string): Promise<boolean> {
  const w = scoped(scope);
  equals(w, 'app', app);
  const where = whereSql(w);
  const rows = await ch.query<{ n: number }>(
    `SELECT count() AS n FROM (
       (SELECT 1 FROM ${ch.table('lifecycle')} ${where} LIMIT 1)
       UNION ALL (SELECT 1 FROM ${ch.table('autoscale_signals')} ${where} LIMIT 1)
       UNION ALL (SELECT 1 FROM ${ch.table('route_sets')} ${where} LIMIT 1)
     )`,
    w.params,
  );
  return Number(rows[0]?.n ?? 0) > 0;
}

export async function querySignals(ch: ClickHouse, q: { scope: Scope; app: string; from: number; to: number; stepS: number }): Promise<SignalPoint[]> {
  const w = scoped(q.scope);
  equals(w, 'app', q.app);
  timeRange(w, 'ts', q.from, q.to);
  w.params.step = q.stepS;
  type Row = Omit<SignalPoint, 'ts'> & { start_ms: number | string };
  const rows = await ch.query<Row>(
    `SELECT toString(tenant) AS tenant, toUnixTimestamp(toStartOfInterval(ts, toIntervalSecond({step:UInt32}))) * 1000 AS start_ms,
            if(countIf(mode = 'panic') > 0, 'panic', 'stable') AS mode,
            argMax(current_replicas, ts) AS current_replicas, argMax(recommended_replicas, ts) AS recommended_replicas,
            max(stable_p95_ms) AS p95_ms, max(panic_p95_ms) AS panic_p95_ms, argMax(target_p95_ms, ts) AS target_p95_ms,
            avg(stable_rate_rps) AS rate_rps, max(stable_in_flight) AS in_flight, argMax(target_in_flight, ts) AS target_in_flight,
            argMax(reason, ts) AS reason, count() AS signals
     FROM ${ch.table('autoscale_signals')} FINAL ${whereSql(w)}
     GROUP BY tenant, start_ms ORDER BY start_ms, tenant`,
    w.params,
  );
  return rows.map(({ start_ms, ...r }) => ({
    tenant: r.tenant,
    ts: iso(Number(start_ms)),
    mode: r.mode,
    current_replicas: Number(r.current_replicas),
    recommended_replicas: Number(r.recommended_replicas),
    p95_ms: r.p95_ms,
    panic_p95_ms: r.panic_p95_ms,
    target_p95_ms: r.target_p95_ms,
    rate_rps: r.rate_rps,
    in_flight: r.in_flight,
    target_in_flight: r.target_in_flight,
    reason: r.reason,
    signals: Number(r.signals),
  }));
}

/** The app's hosts with their newest stored set; a forgotten host (its newest row a tombstone) is not listed. */
export async function queryRoutes(ch: ClickHouse, scope: Scope, app: string): Promise<RouteSetItem[]> {
  const w = scoped(scope);
  equals(w, 'app', app);
  w.conds.push('deleted = 0');
  type Row = Omit<RouteSetItem, 'ts'> & { ts_ms: number | string };
  const rows = await ch.query<Row>(
    `SELECT tenant, host, version, toUnixTimestamp64Milli(ts) AS ts_ms, upstreams, reason FROM (
       SELECT host, toString(argMax(tenant, revision)) AS tenant, toString(argMax(app, revision)) AS app, argMax(version, revision) AS version,
              argMax(ts, revision) AS ts, argMax(upstreams, revision) AS upstreams, argMax(reason, revision) AS reason, argMax(deleted, revision) AS deleted
       FROM ${ch.table('route_sets')} GROUP BY host
     ) ${whereSql(w)}
     ORDER BY tenant, host`,
    w.params,
  );
  return rows.map(({ ts_ms, ...r }) => ({
    tenant: r.tenant,
    host: r.host,
    version: Number(r.version),
    ts: iso(Number(ts_ms)),
    upstreams: r.upstreams.map((u) => ({ container_id: u.container_id, address: u.address, port: Number(u.port) })),
    reason: r.reason,
  }));
}

export function registerAppRoutes(r: TenantRouter): void {
  r.get('/apps/:app/signals', async (principal, raw, params) => {
    const p = parse(signalsQuery, raw);
    const app = pathParam(params, 'app', 'app');
    const scope = scopeFor(principal, p.tenant);
    if (!(await appKnown(r.ch, scope, app))) throw notFound(`app ${JSON.stringify(app)}`);
    const to = p.to ?? Date.now();
    const from = p.from ?? to - DEFAULT_RANGE_MS;
    const stepS = p.step ?? Math.max(1, Math.ceil(Math.floor(Math.max(0, to - from) / 1000) / MAX_POINTS));
    return { app, from: iso(from), to: iso(to), step_s: stepS, items: await querySignals(r.ch, { scope, app, from, to, stepS }) };
  });

  r.get('/apps/:app/routes', async (principal, raw, params) => {
    const p = parse(tenantOnlyQuery, raw);
    const app = pathParam(params, 'app', 'app');
    const scope = scopeFor(principal, p.tenant);
    if (!(await appKnown(r.ch, scope, app))) throw notFound(`app ${JSON.stringify(app)}`);
    return { app, items: await queryRoutes(r.ch, scope, app) };
  });
}
