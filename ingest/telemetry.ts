/**
 * The collector's metrics (`/metrics`). Tenant is a label only on drops, whose tenants
 * are the few over their limits.
 */
import { counter, gauge, type Registry } from '../lib/metrics.js';

export function collectorMetrics(registry: Registry) {
  return {
    linesRead: counter(registry, 'logmeter_collector_lines_read_total', 'Lines read from containers', ['stream']),
    bytesRead: counter(registry, 'logmeter_collector_bytes_read_total', 'Bytes of lines read from containers (before truncation)', ['stream']),
    linesProduced: counter(registry, 'logmeter_collector_lines_produced_total', 'Lines acknowledged by Kafka'),
    eventsProduced: counter(registry, 'logmeter_collector_events_produced_total', 'Events acknowledged by Kafka', ['topic']),
    linesDropped: counter(registry, 'logmeter_collector_lines_dropped_total', 'Lines dropped, by reason and tenant', ['reason', 'tenant']),
    linesTruncated: counter(registry, 'logmeter_collector_lines_truncated_total', 'Lines cut at the maximum line size'),
    containersFollowed: gauge(registry, 'logmeter_collector_containers_followed', 'Containers whose logs are being followed'),
    containersIgnored: counter(registry, 'logmeter_collector_containers_ignored_total', 'Containers not collected: no tenant label (no_tenant) or identity labels refused (bad_label)', ['reason']),
    checkpointWriteErrors: counter(registry, 'logmeter_collector_checkpoint_write_errors_total', 'Checkpoint writes that failed (read-only directory, disk full); the checkpoint stays where it was'),
    checkpointWriteFailing: gauge(registry, 'logmeter_collector_checkpoint_write_failing', '1 while checkpoint writes fail, 0 once one succeeds again'),
    checkpointLag: gauge(registry, 'logmeter_collector_checkpoint_lag_seconds', 'Age of the oldest line not yet checkpointed, over containers'),
    bufferedBytes: gauge(registry, 'logmeter_collector_buffered_bytes', 'Bytes of events waiting for Kafka'),
    heldBytes: gauge(registry, 'logmeter_collector_held_bytes', 'Bytes charged to the buffer bound for what followers waiting for room hold of their Docker streams (at most half the bound)'),
    stalls: counter(registry, 'logmeter_collector_stalls_total', 'Stalls the watchdog found: events buffered and nothing acknowledged by Kafka for collector.stallSeconds; each rebuilt the producer'),
    inFlightAge: gauge(registry, 'logmeter_collector_kafka_inflight_age_seconds', 'How long the produce request in flight has waited for Kafka (0 when none)'),
    inFlightAgeMax: gauge(registry, 'logmeter_collector_kafka_inflight_age_max_seconds', 'Longest any produce request waited for Kafka since the collector started'),
    kafkaErrors: counter(registry, 'logmeter_collector_kafka_errors_total', 'Failed Kafka sends (retried)'),
    eventsRejected: counter(registry, 'logmeter_collector_events_rejected_total', 'Events Kafka refused for good (e.g. over max.message.bytes): logged, dead-lettered when possible, not retried; by topic and error code', ['topic', 'code']),
    dockerErrors: counter(registry, 'logmeter_collector_docker_errors_total', 'Docker API errors', ['call']),
    statsSamples: counter(registry, 'logmeter_collector_stats_samples_total', 'Stats samples taken'),
  };
}

export type CollectorMetrics = ReturnType<typeof collectorMetrics>;
