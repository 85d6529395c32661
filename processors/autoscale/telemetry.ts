/** The autoscale processor's metrics (`/metrics`). No tenant labels: apps are many. */
import { counter, gauge, type Registry } from '../../lib/metrics.js';

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
