-- Autoscale signals, one row per app and second while the app is active (what the
-- autoscale processor published). event_id derives from tenant, app and version, so a
-- signal written twice (an insert retried) is one row; `version` grows per app.
-- The two windows are flattened (stable_*, panic_*) so they read as plain columns.
-- Rows are kept 30 days.
CREATE TABLE IF NOT EXISTS ${database}.autoscale_signals
(
    event_id                   String,
    tenant                     LowCardinality(String),
    app                        LowCardinality(String),
    node                       LowCardinality(String),
    host                       LowCardinality(String),
    ts                         DateTime64(3, 'UTC'),
    version                    UInt64,
    mode                       LowCardinality(String),
    current_replicas           UInt32,
    recommended_replicas       UInt32,
    reason                     String,
    stable_window_ms           UInt32,
    stable_requests            UInt64,
    stable_rate_rps            Float64,
    stable_p50_ms              Nullable(Float64),
    stable_p95_ms              Nullable(Float64),
    stable_p99_ms              Nullable(Float64),
    stable_rate_5xx            Float64,
    stable_rate_504            Float64,
    stable_queue_time_p95_ms   Nullable(Float64),
    stable_queue_length_max    Nullable(Int32),
    stable_in_flight           Float64,
    panic_window_ms            UInt32,
    panic_requests             UInt64,
    panic_rate_rps             Float64,
    panic_p50_ms               Nullable(Float64),
    panic_p95_ms               Nullable(Float64),
    panic_p99_ms               Nullable(Float64),
    panic_rate_5xx             Float64,
    panic_rate_504             Float64,
    panic_queue_time_p95_ms    Nullable(Float64),
    panic_queue_length_max     Nullable(Int32),
    panic_in_flight            Float64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant, app, ts, event_id)
TTL toDateTime(ts) + toIntervalDay(30);
