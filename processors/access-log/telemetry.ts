/**
 * The access-log parser's metrics. Labels come from fixed lists: `format` from the known
 * formats (a line with an unknown one is not counted, only warned about once), `reason`
 * from `PARSE_ERROR_CODES`.
 */
import { counter, type Registry } from '../../lib/metrics.js';

export function accessLogMetrics(registry: Registry) {
  return {
    parsed: counter(registry, 'logmeter_access_lines_parsed_total', 'Access-log lines parsed into HTTP requests', ['format']),
    unparsed: counter(registry, 'logmeter_access_lines_unparsed_total', 'Access-log lines that did not parse (kept as log lines)', ['format', 'reason']),
  };
}

export type AccessLogMetrics = ReturnType<typeof accessLogMetrics>;
