-- HTTP requests parsed from access logs.
CREATE TABLE IF NOT EXISTS ${database}.http_requests
(
    event_id          String,
    tenant            LowCardinality(String),
    app               LowCardinality(String),
    node              LowCardinality(String),
    container_id      String,
    ts                DateTime64(3, 'UTC'),
    source_event_id   String,
    format            LowCardinality(String),
    host              LowCardinality(String),
    method            LowCardinality(String),
    path              String,
    status            UInt16,
    bytes             UInt64,
    request_time_ms   Float64,
    upstream_time_ms  Nullable(Float64),
    queue_time_ms     Nullable(Float64),
    backend_queue     Nullable(Int32),
    server_queue      Nullable(Int32),
    backend           Nullable(String),
    server            Nullable(String),
    client_ip         Nullable(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant, app, ts, event_id);
