-- Network traffic per stats sample and Docker network, as counter deltas. The row key
-- is the sample's event_id and the network: recomputing a sample replaces its row.
-- rx/tx_total are the counters as read, kept so a restarted processor finds the
-- previous sample of a container here.
CREATE TABLE IF NOT EXISTS ${database}.traffic
(
    event_id       String,
    tenant         LowCardinality(String),
    app            LowCardinality(String),
    node           LowCardinality(String),
    container_id   String,
    ts             DateTime64(3, 'UTC'),
    network        LowCardinality(String),
    traffic_class  LowCardinality(String),
    size           LowCardinality(String),
    rx_total       UInt64,
    tx_total       UInt64,
    rx_bytes       UInt64,
    tx_bytes       UInt64,
    blkio_total    UInt64,
    blkio_bytes    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, app, container_id, network, ts, event_id);
