/**
 * The routes processor's metrics: the route table's and the applier's. No host or
 * tenant label: their number is not bounded here; the route sets carry them.
 */
import { counter, gauge, histogram, type Registry } from '../../lib/metrics.js';

export function tableMetrics(registry: Registry) {
  return {
    events: counter(registry, 'logmeter_routes_events_total', 'Lifecycle and http events applied to the route table', ['topic']),
    published: counter(registry, 'logmeter_routes_sets_published_total', 'Route sets published (one per changed host)'),
    notices: counter(registry, 'logmeter_routes_containers_not_routed_total', 'Containers with an lb-host that could not be routed, by reason', ['reason']),
    forgotten: counter(registry, 'logmeter_routes_hosts_forgotten_total', 'Idle hosts dropped from the route table (a tombstone each on the routes topic)'),
    hosts: gauge(registry, 'logmeter_routes_hosts', 'App hosts in the route table'),
    upstreams: gauge(registry, 'logmeter_routes_upstreams', 'Upstreams in the published sets'),
    owned: gauge(registry, 'logmeter_routes_partitions_owned', 'Routes topic partitions whose hosts this instance publishes'),
    foreign: counter(registry, 'logmeter_routes_foreign_sets_total', 'Sets another instance published on a partition this one owned (a member expelled that did not notice yet)'),
  };
}

export type TableMetrics = ReturnType<typeof tableMetrics>;

export function applierMetrics(registry: Registry) {
  return {
    applied: counter(registry, 'logmeter_routes_applied_total', 'Route set versions applied to HAProxy'),
    lag: histogram(registry, 'logmeter_routes_apply_lag_seconds', 'From a route set being published to HAProxy serving it', [], [0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5]),
    commands: counter(registry, 'logmeter_routes_haproxy_changes_total', 'Changes made through the HAProxy runtime API', ['change']),
    errors: counter(registry, 'logmeter_routes_haproxy_errors_total', 'Failed reconcile passes, by error code', ['code']),
    restarts: counter(registry, 'logmeter_routes_haproxy_restarts_total', 'HAProxy restarts noticed (followed by a whole reconcile)'),
    noSlot: counter(registry, 'logmeter_routes_no_backend_slot_total', 'Hosts that could not be routed: every backend slot in use'),
    hints: counter(registry, 'logmeter_routes_start_hints_total', 'Container starts seen in Docker\'s events before their route set: brought into HAProxy (applied), confirmed by the set, taken out unconfirmed (expired), or left to the set (skipped)', ['outcome']),
    hintLag: histogram(registry, 'logmeter_routes_start_hint_seconds', "From a container's start in Docker's events to its start hint in HAProxy, by stage: the event seen by the routes lane (event), its inspect returned (inspected), the server in HAProxy (applied)", ['stage'], [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1]),
    freeSlots: gauge(registry, 'logmeter_routes_backend_slots_free', 'Backend slots not assigned to a host'),
  };
}

export type ApplierMetrics = ReturnType<typeof applierMetrics>;
