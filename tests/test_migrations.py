"""Schema migrations: from an empty store, from each earlier schema, idempotent, recorded;
a store with a newer schema than the code is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from backend.migrations import TABLE, applied, known, migrate, statements
from backend.store import Store
from otel_audit.errors import StoreError, StoreUnavailableError
from otel_audit.note import SignerKey
from sealer.disk import ENGINE_MIN_FREE_BYTES

from .conftest import run_cli


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    yield s
    s.close()


def _columns(store: Store) -> set[str]:
    return {row[0] for row in store.select("DESCRIBE TABLE otel_audit.logs")}


def test_from_empty_all_are_applied_and_recorded_once(store: Store) -> None:
    names = [m.name for m in migrate(store)]
    assert (
        names
        == [m.name for m in known()]
        == [
            "schema",
            "tree_nodes",
            "producer",
            "durability",
            "retention",
            "merges",
            "disk_guard",
            "timestamps",
        ]
    )
    assert applied(store) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "Producer" in _columns(store) and store.select("EXISTS TABLE otel_audit.tree_nodes")[0][0]
    assert migrate(store) == []
    assert store.select(f"SELECT count() FROM {TABLE}")[0][0] == 8


@pytest.mark.parametrize("upto", [1, 2])
def test_from_each_earlier_schema_without_a_record(store: Store, upto: int) -> None:
    """Stores made before migrations were recorded (the first release had schema 001 only)."""
    for migration in known()[:upto]:
        for statement in statements(migration.sql):
            store.command(statement)
    assert applied(store) == []
    assert [m.version for m in migrate(store)] == [1, 2, 3, 4, 5, 6, 7, 8]  # idempotent: safe to rerun
    assert "Producer" in _columns(store)


# The SHA-256 of each migration's text as applied, from when the schema files spelt every rule
# out: filling the rules in from backend/partitions.py must give the same bytes, and so must
# any later edit of a released migration (a store that applied it would not get the change).
APPLIED_SHA256 = {
    1: "0ec9cffa545dc67f9cdd9864782d62c5af127f71561accdc8a5de2a6d6c59312",
    2: "512f50babc8d001f2ee9017ba0c60181a58f625480f928890d34a7e1decfd3fb",
    3: "e2367cf874d80bd93330de36e035891fe831d77ccd03dd9f780196bad6bbc980",
    4: "9215638ba9b7f5940b4dcc034d8acefcf855b06cb0f3f14cd4fe88d1084975de",
    5: "c12f3e80827791055d23bb153ab2af9192b069cce5e083bb5e01b59577b55aaf",
    6: "a5d69a2857d53a1e65014f996fc1a30a0015f2e3dbe8ce7bb6bf1009b356ee45",
    7: "4a49fc631d011e54b147545f880e2fdbbe2f4b6a3fcfd45009126a03f3600be5",
}


def test_released_migrations_apply_the_same_text() -> None:
    applied_text = {m.version: hashlib.sha256(m.sql.encode()).hexdigest() for m in known()}
    assert {v: applied_text[v] for v in APPLIED_SHA256} == APPLIED_SHA256
    assert all("$" not in m.sql for m in known())  # every rule named in a schema file is filled in


def test_a_newer_store_is_refused(store: Store, tmp_path: Path) -> None:
    migrate(store)
    store.insert_migration(99, "from_the_future")
    with pytest.raises(StoreError, match="version 99, newer than this otel-audit"):
        migrate(store)
    store.close()
    key = SignerKey.generate("x.example/audit").verifier().serialize()
    for command in (["migrate"], ["verify", "--key", key], ["status"]):
        done = run_cli(*command, "--store", f"chdb://{tmp_path / 'store'}")
        assert done.returncode == 2 and "newer than this otel-audit" in done.stderr, (command, done.stderr)


def test_migrate_command(tmp_path: Path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    first = run_cli("migrate", "--store", dsn)
    names = (
        "001_schema, 002_tree_nodes, 003_producer, 004_durability, 005_retention, 006_merges, "
        "007_disk_guard, 008_timestamps"
    )
    assert first.returncode == 0 and f"applied {names}; schema version 8" in first.stdout
    again = run_cli("migrate", "--store", dsn, "--retention-years", "10")
    assert again.returncode == 0 and "nothing to apply; schema version 8" in again.stdout
    assert "expires 10 years after it ends" in again.stdout
    short = run_cli("migrate", "--store", dsn, "--retention-years", "3")
    assert short.returncode == 2 and "shorter than the configured minimum of 6 years" in short.stderr
    store = Store.open(dsn)
    try:
        assert "toIntervalYear(10)" in store.select("SHOW CREATE TABLE otel_audit.logs")[0][0]
    finally:
        store.close()


@pytest.mark.parametrize("table", ["logs", "checkpoints", "tree_nodes"])
def test_the_engine_refuses_inserts_below_its_free_disk_limit(store: Store, table: str) -> None:
    """007_disk_guard: each table carries the engine's limit, the one sealer/disk.py stays above;
    and the engine does refuse (error 243) once free space is below a table's limit."""
    migrate(store)
    create = store.select(f"SHOW CREATE TABLE otel_audit.{table}")[0][0]
    assert f"min_free_disk_bytes_to_perform_insert = {ENGINE_MIN_FREE_BYTES}" in create
    assert "min_rows_to_fsync_after_merge = 1" in create  # merged parts durable, as inserted ones
    # No test disk is that full, so ask for more than any disk has free, as a full one would.
    limit = f"min_free_disk_bytes_to_perform_insert = {1 << 62}"
    store.command(f"ALTER TABLE otel_audit.{table} MODIFY SETTING {limit}")
    with pytest.raises(StoreUnavailableError, match=r"Code: 243.*NOT_ENOUGH_SPACE"):
        if table == "tree_nodes":
            store.insert_nodes("o.example/audit", 0, 0, [bytes(32)])
        else:
            store.command(f"INSERT INTO otel_audit.{table} (Origin) VALUES ('o.example/audit')")
