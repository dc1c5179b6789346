"""Schema migrations: from an empty store, from each earlier schema, idempotent, recorded;
a store with a newer schema than the code is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.migrations import TABLE, applied, known, migrate, statements
from backend.store import Store
from otel_audit.errors import StoreError, StoreUnavailableError
from otel_audit.note import SignerKey

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
        == ["schema", "tree_nodes", "producer", "durability", "retention", "merges", "disk_guard"]
    )
    assert applied(store) == [1, 2, 3, 4, 5, 6, 7]
    assert "Producer" in _columns(store) and store.select("EXISTS TABLE otel_audit.tree_nodes")[0][0]
    assert migrate(store) == []
    assert store.select(f"SELECT count() FROM {TABLE}")[0][0] == 7


@pytest.mark.parametrize("upto", [1, 2])
def test_from_each_earlier_schema_without_a_record(store: Store, upto: int) -> None:
    """Stores made before migrations were recorded (the first release had schema 001 only)."""
    for migration in known()[:upto]:
        for statement in statements(migration.sql):
            store.command(statement)
    assert applied(store) == []
    assert [m.version for m in migrate(store)] == [1, 2, 3, 4, 5, 6, 7]  # idempotent: safe to rerun
    assert "Producer" in _columns(store)


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
        "001_schema, 002_tree_nodes, 003_producer, 004_durability, 005_retention, 006_merges, 007_disk_guard"
    )
    assert first.returncode == 0 and f"applied {names}; schema version 7" in first.stdout
    again = run_cli("migrate", "--store", dsn, "--retention-years", "10")
    assert again.returncode == 0 and "nothing to apply; schema version 7" in again.stdout
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
    from sealer.disk import ENGINE_MIN_FREE_BYTES

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
