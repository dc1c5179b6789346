-- otel-audit schema, version 4: inserts are durable before they are acknowledged.
--
-- fsync_after_insert: each INSERT's new part is fsynced before the INSERT returns, so an
-- acknowledged Export survives a power loss, not only a process crash. fsync_part_directory:
-- the part's directory entry too. (On a server, also keep the default fsync of metadata.)
ALTER TABLE otel_audit.logs MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE otel_audit.checkpoints MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
ALTER TABLE otel_audit.tree_nodes MODIFY SETTING fsync_after_insert = 1, fsync_part_directory = 1;
