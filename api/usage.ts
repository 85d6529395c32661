/**
 * `GET /api/v1/usage`: metered usage per meter, dimensions, app and period (hour, day,
 * month). A meter's dimensions (`container_seconds` by `size`) stay apart: each
 * combination is an item of its own, `{}` for a meter without dimensions.
 */
import { z } from 'zod';
import type { ClickHouse } from '../lib/clickhouse/client.js';
import type { TenantRouter } from './handler.js';
import { fromBeforeTo, nameParam, parse, timeParam } from './params.js';
import { equals, scopeFor, scoped, timeRange, whereSql, type Scope } from './scope.js';
import { iso } from './time.js';

const usageQuery = z
  .object({
    tenant: nameParam.optional(),
    from: timeParam.optional(),
    to: timeParam.optional(),
    meter: nameParam.optional(),
    app: nameParam.optional(),
    period: z.enum(['hour', 'day', 'month']).optional(),
  })
  .strict()
  .superRefine(fromBeforeTo);

export interface UsageItem {
  tenant: string;
  app: string;
  meter: string;
  unit: string;
  /** The meter's dimensions (`{size: 'small'}`), `{}` for none. */
  dimensions: Record<string, string>;
  period_start: string;
  quantity: number;
}

const PERIOD_BUCKET = {
  hour: 'hour',
  day: 'toStartOfDay(hour)',
  month: "toDateTime(toStartOfMonth(hour), 'UTC')",
} as const;

/**
 * Usage per meter, dimensions, app and period. The usage table may hold both minute and hour rows
 * for the same hour (the usage topic allows either): an hour that has an `hour` row is
 * counted from it alone, otherwise from its finer rows, so nothing is counted twice.
 */
export async function queryUsage(
  ch: ClickHouse,
  q: { scope: Scope; from?: number | undefined; to?: number | undefined; meter?: string | undefined; app?: string | undefined; period: keyof typeof PERIOD_BUCKET },
): Promise<UsageItem[]> {
  const w = scoped(q.scope);
  timeRange(w, 'ts', q.from, q.to);
  equals(w, 'meter', q.meter);
  equals(w, 'app', q.app);
  // Dimensions are grouped as their sorted key=value pairs, so two maps listing the same pairs in another order are one.
  const found = await ch.query<{ tenant: string; app: string; meter: string; unit: string; dims: Array<[string, string]>; start_s: number; quantity: number }>(`SELECT tenant, app, meter, unit, dims, toUnixTimestamp(${PERIOD_BUCKET[q.period]}) AS start_s, sum(hour_quantity) AS quantity
     FROM (
       SELECT toString(tenant) AS tenant, toString(app) AS app, toString(meter) AS meter, toString(unit) AS unit,
              arraySort(arrayZip(mapKeys(dimensions), mapValues(dimensions))) AS dims, toStartOfHour(ts) AS hour,
              if(countIf(period = 'hour') > 0, sumIf(quantity, period = 'hour'), sumIf(quantity, period != 'hour')) AS hour_quantity
       FROM ${ch.table('usage')} FINAL ${whereSql(w)}
       GROUP BY tenant, app, meter, unit, dims, hour
     )
     GROUP BY tenant, app, meter, unit, dims, start_s
     ORDER BY start_s, tenant, app, meter, unit, dims`,
    w.params,
  );
  return found.map((r) => ({
    tenant: r.tenant,
    app: r.app,
    meter: r.meter,
    unit: r.unit,
    dimensions: Object.fromEntries(r.dims),
    period_start: iso(Number(r.start_s) * 1000),
    quantity: r.quantity,
  }));
}

export function registerUsageRoutes(r: TenantRouter): void {
  r.get('/usage', async (principal, raw) => {
    const p = parse(usageQuery, raw);
    const period = p.period ?? 'hour';
    return { period, items: await queryUsage(r.ch, { scope: scopeFor(principal, p.tenant), from: p.from, to: p.to, meter: p.meter, app: p.app, period }) };
  });
}
