"""backend/security/grants.sql: parsed by the embedded engine (EXPLAIN AST; the embedded
engine has no access control, so only a server enforces the roles) and checked to grant
nothing but SELECT and INSERT; and the durability settings the schema applies."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from backend.migrations import migrate, statements
from backend.store import Store
from backend.user_sql import QueryLimits

GRANTS = Path(__file__).resolve().parent.parent / "backend" / "security" / "grants.sql"
FORBIDDEN = ("ALTER", "DELETE", "TRUNCATE", "DROP", "OPTIMIZE", "UPDATE", "ALL", "CREATE", "KILL", "SYSTEM")


@pytest.fixture(scope="module")
def store(tmp_path_factory):  # type: ignore[no-untyped-def]
    s = Store.open(f"chdb://{tmp_path_factory.mktemp('grants') / 'store'}")
    migrate(s)
    yield s
    s.close()


def test_every_statement_parses(store: Store) -> None:
    sql = statements(GRANTS.read_text())
    assert len(sql) == 12
    for statement in sql:
        assert store.select(f"EXPLAIN AST {statement}"), statement
    with pytest.raises(Exception, match="Syntax error"):
        store.select("EXPLAIN AST GRANT SELEKT ON otel_audit.logs TO otel_audit_sealer")


def test_roles_can_only_read_and_append() -> None:
    grants: dict[str, set[str]] = {}
    for statement in statements(GRANTS.read_text()):
        match = re.fullmatch(r"GRANT (.+) ON (\S+) TO (\S+)", " ".join(statement.split()))
        if match:
            privileges = {p.strip() for p in match.group(1).split(",")}
            assert not privileges & set(FORBIDDEN), statement
            grants.setdefault(match.group(3), set()).update(f"{p} {match.group(2)}" for p in privileges)
    assert grants["otel_audit_auditor"] == {
        "SELECT otel_audit.*", "SELECT system.tables", "SELECT system.columns", "SELECT system.parts"
    }  # fmt: skip
    assert {g.split()[0] for g in grants["otel_audit_sealer"]} == {"SELECT", "INSERT"}
    assert "INSERT otel_audit.logs" in grants["otel_audit_sealer"]
    assert not any(g.startswith("INSERT otel_audit.schema_migrations") for g in grants["otel_audit_sealer"])
    text = " ".join(GRANTS.read_text().split())
    assert "enable_lightweight_delete = 0 CONST" in text and "enable_lightweight_update = 0 CONST" in text


def test_tables_fsync_inserts(store: Store) -> None:
    for table in ("logs", "checkpoints", "tree_nodes"):
        create = store.select(f"SHOW CREATE TABLE otel_audit.{table}")[0][0]
        assert "fsync_after_insert = 1" in create and "fsync_part_directory = 1" in create, table


def test_the_log_merges_fewer_larger_batches_of_parts(store: Store) -> None:
    create = store.select("SHOW CREATE TABLE otel_audit.logs")[0][0]
    assert "merge_selector_base = 20" in create


def test_an_up_to_date_store_needs_no_ddl_to_serve(store: Store) -> None:
    """The sealer role has no CREATE or ALTER: with nothing to apply, migrate runs no DDL."""
    reader = Store.open(store.dsn, read_only=True)  # a session that could not run DDL if asked to
    try:
        assert migrate(reader) == []
    finally:
        reader.close()


def test_the_auditor_profile_caps_what_query_allows() -> None:
    """The server-side ceilings are the limits `otel-audit query` sets on its own sessions."""
    profile = " ".join(GRANTS.read_text().split()).split("otel_audit_auditor_limits SETTINGS ")[1]
    caps = {
        m[0]: (int(m[1]), int(m[2]), int(m[3]))
        for m in re.findall(r"(\w+) = (\d+) MIN (\d+) MAX (\d+)", profile)
    }
    limits = QueryLimits()
    expected = {f.metadata["setting"]: getattr(limits, f.name) for f in fields(limits)}
    assert caps == {name: (value, 1, value) for name, value in expected.items()}
    assert "allow_introspection_functions = 0 MAX 0" in profile and profile.endswith("TO otel_audit_auditor;")
