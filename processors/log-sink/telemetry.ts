/** The log sink's metrics. */
import { counter, type Registry } from '../../lib/metrics.js';

export function logSinkMetrics(registry: Registry) {
  return {
    rowsWritten: counter(registry, 'logmeter_sink_rows_written_total', 'Rows inserted into ClickHouse by the log sink', ['table']),
  };
}

export type LogSinkMetrics = ReturnType<typeof logSinkMetrics>;
