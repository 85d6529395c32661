-- Operator queries (`logmeter sql`, `POST /api/v1/admin/sql`): who ran what, when, and
-- what came of it (rows returned, or why it was refused or failed). Written by
-- lib/clickhouse/operator-sql.ts; kept a year, as evidence next to the invoices.
CREATE TABLE IF NOT EXISTS ${database}.audit
(
    ts         DateTime64(3, 'UTC'),
    who        String,
    via        LowCardinality(String),
    statement  String,
    outcome    LowCardinality(String),
    rows       UInt64,
    reason     String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY ts
TTL toDateTime(ts) + INTERVAL 365 DAY;
