/**
 * The scaler's metrics. No tenant or app label: their number is not bounded here; the
 * lifecycle events carry them.
 */
import { counter, gauge, type Registry } from '../../lib/metrics.js';

export function scalerMetrics(registry: Registry) {
  return {
    signals: counter(registry, 'logmeter_scaler_signals_total', 'Autoscale signals handled, by outcome (enqueued, replaced, duplicate, in_sync, stale, not_opted_in, tenant_removed, superseded by a later one in the same batch)', ['outcome']),
    actions: counter(registry, 'logmeter_scaler_actions_total', 'Scaler actions published, by action (scale_up, drain, scale_down, scale_refused)', ['action']),
    refusals: counter(registry, 'logmeter_scaler_refusals_total', 'Scale changes refused, by reason (cooldown, cap, no_template, not_opted_in, tenant_removed); repeats included', ['reason']),
    jobFailures: counter(registry, 'logmeter_scaler_job_failures_total', 'Scale job attempts that failed, by whether it was the last', ['final']),
    nodeContainers: gauge(registry, 'logmeter_scaler_node_containers', 'Running tenant containers on the node at the last scale-up check'),
  };
}

export type ScalerMetrics = ReturnType<typeof scalerMetrics>;
