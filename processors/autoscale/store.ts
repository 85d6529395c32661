/**
 * The autoscale processor's ClickHouse side, all optional: signals kept as history in
 * `autoscale_signals`, and containers older than the lifecycle topic's retention read
 * back from `lifecycle` at start.
 */
import type { Logger } from '../../lib/logger.js';
import type { ClickHouse } from '../../lib/clickhouse/client.js';
import { errorMessage } from '../../lib/errors.js';
import type { AutoscaleSignal, WindowStats } from '../../schemas/events.js';
import type { PolicyConfig } from './config.js';
import type { FleetEvent } from './fleet.js';
import type { AutoscaleMetrics } from './telemetry.js';

/** The policy a signal was decided under; its targets are stored with the signal. */
export type PolicyOf = (s: AutoscaleSignal) => PolicyConfig | undefined;

/** A signal as a row of `autoscale_signals` (windows flattened), with its policy's targets. */
export function signalRow(s: AutoscaleSignal, policy?: PolicyConfig): Record<string, unknown> {
  const flat = (prefix: string, w: WindowStats) => Object.fromEntries(Object.entries(w).map(([k, v]) => [`${prefix}${k}`, v]));
  return {
    event_id: s.event_id,
    tenant: s.tenant,
    app: s.app,
    node: s.node,
    host: s.host,
    ts: s.ts,
    version: s.version,
    mode: s.mode,
    current_replicas: s.current_replicas,
    recommended_replicas: s.recommended_replicas,
    reason: s.reason,
    ...flat('stable_', s.stable),
    ...flat('panic_', s.panic),
    target_p95_ms: policy?.targetP95Ms ?? null,
    target_in_flight: policy?.targetInFlightPerReplica ?? null,
  };
}

/**
 * Signals are on Kafka already when they get here: their rows are history, so a failed
 * insert is not retried on its own but with the next tick's rows, up to `maxPendingRows`
 * (the oldest are dropped past it, counted and logged).
 */
export class SignalStore {
  private pending: Record<string, unknown>[] = [];

  constructor(
    private readonly ch: ClickHouse,
    private readonly maxPendingRows: number,
    private readonly metrics: AutoscaleMetrics,
    private readonly log: Logger,
  ) {}

  async store(signals: readonly AutoscaleSignal[], policyOf?: PolicyOf): Promise<void> {
    const rows = this.pending.concat(signals.map((s) => signalRow(s, policyOf?.(s))));
    if (rows.length === 0) return;
    try {
      await this.ch.insert('autoscale_signals', rows);
      this.pending = [];
    } catch (err) {
      const over = rows.length - this.maxPendingRows;
      if (over > 0) {
        this.metrics.failed.inc({ stage: 'store' }, over);
        this.log.warn({ dropped: over }, 'autoscale signal rows dropped: ClickHouse failing longer than maxPendingRows signals');
      }
      this.pending = over > 0 ? rows.slice(over) : rows;
      this.log.warn({ err: errorMessage(err), pending: this.pending.length }, 'autoscale signals not stored; retried with the next tick');
    }
  }
}

/** Latest start/stop state per container from ClickHouse, for containers older than the topic's retention. A failed query is logged; the topic still gives what it holds. */
export async function seedContainers(ch: ClickHouse, apply: (e: FleetEvent) => void, log: Logger): Promise<void> {
  type Row = { container_id: string; tenant: string; app: string; last_ts: number | string; last_action: string; last_labels: Record<string, string> };
  try {
    const rows = await ch.query<Row>(
      `SELECT container_id, tenant, app, toUnixTimestamp64Milli(max(ts)) AS last_ts, argMax(action, ts) AS last_action, argMax(labels, ts) AS last_labels
       FROM ${ch.table('lifecycle')} FINAL
       WHERE action IN ('create', 'start', 'restart', 'unpause', 'die', 'stop', 'pause', 'destroy')
       GROUP BY container_id, tenant, app
       HAVING last_action != 'destroy'`,
    );
    for (const r of rows) apply({ container_id: r.container_id, tenant: r.tenant, app: r.app, ts: Number(r.last_ts), action: r.last_action, labels: r.last_labels });
    log.info({ containers: rows.length }, 'containers seeded from ClickHouse lifecycle');
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'containers not seeded from ClickHouse; only the lifecycle topic counts replicas');
  }
}
