/** The KEDA external scaler's metrics. No tenant labels: the per-app figures are autoscale's gauges. */
import { counter, gauge, type Registry } from '../../lib/metrics.js';

export function kedaMetrics(registry: Registry) {
  return {
    calls: counter(registry, 'logmeter_keda_calls_total', 'gRPC calls of the KEDA external scaler, by method and outcome (ok, invalid_argument)', ['method', 'outcome']),
    pushes: counter(registry, 'logmeter_keda_stream_pushes_total', 'IsActive results pushed on StreamIsActive streams'),
    streams: gauge(registry, 'logmeter_keda_streams', 'Open StreamIsActive streams'),
  };
}

export type KedaMetrics = ReturnType<typeof kedaMetrics>;
