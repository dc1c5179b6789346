"""ClickHouse storage for otel-audit, above `otel_audit` and below `sealer`. The map:

- the store: `store` (clickhouse-connect for chDB and servers), `error_codes` (driver errors
  into ours, by the engine's code), `native` (Native blocks for the INSERT), `limits` (what a
  column can hold);
- the schema: `migrations` (sql/NNN_*.sql, applied in order), `partitions` (partitions and
  retention), `cluster` (the migrations for a cluster);
- the tree: `tree_nodes` (stored Merkle nodes), `tree_reader` (proofs read from them);
- reading: `log_verifier` (the verify driver), `evidence` (search, proofs, export bundles),
  `read_commands` (the read-only commands, one function each), `witness_report` (`verify
  --policy`: which witnesses cosigned which size), `log_status`,
  `producer_report`, `record_table` (the search table), `user_sql` (`otel-audit query`).
"""
