-- otel-audit schema, version 2: stored Merkle tree nodes, so that a proof reads O(log n)
-- hashes instead of rehashing the log (backend/tiles.py).
--
-- One row per perfect subtree of height 8, 16, 24, ... as it completes (every 256 leaves,
-- every 65536, ...). The C2SP tlog-tiles tile at level L, index N is the rows
-- Height = 8L, NodeIndex in [256N, 256N + 256); level 0 is otel_audit.logs.LeafHash.
-- The rows are derived from LeafHash and never trusted: every proof built from them is
-- checked against the signed root before it is handed out.
CREATE TABLE IF NOT EXISTS otel_audit.tree_nodes
(
    Origin LowCardinality(String),
    Height UInt8,
    NodeIndex UInt64,
    Hash FixedString(32)
)
ENGINE = MergeTree
ORDER BY (Origin, Height, NodeIndex)
SETTINGS non_replicated_deduplication_window = 1000;
