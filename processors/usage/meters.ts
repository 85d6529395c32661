/**
 * Usage meters per tenant/app/node/hour: the pure part (hours, run intervals, records
 * and their ids, the window a computation covers). The SQL that reads the log center's
 * tables is in queries.ts. A record's id is a function of tenant, app, node, hour, meter
 * and dimensions, so computing an hour again gives the same records with the same ids:
 * the usage table replaces them instead of adding. The node is where the usage
 * happened (the node the collector that saw it names), not where it was computed.
 */
import { eventId } from '../../lib/event-id.js';
import type { UsageRecord } from '../../schemas/events.js';

export const HOUR = 3_600_000;

/** The hours one computation at `now` covers: the current hour and `lookbackHours` before it, [from, to). */
export function usageWindow(now: number, lookbackHours: number): { from: number; to: number } {
  const to = Math.floor(now / HOUR) * HOUR + HOUR;
  return { from: to - (lookbackHours + 1) * HOUR, to };
}

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
  /** The node the containers ran on (the source rows' `node`). */
  node: string;
  hour: number;
  meter: Meter;
  quantity: number;
  dimensions: Record<string, string>;
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

export function toUsageRecord(v: MeterValue): UsageRecord {
  const dims = Object.keys(v.dimensions)
    .sort()
    .map((k) => `${k}=${v.dimensions[k]}`)
    .join(',');
  return {
    event_id: eventId('usage', v.tenant, v.app, v.node, 'hour', v.hour, v.meter, dims),
    tenant: v.tenant,
    app: v.app,
    node: v.node,
    container_id: '',
    ts: v.hour,
    period: 'hour',
    meter: v.meter,
    unit: METERS[v.meter],
    quantity: v.quantity,
    dimensions: v.dimensions,
  };
}
