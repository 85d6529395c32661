-- Billing report line items. A report is identified by tenant and period; running it
-- again replaces its rows (same keys, newer version).
CREATE TABLE IF NOT EXISTS ${database}.billing_line_items
(
    report_id     String,
    tenant        LowCardinality(String),
    period_kind   LowCardinality(String),
    period_start  DateTime64(3, 'UTC'),
    period_end    DateTime64(3, 'UTC'),
    meter         LowCardinality(String),
    unit          LowCardinality(String),
    quantity      Float64,
    free_quantity Float64,
    billable      Float64,
    unit_price    Float64,
    amount        Float64,
    currency      LowCardinality(String),
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, report_id, meter);
