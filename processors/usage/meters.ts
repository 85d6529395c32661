/**
 * Usage meters per tenant/app/hour, computed from the log center's tables. Every
 * query reads FINAL (one row per event) and the result is a pure function of the
 * tables, so computing an hour again gives the same records with the same ids:
 * the usage table replaces them instead of adding.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { eventId } from '../../lib/event-id.js';
import type { UsageRecord } from '../../schemas/events.js';

export const HOUR = 3_600_000;

/** Meter → unit. internal_bytes is shown but free; egress_external_bytes is what traffic bills. */
export const METERS = {
  container_seconds: 'second',
  egress_external_bytes: 'byte',
  ingress_external_bytes: 'byte',
  internal_bytes: 'byte',
  requests: 'request',
  log_bytes: 'byte',
  blkio_bytes: 'byte',
} as const;

export type Meter = keyof typeof METERS;

export interface MeterValue {
  tenant: string;
  app: string;
  hour: number;
  meter: Meter;
  quantity: number;
  dimensions: Record<string, string>;
}

async function rows<T>(ch: ClickHouse, query: string, params: Record<string, unknown>): Promise<T[]> {
  const rs = await ch.client.query({ query, query_params: params, format: 'JSONEachRow' });
  return rs.json<T>();
}

/** Intervals [start, end) clipped into hours: seconds per hour bucket. */
export function splitByHour(start: number, end: number, from: number, to: number): Map<number, number> {
  const out = new Map<number, number>();
  let a = Math.max(start, from);
  const b = Math.min(end, to);
  while (a < b) {
    const hour = Math.floor(a / HOUR) * HOUR;
    const stop = Math.min(b, hour + HOUR);
    out.set(hour, (out.get(hour) ?? 0) + (stop - a) / 1000);
    a = stop;
  }
  return out;
}

/**
 * A container runs from a start (or restart) to the next die. One with no die yet runs
 * until its last stats sample (evidence it was alive), never past `now`.
 */
export function runIntervals(events: Array<{ action: string; ts: number }>, lastSeen: number | undefined, now: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let open: number | undefined;
  for (const e of [...events].sort((a, b) => a.ts - b.ts)) {
    if (e.action === 'start' || e.action === 'restart') open ??= e.ts;
    else if (e.action === 'die' && open !== undefined) {
      out.push([open, e.ts]);
      open = undefined;
    }
  }
  if (open !== undefined) out.push([open, Math.min(now, Math.max(open, lastSeen ?? open))]);
  return out;
}

