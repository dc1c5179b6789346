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

-- Auditors read the log and the system tables that describe it (these grants matter where the
-- server sets select_from_system_db_requires_grant). Nothing else: no FILE, URL, S3, REMOTE or
-- other source grants and no CREATE TEMPORARY TABLE, so no table function; no KILL QUERY.
CREATE ROLE IF NOT EXISTS otel_audit_auditor;
GRANT SELECT ON otel_audit.* TO otel_audit_auditor;
GRANT SELECT ON system.tables TO otel_audit_auditor;
GRANT SELECT ON system.columns TO otel_audit_auditor;
GRANT SELECT ON system.parts TO otel_audit_auditor;

CREATE SETTINGS PROFILE IF NOT EXISTS otel_audit_append_only
    SETTINGS enable_lightweight_delete = 0 CONST, enable_lightweight_update = 0 CONST,
             insert_deduplicate = 1 CONST
    TO otel_audit_sealer, otel_audit_auditor;

-- The limits of `otel-audit query` (backend/user_sql.py QueryLimits, the same numbers) as
-- ceilings for every session of an auditor (clickhouse-client, Grafana): a session may lower
-- them, never raise or lift them (MIN 1: 0 would mean no limit).
CREATE SETTINGS PROFILE IF NOT EXISTS otel_audit_auditor_limits
    SETTINGS max_execution_time = 60 MIN 1 MAX 60,
             max_memory_usage = 1073741824 MIN 1 MAX 1073741824,
             max_result_rows = 1000000 MIN 1 MAX 1000000,
             max_result_bytes = 268435456 MIN 1 MAX 268435456,
             allow_introspection_functions = 0 MAX 0
    TO otel_audit_auditor;
