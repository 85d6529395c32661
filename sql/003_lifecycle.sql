-- Container lifecycle events and operations (the tenant's start and operation logs).
CREATE TABLE IF NOT EXISTS ${database}.lifecycle
(
    event_id        String,
    tenant          LowCardinality(String),
    app             LowCardinality(String),
    node            LowCardinality(String),
    container_id    String,
    container_name  LowCardinality(String),
    ts              DateTime64(3, 'UTC'),
    action          LowCardinality(String),
    actor           LowCardinality(String),
    kind            LowCardinality(String),
    exit_code       Nullable(Int32),
    health          Nullable(String),
    image           String,
    size            LowCardinality(String),
    labels          Map(String, String),
    networks        Array(String),
    ports           Array(Tuple(container_port UInt16, protocol String, host_ip String, host_port UInt16)),
    nano_cpus       Int64,
    memory_bytes    Int64,
    message         Nullable(String),
    attributes      Map(String, String),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant, app, container_id, ts, event_id);
