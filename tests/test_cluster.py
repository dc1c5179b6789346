"""Cluster mode: every schema migration rendered for a ClickHouse cluster, checked for its
engines and ON CLUSTER clauses, and parsed by the engine (EXPLAIN AST: the embedded engine
has no cluster to run them on)."""

from __future__ import annotations

import re

import pytest

from backend.cluster import cluster_statements
from backend.migrations import known, statements
from backend.store import Store
from otel_audit.errors import ConfigError

CLUSTER = "audit_cluster"


def _rendered() -> list[str]:
    out = []
    for migration in known():
        for statement in statements(migration.sql):
            out.extend(cluster_statements(statement, CLUSTER))
    return out


def test_every_statement_runs_on_the_whole_cluster() -> None:
    rendered = _rendered()
    assert rendered and all(f" ON CLUSTER {CLUSTER} " in f"{s} " for s in rendered)
    assert rendered[0] == f"CREATE DATABASE IF NOT EXISTS otel_audit ON CLUSTER {CLUSTER}"


def test_tables_are_replicated_and_distributed() -> None:
    creates = [s for s in _rendered() if s.startswith("CREATE TABLE")]
    locals_ = {re.match(r"CREATE TABLE IF NOT EXISTS otel_audit\.(\w+)", s).group(1): s for s in creates}  # type: ignore[union-attr]
    for table in ("logs", "checkpoints", "tree_nodes"):
        local = locals_[f"{table}_local"]
        assert (
            f"ReplicatedMergeTree('/clickhouse/tables/{{shard}}/otel_audit/{table}_local', '{{replica}}')"
            in local
        )
        assert "ENGINE = MergeTree" not in local
        distributed = locals_[table]
        assert f"AS otel_audit.{table}_local" in distributed
        assert (
            f"ENGINE = Distributed({CLUSTER}, otel_audit, {table}_local, cityHash64(Origin))" in distributed
        )
    assert "ORDER BY (Origin, Seq)" in locals_["logs_local"]  # the storage keeps its design
    assert "PARTITION BY toYYYYMM(SealedAt)" in locals_["logs_local"]


def test_alters_target_the_storage_and_added_columns_reach_the_distributed_table() -> None:
    alters = [s for s in _rendered() if s.startswith("ALTER TABLE")]
    adds = [s for s in alters if "ADD COLUMN" in s]
    assert {re.match(r"ALTER TABLE (\S+)", s).group(1) for s in adds} == {
        "otel_audit.logs_local",
        "otel_audit.logs",
    }  # type: ignore[union-attr]
    for statement in alters:
        if "MODIFY TTL" in statement or "MODIFY SETTING" in statement:
            assert re.match(r"ALTER TABLE otel_audit\.\w+_local ON CLUSTER", statement), statement


def test_the_engine_parses_every_rendered_statement(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    try:
        for statement in _rendered():
            assert store.select(f"EXPLAIN AST {statement}"), statement
    finally:
        store.close()


def test_bad_cluster_names_and_unknown_statements_are_refused() -> None:
    with pytest.raises(ConfigError):
        cluster_statements("CREATE DATABASE IF NOT EXISTS otel_audit", "a; DROP")
    with pytest.raises(ValueError):
        cluster_statements("DROP TABLE otel_audit.logs", CLUSTER)
