-- Container log lines (the tenant's access and debug logs). One row per event_id:
-- a line delivered twice is merged away (ReplacingMergeTree) and never shown twice
-- (queries read with FINAL). `line` keeps the bytes as printed: it is inserted as
-- base64 through the ephemeral `line_b64` column, since JSON cannot carry invalid UTF-8.
CREATE TABLE IF NOT EXISTS ${database}.logs
(
    event_id        String,
    tenant          LowCardinality(String),
    app             LowCardinality(String),
    node            LowCardinality(String),
    container_id    String,
    container_name  LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    ts_nanos        UInt32,
    seq             UInt32,
    stream          LowCardinality(String),
    tty             Bool,
    line_b64        String EPHEMERAL,
    line            String DEFAULT base64Decode(line_b64),
    original_length UInt64,
    truncated       Bool,
    invalid_utf8    Bool,
    log_format      LowCardinality(String),
    kind            LowCardinality(String),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY (tenant, app, ts, event_id);
