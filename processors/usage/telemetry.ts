/** The usage processor's metrics. */
import { counter, type Registry } from '../../lib/metrics.js';

export function usageMetrics(registry: Registry) {
  return {
    published: counter(registry, 'logmeter_usage_records_published_total', 'Usage records published'),
  };
}

export type UsageMetrics = ReturnType<typeof usageMetrics>;
