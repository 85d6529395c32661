/** The traffic processor's metrics. */
import { counter, type Registry } from '../../lib/metrics.js';

export function trafficMetrics(registry: Registry) {
  return {
    samples: counter(registry, 'logmeter_traffic_samples_total', 'Stats samples turned into traffic rows'),
  };
}

export type TrafficMetrics = ReturnType<typeof trafficMetrics>;
