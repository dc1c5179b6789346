"""Cluster mode: the schema migrations rewritten for a ClickHouse cluster.

Each table becomes a ReplicatedMergeTree table ``<name>_local`` created ON CLUSTER on every
node, and a Distributed table under the original name over them, so every query of ours
(and Grafana's) reads `otel_audit.logs` unchanged, across all shards. Rows are sharded by
cityHash64(Origin): a log (one origin, one chain, written by one sealer replica) lives whole
on one shard and is copied to that shard's replicas. Several sealer replicas, each with its
own key and origin, spread over the shards; `verify`, `search` and `export` read them all
through the Distributed tables. Inserts through a Distributed table are made synchronous
(distributed_foreground_insert) so that an Export is acknowledged only once its rows are on
the shard.

The rewrite is a pure function of our own migration SQL (backend/sql), whose statements have
three shapes: CREATE DATABASE, CREATE TABLE ... ENGINE = MergeTree, and ALTER TABLE.
"""

from __future__ import annotations

import re

from otel_audit.errors import ConfigError

INSERT_SETTINGS = {"distributed_foreground_insert": 1}
_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS otel_audit\.(\w+)\s*(\(.*\))\s*ENGINE\s*=\s*MergeTree\b(.*)", re.S
)
_ALTER = re.compile(r"ALTER TABLE otel_audit\.(\w+)\s+(.*)", re.S)


def check_name(cluster: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cluster):
        raise ConfigError(f"cluster name {cluster!r}: use letters, digits and underscores")
    return cluster


def cluster_statements(statement: str, cluster: str) -> list[str]:
    """The statements that do on a cluster what `statement` does on one server."""
    on = f"ON CLUSTER {check_name(cluster)}"
    text = statement.strip()
    if text.startswith("CREATE DATABASE IF NOT EXISTS otel_audit"):
        return [f"CREATE DATABASE IF NOT EXISTS otel_audit {on}"]
    create = _CREATE_TABLE.fullmatch(text)
    if create:
        table, columns, rest = create.groups()
        path = f"'/clickhouse/tables/{{shard}}/otel_audit/{table}_local', '{{replica}}'"
        shard_by = "cityHash64(Origin)" if re.search(r"\bOrigin\b", columns) else "0"
        return [
            f"CREATE TABLE IF NOT EXISTS otel_audit.{table}_local {on} {columns} "
            f"ENGINE = ReplicatedMergeTree({path}){rest}",
            f"CREATE TABLE IF NOT EXISTS otel_audit.{table} {on} AS otel_audit.{table}_local "
            f"ENGINE = Distributed({cluster}, otel_audit, {table}_local, {shard_by})",
        ]
    alter = _ALTER.fullmatch(text)
    if alter:
        table, change = alter.groups()
        local = f"ALTER TABLE otel_audit.{table}_local {on} {change}"
        if change.lstrip().upper().startswith("ADD COLUMN"):  # the Distributed table needs it too
            return [local, f"ALTER TABLE otel_audit.{table} {on} {change}"]
        return [local]  # TTL and storage settings belong to the storage, not the Distributed table
    raise ValueError(f"no cluster form for statement: {text[:60]}...")
