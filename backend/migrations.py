"""Versioned schema migrations: backend/sql/NNN_name.sql, applied in order, each recorded.

`serve` applies them at start and `otel-audit migrate` on demand. Every statement is written
to be idempotent (IF NOT EXISTS), so a store made before migrations were recorded (the first
release) is brought up to date the same way as an empty one. A store whose schema is newer
than this code is refused: an older sealer must not write rows that lack newer columns'
meaning, and an older verifier would not know what the newer columns say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Protocol

from otel_audit.errors import ConfigError, StoreError

from .cluster import cluster_statements
from .partitions import DEFAULT_RETENTION_YEARS, PARTITION_KEY, retention_ttl

TABLE = "otel_audit.schema_migrations"
_FILE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")


class SchemaStore(Protocol):
    """What migrations need of a store: backend/store.py's `Store`, which applies them
    (`ensure_schema`) and so imports this module; a protocol keeps that arrow one way."""

    cluster: str | None

    def select(self, sql: str, parameters: dict | None = None) -> list[tuple]: ...

    def command(self, sql: str) -> object: ...

    def insert_migration(self, version: int, name: str) -> None: ...


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def known() -> list[Migration]:
    """The migrations this code ships, in version order."""
    out = []
    for file in resources.files("backend").joinpath("sql").iterdir():
        match = _FILE.fullmatch(file.name)
        if match:
            out.append(Migration(int(match.group(1)), match.group(2), _render(file.read_text())))
    out.sort(key=lambda m: m.version)
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise AssertionError(
            f"schema files must be numbered 001, 002, ... without gaps: {[m.version for m in out]}"
        )
    return out


def _render(sql: str) -> str:
    """A schema file with the rules it names filled in from their home (backend/partitions.py).

    The text applied is the same as when the files spelt the rules out (tests/test_migrations.py
    pins each migration's SHA-256), so a store's recorded migrations keep their meaning.
    """
    return Template(sql).substitute(
        partition_key=PARTITION_KEY, retention_ttl=retention_ttl(DEFAULT_RETENTION_YEARS)
    )


def applied(store: SchemaStore) -> list[int]:
    if not store.select("EXISTS DATABASE otel_audit")[0][0]:
        return []
    if not store.select(f"EXISTS TABLE {TABLE}")[0][0]:
        return []
    return [
        int(version) for (version,) in store.select(f"SELECT DISTINCT Version FROM {TABLE} ORDER BY Version")
    ]


def migrate(store: SchemaStore) -> list[Migration]:
    """Apply what the store lacks; return what was applied. StoreError if the store is newer.

    On a cluster (store.cluster) every statement is run in its cluster form (backend/cluster.py).
    """
    migrations = known()
    done = set(applied(store))
    refuse_newer(done)
    if done >= {m.version for m in migrations}:
        return []  # up to date: no DDL at all, so a sealer with INSERT/SELECT grants only can start
    _run(store, "CREATE DATABASE IF NOT EXISTS otel_audit")
    _run(
        store,
        f"CREATE TABLE IF NOT EXISTS {TABLE} (Version UInt32, Name String, AppliedAt DateTime64(3) "
        "DEFAULT now64(3)) ENGINE = MergeTree ORDER BY Version",
    )
    applied_now = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in statements(migration.sql):
            _run(store, statement)
        store.insert_migration(migration.version, migration.name)
        applied_now.append(migration)
    return applied_now


def set_retention(store: SchemaStore, years: int, minimum_years: int) -> None:
    """Expire whole months of the log `years` after they end (never below `minimum_years`)."""
    if years < minimum_years:
        raise ConfigError(
            f"a retention of {years} years is shorter than the configured minimum of {minimum_years} years"
        )
    _run(store, f"ALTER TABLE otel_audit.logs MODIFY TTL {retention_ttl(years)}")


def _run(store: SchemaStore, statement: str) -> None:
    for sql in cluster_statements(statement, store.cluster) if store.cluster else [statement]:
        store.command(sql)


def refuse_newer(versions: set[int] | list[int]) -> None:
    newest = known()[-1].version
    if versions and max(versions) > newest:
        raise StoreError(
            f"the store's schema is at version {max(versions)}, newer than this otel-audit knows ({newest}): "
            "upgrade otel-audit before serving or verifying this store"
        )


def check_readable(store: SchemaStore) -> None:
    """For commands that only read: the schema must not be newer than this code."""
    refuse_newer(applied(store))


def statements(sql: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]
