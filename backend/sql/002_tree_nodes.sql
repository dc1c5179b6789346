-- otel-audit schema, version 2: stored Merkle tree nodes, so that a proof reads O(log n)
-- hashes instead of rehashing the log (backend/tiles.py).
--
-- One row per perfect subtree of height 4, 8, 12, ... as it completes (every 16 leaves,
-- every 256, ...): C2SP tlog-tiles, 16 hashes wide. The tile at level L, index N is the rows
-- Height = 4L, NodeIndex in [16N, 16N + 16); level 0 is otel_audit.logs.LeafHash.
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