/** All meters for hours in [from, to). */
export async function computeMeters(ch: ClickHouse, from: number, to: number, now: number): Promise<MeterValue[]> {
  const p = { from, to };
  const range = `ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})`;
  const hourOf = `toUnixTimestamp(toStartOfHour(ts)) * 1000`;
  const out: MeterValue[] = [];
  const push = (tenant: string, app: string, hour: number, meter: Meter, quantity: number, dimensions: Record<string, string> = {}) => {
    if (quantity > 0) out.push({ tenant, app, hour: Number(hour), meter, quantity, dimensions });
  };

  type Traffic = { tenant: string; app: string; hour: number; egress: number; ingress: number; internal: number; blkio: number };
  for (const r of await rows<Traffic>(
    ch,
    `SELECT tenant, app, ${hourOf} AS hour,
            sumIf(tx_bytes, traffic_class = 'external') AS egress,
            sumIf(rx_bytes, traffic_class = 'external') AS ingress,
            sumIf(rx_bytes + tx_bytes, traffic_class = 'internal') AS internal,
            sum(blkio_bytes) AS blkio
     FROM ${ch.table('traffic')} FINAL WHERE ${range} GROUP BY tenant, app, hour`,
    p,
  )) {
    push(r.tenant, r.app, r.hour, 'egress_external_bytes', r.egress);
    push(r.tenant, r.app, r.hour, 'ingress_external_bytes', r.ingress);
    push(r.tenant, r.app, r.hour, 'internal_bytes', r.internal);
    push(r.tenant, r.app, r.hour, 'blkio_bytes', r.blkio);
  }

  type Count = { tenant: string; app: string; hour: number; n: number };
  for (const r of await rows<Count>(ch, `SELECT tenant, app, ${hourOf} AS hour, count() AS n FROM ${ch.table('http_requests')} FINAL WHERE ${range} GROUP BY tenant, app, hour`, p)) {
    push(r.tenant, r.app, r.hour, 'requests', r.n);
  }
  for (const r of await rows<Count>(ch, `SELECT tenant, app, ${hourOf} AS hour, sum(original_length) AS n FROM ${ch.table('logs')} FINAL WHERE ${range} GROUP BY tenant, app, hour`, p)) {
    push(r.tenant, r.app, r.hour, 'log_bytes', r.n);
  }

  // Container-seconds by size: lifecycle start/die, and the last stats sample for running ones.
  type Life = { tenant: string; app: string; container_id: string; size: string; action: string; ts: number };
  const life = await rows<Life>(
    ch,
    `SELECT tenant, app, container_id, size, action, toUnixTimestamp64Milli(ts) AS ts FROM ${ch.table('lifecycle')} FINAL
     WHERE action IN ('start', 'restart', 'die') AND actor = 'docker'
       AND container_id IN (SELECT container_id FROM ${ch.table('lifecycle')} FINAL WHERE action IN ('start', 'restart') AND ts < fromUnixTimestamp64Milli({to:Int64}))
       AND container_id NOT IN (SELECT container_id FROM ${ch.table('lifecycle')} FINAL WHERE action = 'destroy' AND ts < fromUnixTimestamp64Milli({from:Int64}))
     ORDER BY container_id, ts`,
    p,
  );
  const seen = new Map(
    (await rows<{ container_id: string; last: number }>(ch, `SELECT container_id, toUnixTimestamp64Milli(max(ts)) AS last FROM ${ch.table('traffic')} FINAL WHERE ts < fromUnixTimestamp64Milli({to:Int64}) GROUP BY container_id`, p)).map(
      (r) => [r.container_id, Number(r.last)],
    ),
  );
  const byContainer = new Map<string, Life[]>();
  for (const r of life) {
    let list = byContainer.get(r.container_id);
    if (!list) byContainer.set(r.container_id, (list = []));
    list.push({ ...r, ts: Number(r.ts) });
  }
  const seconds = new Map<string, { tenant: string; app: string; hour: number; size: string; s: number }>();
  for (const [id, events] of byContainer) {
    const first = events[0]!;
    const size = events.find((e) => e.size)?.size ?? '';
    for (const [a, b] of runIntervals(events, seen.get(id), now)) {
      for (const [hour, s] of splitByHour(a, b, from, to)) {
        const key = `${first.tenant}\0${first.app}\0${hour}\0${size}`;
        const acc = seconds.get(key) ?? { tenant: first.tenant, app: first.app, hour, size, s: 0 };
        acc.s += s;
        seconds.set(key, acc);
      }
    }
  }
  for (const v of seconds.values()) push(v.tenant, v.app, v.hour, 'container_seconds', Math.round(v.s * 1000) / 1000, { size: v.size || 'default' });
  return out;
}

export function toUsageRecord(v: MeterValue, node: string): UsageRecord {
  const dims = Object.keys(v.dimensions)
    .sort()
    .map((k) => `${k}=${v.dimensions[k]}`)
    .join(',');
  return {
    event_id: eventId('usage', v.tenant, v.app, 'hour', v.hour, v.meter, dims),
    tenant: v.tenant,
    app: v.app,
    node,
    container_id: '',
    ts: v.hour,
    period: 'hour',
    meter: v.meter,
    unit: METERS[v.meter],
    quantity: v.quantity,
    dimensions: v.dimensions,
  };
}
