-- The panel's apps view (api/apps.ts): an app's autoscale targets next to its signals,
-- and every host's current route set.
--
-- The targets the policy used for a signal (the app's policy: defaults < labels < the
-- config's apps entry), so p95 reads against its target; null where the policy has none.
ALTER TABLE ${database}.autoscale_signals ADD COLUMN IF NOT EXISTS target_p95_ms Nullable(Float64);
ALTER TABLE ${database}.autoscale_signals ADD COLUMN IF NOT EXISTS target_in_flight Nullable(Float64);

-- The routes topic (compacted, key = host) as a table: one row per host, the newest
-- written wins (`revision`, growing per write). A host forgotten on the topic (a
-- tombstone) is a row with `deleted = 1`; a host routed again later is a newer row.
CREATE TABLE IF NOT EXISTS ${database}.route_sets
(
    host        String,
    tenant      LowCardinality(String),
    app         LowCardinality(String),
    version     UInt64,
    ts          DateTime64(3, 'UTC'),
    upstreams   Array(Tuple(container_id String, address String, port UInt16)),
    reason      String,
    deleted     UInt8,
    revision    UInt64
)
ENGINE = ReplacingMergeTree(revision)
ORDER BY host;
