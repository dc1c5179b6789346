-- otel-audit schema, version 8: RFC 3161 time-stamp tokens over signed checkpoints.
--
-- One row per token: the TSA (its URL as `serve --tsa` names it) stamped the exact note of the
-- checkpoint (Origin, TreeSize) in otel_audit.checkpoints. Token is the whole DER
-- TimeStampResp (what `openssl ts -verify -in` reads); GenTime is the token's own time, kept
-- only so that `status` can show the newest token's age without decoding: `verify` reads the
-- time from the token and trusts nothing else here. A table of its own, not a column of
-- checkpoints, because a checkpoint is stored before any TSA answers, and a TSA that is down
-- answers later (or never) for it.
CREATE TABLE IF NOT EXISTS otel_audit.timestamps
(
    Origin LowCardinality(String),
    TreeSize UInt64,
    Tsa String,
    GenTime DateTime64(6),
    Token String
)
ENGINE = MergeTree
ORDER BY (Origin, TreeSize, Tsa)
SETTINGS non_replicated_deduplication_window = 1000, min_free_disk_bytes_to_perform_insert = 67108864, min_rows_to_fsync_after_merge = 1;
