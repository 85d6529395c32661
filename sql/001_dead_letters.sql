-- Dead letters: messages no processor could use, with their raw bytes, where they
-- came from and why. Keyed by event_id (source topic/partition/offset), so a dead
-- letter written twice is one row after merge (and in FINAL queries).
CREATE TABLE IF NOT EXISTS ${database}.dead_letters
(
    event_id          String,
    node              LowCardinality(String),
    ts                DateTime64(3, 'UTC'),
    source_topic      LowCardinality(String),
    source_partition  UInt32,
    source_offset     UInt64,
    source_timestamp  DateTime64(3, 'UTC'),
    consumer_group    LowCardinality(String),
    key               Nullable(String),
    payload           Nullable(String),
    error_code        LowCardinality(String),
    reason            String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (source_topic, source_partition, source_offset, event_id);
