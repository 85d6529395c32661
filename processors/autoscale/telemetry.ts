/**
 * The autoscale processor's metrics (`/metrics`). The counters have no tenant labels:
 * apps are many. The per-app gauges ({@link AppGauges}) do, for prometheus-adapter / HPA
 * users, with their cardinality bounded by construction: only apps with a signal in the
 * last stable window have series; an app's series are removed once its last signal is
 * older than that.
 */
import { counter, gauge, type Gauge, type Registry } from '../../lib/metrics.js';
import type { AutoscaleSignal } from '../../schemas/events.js';

export function autoscaleMetrics(registry: Registry) {
  return {
    requests: counter(registry, 'logmeter_autoscale_requests_total', 'HTTP requests taken into autoscale windows', ['source']),
    ignored: counter(registry, 'logmeter_autoscale_requests_ignored_total', 'HTTP requests not counted in any window', ['reason']),
    signals: counter(registry, 'logmeter_autoscale_signals_published_total', 'Autoscale signals published', ['mode']),
    failed: counter(registry, 'logmeter_autoscale_signal_failures_total', 'Autoscale signals not published or not stored', ['stage']),
    skipped: counter(registry, 'logmeter_autoscale_ticks_skipped_total', 'Ticks skipped because the previous one was still running'),
    active: gauge(registry, 'logmeter_autoscale_active_apps', 'Apps with requests in their stable window'),
  };
}

export type AutoscaleMetrics = ReturnType<typeof autoscaleMetrics>;

type AppLabel = 'tenant' | 'app';

/** Per-app gauges of the newest signal: recommended replicas, stable-window p95 and in-flight, panic mode. */
export class AppGauges {
  private readonly recommended: Gauge<AppLabel>;
  private readonly p95: Gauge<AppLabel>;
  private readonly inFlight: Gauge<AppLabel>;
  private readonly panic: Gauge<AppLabel>;
  /** `tenant/app` → its labels and its newest signal's ts. */
  private readonly seen = new Map<string, { labels: Record<AppLabel, string>; ts: number }>();

  constructor(
    registry: Registry,
    private readonly stableWindowMs: number,
  ) {
    this.recommended = gauge(registry, 'logmeter_autoscale_recommended_replicas', 'Replicas the newest autoscale signal recommends, per app (apps with a signal in the last stable window)', ['tenant', 'app']);
    this.p95 = gauge(registry, 'logmeter_autoscale_p95_ms', 'p95 latency over the stable window in ms, per app (absent while too few requests)', ['tenant', 'app']);
    this.inFlight = gauge(registry, 'logmeter_autoscale_in_flight', 'Requests in flight over the stable window (rate × mean latency), per app', ['tenant', 'app']);
    this.panic = gauge(registry, 'logmeter_autoscale_panic', 'Autoscale mode per app: 1 panic, 0 stable', ['tenant', 'app']);
  }

  /** Sets the gauges of `signals` and removes the series of apps without a signal since `now` − stable window. */
  update(signals: readonly AutoscaleSignal[], now: number): void {
    for (const s of signals) {
      const labels = { tenant: s.tenant, app: s.app };
      this.seen.set(`${s.tenant}/${s.app}`, { labels, ts: s.ts });
      this.recommended.set(labels, s.recommended_replicas);
      if (s.stable.p95_ms === null) this.p95.remove(labels);
      else this.p95.set(labels, s.stable.p95_ms);
      this.inFlight.set(labels, s.stable.in_flight);
      this.panic.set(labels, s.mode === 'panic' ? 1 : 0);
    }
    for (const [key, { labels, ts }] of this.seen) {
      if (now - ts <= this.stableWindowMs) continue;
      this.seen.delete(key);
      for (const g of [this.recommended, this.p95, this.inFlight, this.panic]) g.remove(labels);
    }
  }

  /** Apps with series. */
  get size(): number {
    return this.seen.size;
  }
}
