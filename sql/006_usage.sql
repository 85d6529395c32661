-- Usage meters per tenant/app/hour. event_id is the row's identity (tenant, app,
-- period, meter, dimensions); `version` is when it was computed: the newest wins, so
-- recomputing or replaying the usage topic replaces rows instead of adding to them.
CREATE TABLE IF NOT EXISTS ${database}.usage
(
    event_id     String,
    tenant       LowCardinality(String),
    app          LowCardinality(String),
    period       LowCardinality(String),
    ts           DateTime64(3, 'UTC'),
    meter        LowCardinality(String),
    unit         LowCardinality(String),
    quantity     Float64,
    dimensions   Map(String, String),
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, app, ts, meter, event_id);
