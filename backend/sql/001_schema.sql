-- otel-audit schema, version 1.
--
-- otel_audit.logs keeps the columns of the OpenTelemetry Collector ClickHouse exporter's
-- otel_logs table (Grafana, ClickStack and existing queries work unchanged) and adds the
-- seal: Origin, Seq, SealedAt, Entry (the exact leaf bytes), LeafHash and ChainHash.
--
-- Plain MergeTree: nothing merges, replaces or deduplicates rows away. Two access paths:
-- * verification streams one origin in Seq order: ORDER BY (Origin, Seq) makes that a
--   sequential read of the primary key, with no sort;
-- * search by time, service, user and action: Seq grows with SealedAt, so the minmax index on
--   Timestamp skips granules outside a time range, and bloom filters on ServiceName and the
--   attribute maps (user.id, audit.action, ... are LogAttributes) skip the rest.
-- PARTITION BY month of SealedAt: every partition is a contiguous Seq range of each origin,
-- so retention can later drop whole old partitions without touching the middle of the log.
-- non_replicated_deduplication_window lets a retried INSERT carrying the same
-- insert_deduplication_token be dropped instead of duplicating rows.
CREATE DATABASE IF NOT EXISTS otel_audit;

CREATE TABLE IF NOT EXISTS otel_audit.logs
(
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    ObservedTimestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    Origin LowCardinality(String),
    Seq UInt64,
    SealedAt DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    Entry String CODEC(ZSTD(1)),
    LeafHash FixedString(32),
    ChainHash FixedString(32),
    INDEX idx_timestamp Timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_service ServiceName TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
)
ENGINE = MergeTree
PARTITION BY ${partition_key}
ORDER BY (Origin, Seq)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

-- One row per signed checkpoint. CompactRange holds the O(log n) subtree roots at TreeSize
-- so that a restarting sealer continues the tree without rehashing the log.
CREATE TABLE IF NOT EXISTS otel_audit.checkpoints
(
    Origin LowCardinality(String),
    TreeSize UInt64,
    RootHash FixedString(32),
    ChainHead FixedString(32),
    SealedAt DateTime64(9),
    CreatedAt DateTime64(9),
    KeyId String,
    Note String,
    CompactRange String
)
ENGINE = MergeTree
ORDER BY (Origin, TreeSize)
SETTINGS non_replicated_deduplication_window = 1000;
