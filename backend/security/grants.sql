-- Least privilege for otel-audit on a ClickHouse server. Apply once, as an administrator,
-- after `otel-audit migrate` (run with administrator credentials) has created the tables:
--   clickhouse-client --multiquery < backend/security/grants.sql
-- then create users for the roles (CREATE USER ... IDENTIFIED ...; GRANT <role> TO <user>).
--
-- No role of ours can ALTER, DELETE, TRUNCATE or DROP the log: the sealer only appends and
-- reads back, auditors only read. Lightweight DELETE and UPDATE need ALTER privileges, which
-- neither role has; the settings profile also pins them off, so no session can turn them on.
-- Schema migrations (CREATE TABLE, ALTER ... ADD COLUMN) are run by an administrator, never by
-- the sealer: `serve` applies none when the store is up to date.

CREATE ROLE IF NOT EXISTS otel_audit_sealer;
GRANT SELECT, INSERT ON otel_audit.logs TO otel_audit_sealer;
GRANT SELECT, INSERT ON otel_audit.checkpoints TO otel_audit_sealer;
GRANT SELECT, INSERT ON otel_audit.tree_nodes TO otel_audit_sealer;
GRANT SELECT ON otel_audit.schema_migrations TO otel_audit_sealer;

CREATE ROLE IF NOT EXISTS otel_audit_auditor;
GRANT SELECT ON otel_audit.* TO otel_audit_auditor;

CREATE SETTINGS PROFILE IF NOT EXISTS otel_audit_append_only
    SETTINGS enable_lightweight_delete = 0 CONST, enable_lightweight_update = 0 CONST,
             insert_deduplicate = 1 CONST
    TO otel_audit_sealer, otel_audit_auditor;
