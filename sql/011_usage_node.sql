-- Usage per node: a row is the usage of a tenant's app on one node in one hour (the node
-- its containers ran on, as the collector there named it). Rows written before this
-- column are `node = ''`; the usage processor sets the ones in its look-back window to 0
-- once (see processors/usage/processor.ts), as their per-node rows replace them.
ALTER TABLE ${database}.usage ADD COLUMN IF NOT EXISTS node LowCardinality(String) DEFAULT '' AFTER app;
