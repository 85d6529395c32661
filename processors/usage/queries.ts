/**
 * The usage meters' SQL: every meter for hours in [from, to) from the log center's
 * tables, per tenant, app and node (the node column every source row carries). Every
 * query reads FINAL (one row per event), so the result is a function of the tables'
 * contents; the arithmetic is meters.ts'.
 */
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { runIntervals, splitByHour, type Meter, type MeterValue } from './meters.js';

/** All meters for hours in [from, to). */
export async function computeMeters(ch: ClickHouse, from: number, to: number, now: number): Promise<MeterValue[]> {
  const p = { from, to };
  const range = `ts >= fromUnixTimestamp64Milli({from:Int64}) AND ts < fromUnixTimestamp64Milli({to:Int64})`;
  const hourOf = `toUnixTimestamp(toStartOfHour(ts)) * 1000`;
  const out: MeterValue[] = [];
  const push = (r: { tenant: string; app: string; node: string; hour: number }, meter: Meter, quantity: number, dimensions: Record<string, string> = {}) => {
    if (quantity > 0) out.push({ tenant: r.tenant, app: r.app, node: r.node, hour: Number(r.hour), meter, quantity, dimensions });
  };

  type Traffic = { tenant: string; app: string; node: string; hour: number; egress: number; ingress: number; internal: number; blkio: number };
  for (const r of await ch.query<Traffic>(
    `SELECT tenant, app, node, ${hourOf} AS hour,
            sumIf(tx_bytes, traffic_class = 'external') AS egress,
            sumIf(rx_bytes, traffic_class = 'external') AS ingress,
            sumIf(rx_bytes + tx_bytes, traffic_class = 'internal') AS internal,
            sum(blkio_bytes) AS blkio
     FROM ${ch.table('traffic')} FINAL WHERE ${range} GROUP BY tenant, app, node, hour`,
    p,
  )) {
    push(r, 'egress_external_bytes', r.egress);
    push(r, 'ingress_external_bytes', r.ingress);
    push(r, 'internal_bytes', r.internal);
    push(r, 'blkio_bytes', r.blkio);
  }

  type Count = { tenant: string; app: string; node: string; hour: number; n: number };
  for (const r of await ch.query<Count>(`SELECT tenant, app, node, ${hourOf} AS hour, count() AS n FROM ${ch.table('http_requests')} FINAL WHERE ${range} GROUP BY tenant, app, node, hour`, p)) {
    push(r, 'requests', r.n);
  }
  for (const r of await ch.query<Count>(`SELECT tenant, app, node, ${hourOf} AS hour, sum(original_length) AS n FROM ${ch.table('logs')} FINAL WHERE ${range} GROUP BY tenant, app, node, hour`, p)) {
    push(r, 'log_bytes', r.n);
  }

  // Container-seconds by size: lifecycle start/die, and the last stats sample for running ones.
  type Life = { tenant: string; app: string; node: string; container_id: string; size: string; action: string; ts: number };
  const life = await ch.query<Life>(
    `SELECT tenant, app, node, container_id, size, action, toUnixTimestamp64Milli(ts) AS ts FROM ${ch.table('lifecycle')} FINAL
     WHERE action IN ('start', 'restart', 'die') AND actor = 'docker'
       AND container_id IN (SELECT container_id FROM ${ch.table('lifecycle')} FINAL WHERE action IN ('start', 'restart') AND ts < fromUnixTimestamp64Milli({to:Int64}))
       AND container_id NOT IN (SELECT container_id FROM ${ch.table('lifecycle')} FINAL WHERE action = 'destroy' AND ts < fromUnixTimestamp64Milli({from:Int64}))
     ORDER BY container_id, ts`,
    p,
  );
  const seen = new Map(
    (await ch.query<{ container_id: string; last: number }>(`SELECT container_id, toUnixTimestamp64Milli(max(ts)) AS last FROM ${ch.table('traffic')} FINAL WHERE ts < fromUnixTimestamp64Milli({to:Int64}) GROUP BY container_id`, p)).map(
      (r) => [r.container_id, Number(r.last)],
    ),
  );
  const byContainer = new Map<string, Life[]>();
  for (const r of life) {
    let list = byContainer.get(r.container_id);
    if (!list) byContainer.set(r.container_id, (list = []));
    list.push({ ...r, ts: Number(r.ts) });
  }
  const seconds = new Map<string, { tenant: string; app: string; node: string; hour: number; size: string; s: number }>();
  for (const [id, events] of byContainer) {
    const first = events[0]!;
    const size = events.find((e) => e.size)?.size ?? '';
    for (const [a, b] of runIntervals(events, seen.get(id), now)) {
      for (const [hour, s] of splitByHour(a, b, from, to)) {
        const key = `${first.tenant}\0${first.app}\0${first.node}\0${hour}\0${size}`;
        const acc = seconds.get(key) ?? { tenant: first.tenant, app: first.app, node: first.node, hour, size, s: 0 };
        acc.s += s;
        seconds.set(key, acc);
      }
    }
  }
  for (const v of seconds.values()) push(v, 'container_seconds', Math.round(v.s * 1000) / 1000, { size: v.size || 'default' });
  return out;
}

