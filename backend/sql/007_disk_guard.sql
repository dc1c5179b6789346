-- otel-audit schema, version 7: the engine refuses inserts on a nearly full disk, and makes
-- merged parts durable.
--
-- When the file system fills, MergeTree may commit a part whose files are empty, and move it
-- to detached/broken-on-start_* at the next start: acknowledged rows gone. With
-- min_free_disk_bytes_to_perform_insert the engine refuses an INSERT (error 243,
-- NOT_ENOUGH_SPACE, retryable for the sealer) while less than this is free. 64 MiB: above
-- what one INSERT of the sealer writes (at most max_batch_records, a few MiB compressed) and
-- the checkpoints beside it, and small enough for a small test file system. The sealer's own
-- check (sealer/disk.py, `serve --min-free-disk`, default 256 MiB) must stay above this one
-- (ENGINE_MIN_FREE_BYTES there), so that it refuses records first and the engine's guard is
-- the second line. No ratio (min_free_disk_ratio_to_perform_insert): on a large disk a ratio
-- holds back far more than a write needs; raise --min-free-disk there instead.
--
-- min_rows_to_fsync_after_merge = 1: every merged part is fsynced before it replaces the parts
-- it merged (inserts already are: 004_durability). Without it, a power loss after a merge can
-- lose acknowledged rows, and on a file system that allocates at write-back (ext4, XFS) a
-- full disk shows only at fsync: with it, such a merge fails instead of leaving a broken part.
-- Merges are few (006_merges), so the cost is small.
ALTER TABLE otel_audit.logs MODIFY SETTING min_free_disk_bytes_to_perform_insert = 67108864, min_rows_to_fsync_after_merge = 1;
ALTER TABLE otel_audit.checkpoints MODIFY SETTING min_free_disk_bytes_to_perform_insert = 67108864, min_rows_to_fsync_after_merge = 1;
ALTER TABLE otel_audit.tree_nodes MODIFY SETTING min_free_disk_bytes_to_perform_insert = 67108864, min_rows_to_fsync_after_merge = 1;
