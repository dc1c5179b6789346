"""The ClickHouse store, through clickhouse-connect, for embedded chDB and servers alike.

`chdb:///abs/path` opens ClickHouse's engine in this process (one process owns a data
directory at a time); `http(s)://user:pass@host:8123/` talks to a server. Both are the same
clickhouse-connect `Client`, so every query below runs unchanged on either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from otel_audit.chain import CHAIN_START, chain_next_sql
from otel_audit.columns import COLUMN, COLUMN_HASH_SQL, DERIVED_COLUMNS, ROW_COLUMNS
from otel_audit.errors import ConfigError, StoreDamagedError, StoreDataError, StoreError
from otel_audit.merkle import hash_leaf_sql

from .cluster import INSERT_SETTINGS, check_name
from .error_codes import error_class, store_error
from .migrations import migrate

LOGS = "otel_audit.logs"
CHECKPOINTS = "otel_audit.checkpoints"
TREE_NODES = "otel_audit.tree_nodes"
TIMESTAMPS = "otel_audit.timestamps"


def redact(dsn: str) -> str:
    """The DSN with any password replaced, safe for logs and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def select_list(columns: Sequence[str] = DERIVED_COLUMNS) -> str:
    """Columns of otel_audit.logs as Python holds them (otel_audit/columns.py): DateTime64(9)
    as integer nanoseconds, DateTime as integer seconds."""
    out = []
    for name in columns:
        kind = COLUMN[name].type
        if kind == "DateTime64(9)":
            out.append(f"toUnixTimestamp64Nano({name}) AS {name}_ns")
        elif kind == "DateTime":
            out.append(f"toUnixTimestamp({name}) AS {name}_s")
        else:
            out.append(name)
    return ", ".join(out)


@dataclass(frozen=True)
class StoredCheckpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    chain_head: bytes
    note: str
    compact_range: bytes


# StoredCheckpoint's fields, each the column of otel_audit.checkpoints it is stored in
# (tree_size: TreeSize): the insert and the select both name them from here.
CHECKPOINT_COLUMNS = {
    f.name: "".join(word.capitalize() for word in f.name.split("_")) for f in fields(StoredCheckpoint)
}


@dataclass(frozen=True)
class StoredTimestamp:
    """An RFC 3161 token (the DER TimeStampResp) a TSA gave over the note of the checkpoint
    (origin, tree_size); gen_time_ns is a copy of the token's time for `status` only."""

    origin: str
    tree_size: int
    tsa: str
    gen_time_ns: int
    token: bytes


@dataclass(frozen=True)
class Tail:
    """The last sealed row of an origin, as the store has it."""

    next_seq: int
    chain_head: bytes
    sealed_at_ns: int


class Store:
    def __init__(self, client: Client, dsn: str, read_only: bool = False, cluster: str | None = None) -> None:
        self.client = client
        self.dsn = dsn
        self.read_only = read_only
        self.cluster = cluster  # backend/cluster.py: tables are Distributed over ReplicatedMergeTree

    @classmethod
    def open(cls, dsn: str, read_only: bool = False, cluster: str | None = None) -> Store:
        """A connection; `read_only` ones run with readonly = 2 for their whole session.

        They carry the read commands' own queries, which pass per-query settings (e.g.
        max_block_size): readonly = 2 refuses every write and DDL and any change of
        `readonly` itself, yet allows those. It is set once per connection, never per query:
        the embedded driver applies per-query settings with SET and restores them after, and
        a restore of readonly = 1 fails, which would leave a shared connection read-only.
        A user's SQL never runs here: backend/user_sql.py gives it a readonly = 1 session of
        its own.
        """
        scheme = urlsplit(dsn).scheme
        if scheme not in ("chdb", "http", "https"):
            raise ConfigError(f"store {redact(dsn)!r}: use chdb:///absolute/path or http(s)://host:8123/")
        try:
            client = clickhouse_connect.get_client(dsn=dsn)
        except Exception as exc:  # the driver's own, OSError, or the embedded engine's
            raise store_error(exc, _open_hint(dsn, exc)) from None
        store = cls(client, dsn, read_only, check_name(cluster) if cluster else None)
        if read_only:
            store._command("SET readonly = 2")
            if str(store._query("SELECT getSetting('readonly')")[0][0]) != "2":
                client.close()
                raise StoreError(f"store {redact(dsn)}: could not open a read-only session")
        return store

    def close(self) -> None:
        self.client.close()

    def ensure_schema(self) -> list[str]:
        """Apply the schema migrations the store lacks (backend/migrations.py); their names."""
        return [f"{m.version:03d}_{m.name}" for m in migrate(self)]

    def _settings(self, **extra: object) -> dict[str, object]:
        """Insert settings: on a cluster, inserts through Distributed tables wait for the shard."""
        return {**(INSERT_SETTINGS if self.cluster else {}), **extra}

    def insert_migration(self, version: int, name: str) -> None:
        try:
            self.client.insert(
                "otel_audit.schema_migrations",
                [[version, name]],
                column_names=["Version", "Name"],
                settings=self._settings(),
            )
        except (ClickHouseError, OSError) as exc:
            raise store_error(
                exc, f"recording schema migration {version} failed: {exc}", inserting=True
            ) from exc

    def timezone(self) -> str:
        """The server's time zone: what toYYYYMM(SealedAt), the partition key, uses."""
        return str(self._query("SELECT timezone()")[0][0])

    def has_schema(self) -> bool:
        return bool(self._query(f"EXISTS TABLE {LOGS}")[0][0])

    # -- writes --------------------------------------------------------------------------

    def insert_blocks(self, columns: Sequence[str], blocks: Sequence[bytes], token: str) -> None:
        """One INSERT of Native blocks (backend/native.py) of `columns`, deduplicated by `token`.

        A retry with the same token after an unclear failure is dropped by ClickHouse
        instead of duplicating the rows (non_replicated_deduplication_window). The engine
        squashes the blocks into one part. StoreDataError when the engine's error code says
        the rows themselves are bad, otherwise the class its code names (backend/error_codes.py:
        StoreUnavailableError, which the pipeline retries, for an outage).
        """
        try:
            self.client.raw_insert(
                LOGS,
                columns,
                insert_block=b"".join(blocks),
                fmt="Native",
                settings=self._settings(insert_deduplication_token=token),
            )
        except (ClickHouseError, OSError) as exc:
            error = error_class(exc, inserting=True)
            outcome = "refused the rows" if error is StoreDataError else "failed"  # bad rows: no retry helps
            raise error(f"insert into {LOGS} {outcome}: {exc}") from exc

    def insert_checkpoint(
        self, cp: StoredCheckpoint, sealed_at_ns: int, created_at_ns: int, key_id: int
    ) -> None:
        row = [
            *(getattr(cp, name) for name in CHECKPOINT_COLUMNS),
            sealed_at_ns,
            created_at_ns,
            f"{key_id:08x}",
        ]
        names = [*CHECKPOINT_COLUMNS.values(), "SealedAt", "CreatedAt", "KeyId"]
        try:
            self.client.insert(
                CHECKPOINTS,
                [row],
                column_names=names,
                settings=self._settings(
                    insert_deduplication_token=f"{cp.origin}:{cp.tree_size}:{created_at_ns}"
                ),
            )
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"insert into {CHECKPOINTS} failed: {exc}", inserting=True) from exc

    def insert_timestamp(self, ts: StoredTimestamp) -> None:
        row = [
            ts.origin,
            ts.tree_size,
            ts.tsa,
            ts.gen_time_ns // 1000,
            ts.token,
        ]  # DateTime64(6) takes microseconds
        try:
            self.client.insert(
                TIMESTAMPS,
                [row],
                column_names=["Origin", "TreeSize", "Tsa", "GenTime", "Token"],
                settings=self._settings(insert_deduplication_token=f"{ts.origin}:{ts.tree_size}:{ts.tsa}"),
            )
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"insert into {TIMESTAMPS} failed: {exc}", inserting=True) from exc

    def pause_merges(self, paused: bool) -> None:
        """Stop background merges of our tables (a running one is cancelled), or start them
        again. A merge rewrites parts into a new one, and one that meets a full disk may leave
        a part whose files are empty, losing every row it merged."""
        verb = "STOP" if paused else "START"
        for table in (LOGS, CHECKPOINTS, TREE_NODES, TIMESTAMPS):
            self._command(f"SYSTEM {verb} MERGES {table}")

    # -- reads ---------------------------------------------------------------------------

    def tail(self, origin: str) -> Tail | None:
        rows = self._query(
            f"SELECT Seq, ChainHash, toUnixTimestamp64Nano(SealedAt) FROM {LOGS} "
            "WHERE Origin = {o:String} ORDER BY Seq DESC LIMIT 1",
            {"o": origin},
        )
        if not rows:
            return None
        seq, chain, sealed_at = rows[0]
        return Tail(seq + 1, chain, sealed_at)

    def latest_checkpoint(self, origin: str) -> StoredCheckpoint | None:
        found = self.checkpoints(origin, latest_only=True)
        return found[0] if found else None

    def checkpoints(self, origin: str, latest_only: bool = False) -> list[StoredCheckpoint]:
        order = "TreeSize DESC, CreatedAt DESC LIMIT 1" if latest_only else "TreeSize, CreatedAt"
        return self._checkpoints(f"WHERE Origin = {{o:String}} ORDER BY {order}", {"o": origin})

    def checkpoint_sizes_above(self, origin: str, tree_size: int, limit: int) -> list[int]:
        """The smallest `limit` distinct tree sizes of stored checkpoints above `tree_size`."""
        rows = self._query(
            f"SELECT DISTINCT TreeSize FROM {CHECKPOINTS} WHERE Origin = {{o:String}} "
            "AND TreeSize > {n:Int64} ORDER BY TreeSize LIMIT {k:UInt32}",
            {"o": origin, "n": tree_size, "k": limit},
        )
        return [int(size) for (size,) in rows]

    def checkpoint_at(self, origin: str, tree_size: int) -> StoredCheckpoint | None:
        found = self._checkpoints(
            "WHERE Origin = {o:String} AND TreeSize = {n:UInt64} ORDER BY CreatedAt DESC LIMIT 1",
            {"o": origin, "n": tree_size},
        )
        return found[0] if found else None

    def _checkpoints(self, where: str, params: dict) -> list[StoredCheckpoint]:
        rows = self._query(
            f"SELECT {', '.join(CHECKPOINT_COLUMNS.values())} FROM {CHECKPOINTS} {where}",
            params,
            column_formats={"CompactRange": "bytes", "Note": "string"},
        )
        return [StoredCheckpoint(**dict(zip(CHECKPOINT_COLUMNS, row))) for row in rows]

    def timestamps(self, origin: str, latest_only: bool = False) -> list[StoredTimestamp]:
        """The stored tokens of a log, by tree size and TSA (the newest one only if asked); none
        in a store from before schema 008, which read-only commands may read unmigrated."""
        if not self._query(f"EXISTS TABLE {TIMESTAMPS}")[0][0]:
            return []
        order = "GenTime DESC LIMIT 1" if latest_only else "TreeSize, Tsa"
        rows = self._query(
            f"SELECT Origin, TreeSize, Tsa, toUnixTimestamp64Micro(GenTime) * 1000, Token FROM {TIMESTAMPS} "
            f"WHERE Origin = {{o:String}} ORDER BY {order}",
            {"o": origin},
            column_formats={"Token": "bytes"},
        )
        return [StoredTimestamp(o, int(n), t, int(g), bytes(tok)) for o, n, t, g, tok in rows]

    def origins(self) -> list[str]:
        rows = self._query(
            f"SELECT DISTINCT Origin FROM (SELECT Origin FROM {LOGS} UNION ALL "
            f"SELECT Origin FROM {CHECKPOINTS}) ORDER BY Origin"
        )
        return [origin for (origin,) in rows]

    def hashes_from(self, origin: str, first_seq: int) -> list[tuple[int, bytes, bytes]]:
        """(Seq, LeafHash, ChainHash) of the rows at and after `first_seq`, in Seq order."""
        return self._query(
            f"SELECT Seq, LeafHash, ChainHash FROM {LOGS} "
            "WHERE Origin = {o:String} AND Seq >= {s:UInt64} ORDER BY Seq",
            {"o": origin, "s": first_seq},
        )

    def column_hashes(self, origin: str, first: int, end: int) -> bytes:
        """The column hashes (32 bytes each, otel_audit/columns.py) of Seq [first, end), in order."""
        return self._raw(
            f"SELECT {COLUMN_HASH_SQL} FROM {LOGS} WHERE Origin = {{o:String}} "
            "AND Seq >= {a:UInt64} AND Seq < {b:UInt64} ORDER BY Seq",
            {"o": origin, "a": first, "b": end},
        )

    def leaf_and_chain_hashes(self, origin: str, first: int, end: int) -> bytes:
        """LeafHash || ChainHash (64 bytes a row) of Seq [first, end), in order."""
        return self._raw(
            f"SELECT LeafHash, ChainHash FROM {LOGS} WHERE Origin = {{o:String}} "
            "AND Seq >= {a:UInt64} AND Seq < {b:UInt64} ORDER BY Seq",
            {"o": origin, "a": first, "b": end},
        )

    def leaf_hashes(self, origin: str, first: int, end: int) -> bytes:
        """LeafHash (32 bytes a row) of Seq [first, end), in order."""
        return self._raw(
            f"SELECT LeafHash FROM {LOGS} WHERE Origin = {{o:String}} "
            "AND Seq >= {a:UInt64} AND Seq < {b:UInt64} ORDER BY Seq",
            {"o": origin, "a": first, "b": end},
        )

    def node_hashes(self, origin: str, height: int, first: int, end: int) -> bytes:
        """Stored tree node hashes (32 bytes each) at `height`, Index [first, end), in order."""
        return self._raw(
            f"SELECT Hash FROM {TREE_NODES} WHERE Origin = {{o:String}} AND Height = {{h:UInt8}} "
            "AND NodeIndex >= {a:UInt64} AND NodeIndex < {b:UInt64} ORDER BY NodeIndex LIMIT 1 BY NodeIndex",
            {"o": origin, "h": height, "a": first, "b": end},
        )

    def leaf_hash_windows(self, origin: str, windows: Sequence[tuple[int, int]]) -> bytes:
        """LeafHash (32 bytes a row) of the rows in these sorted, disjoint Seq windows, in order."""
        blobs = []
        for chunk in _chunks(windows, 16):
            where = " OR ".join(f"(Seq >= {int(a)} AND Seq < {int(b)})" for a, b in chunk)
            blobs.append(
                self._raw(
                    f"SELECT LeafHash FROM {LOGS} WHERE Origin = {{o:String}} AND ({where}) ORDER BY Seq",
                    {"o": origin},
                )
            )
        return b"".join(blobs)

    def nodes_in(self, origin: str, spans: Sequence[tuple[int, int, int]]) -> list[tuple[int, int, bytes]]:
        """(Height, NodeIndex, Hash) of the stored nodes in these (height, first, end) spans."""
        out: list[tuple[int, int, bytes]] = []
        for chunk in _chunks(spans, 16):
            where = " OR ".join(
                f"(Height = {int(h)} AND NodeIndex >= {int(a)} AND NodeIndex < {int(b)})" for h, a, b in chunk
            )
            blob = self._raw(
                f"SELECT Height, NodeIndex, Hash FROM {TREE_NODES} WHERE Origin = {{o:String}} AND ({where})",
                {"o": origin},
            )
            out.extend(
                (blob[i], int.from_bytes(blob[i + 1 : i + 9], "little"), blob[i + 9 : i + 41])
                for i in range(0, len(blob), 41)
            )
        return out

    def node_count(self, origin: str, height: int) -> int:
        """How many nodes of `height` are stored: they are written in Index order from 0."""
        rows = self._query(
            f"SELECT max(NodeIndex) + 1, count() FROM {TREE_NODES} "
            "WHERE Origin = {o:String} AND Height = {h:UInt8}",
            {"o": origin, "h": height},
        )
        end, count = rows[0]
        return int(end) if count else 0

    def insert_nodes(self, origin: str, height: int, first: int, hashes: Sequence[bytes]) -> None:
        rows = [(origin, height, first + i, h) for i, h in enumerate(hashes)]
        try:
            self.client.insert(
                TREE_NODES,
                rows,
                column_names=["Origin", "Height", "NodeIndex", "Hash"],
                settings=self._settings(insert_deduplication_token=f"{origin}:{height}:{first}:{len(rows)}"),
            )
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"insert into {TREE_NODES} failed: {exc}", inserting=True) from exc

    def row_anomalies(
        self, origin: str, first_seq: int = 0, first_chain: bytes = CHAIN_START
    ) -> list[tuple[int, int | None, bool, bool]]:
        """Rows whose Seq does not follow the previous row's, whose Entry does not hash to
        LeafHash, or whose ChainHash does not follow from the previous row's: (Seq,
        previous Seq or None, leaf ok, chain ok). Computed by the engine in one ordered scan,
        with the SQL form of the leaf and chain rules (otel_audit/merkle.py, chain.py)."""
        before_first = "toFixedString(unhex({c:String}), 32)"  # the chain head the log starts after
        previous_chain = f"lagInFrame(ChainHash, 1, {before_first}) OVER w"
        return self._query(
            f"""
            SELECT Seq, prev_seq, leaf_ok, chain_ok FROM (
                SELECT Seq,
                    lagInFrame(toNullable(Seq), 1, NULL) OVER w AS prev_seq,
                    {hash_leaf_sql("Entry")} = LeafHash AS leaf_ok,
                    {chain_next_sql(previous_chain, "LeafHash")} = ChainHash AS chain_ok
                FROM {LOGS} WHERE Origin = {{o:String}}
                WINDOW w AS (ORDER BY Seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))
            WHERE NOT leaf_ok OR NOT chain_ok
                OR if(isNull(prev_seq), Seq != {{f:UInt64}}, assumeNotNull(prev_seq) + 1 != Seq)
            ORDER BY Seq LIMIT 100000""",
            {"o": origin, "f": first_seq, "c": first_chain.hex()},
        )

    def seq_range(self, origin: str) -> tuple[int, int, int]:
        """(row count, smallest Seq, largest Seq) of an origin; (0, 0, 0) when empty."""
        count, low, high = self._query(
            f"SELECT count(), min(Seq), max(Seq) FROM {LOGS} WHERE Origin = {{o:String}}",
            {"o": origin},
        )[0]
        return count, low, high

    def seq_range_between(self, origin: str, first: int, end: int) -> tuple[int, int, int]:
        """(row count, smallest Seq, largest Seq) of an origin's rows of Seq [first, end);
        (0, 0, 0) when none. It reads the Seq column of those rows only (the primary key
        (Origin, Seq) selects their granules), so a part whose files are empty or cut short
        raises StoreDamagedError, where a bare count() would be answered from the parts'
        metadata."""
        count, low, high = self._query(
            f"SELECT count(), min(Seq), max(Seq) FROM {LOGS} "
            "WHERE Origin = {o:String} AND Seq >= {a:UInt64} AND Seq < {b:UInt64}",
            {"o": origin, "a": first, "b": end},
        )[0]
        return count, low, high

    def damaged_parts(self, origin: str, first: int, end: int) -> list[str]:
        """The active parts of the log table holding rows of Seq [first, end) that the engine
        cannot read (any column: `NOT ignore(*)` reads them all, in that range only)."""
        names = self._query(
            "SELECT name FROM system.parts WHERE database = 'otel_audit' AND table = {t:String} "
            "AND active ORDER BY name",
            {"t": LOGS.split(".")[1]},
        )
        damaged = []
        for (name,) in names:
            try:
                self._query(
                    f"SELECT count() FROM {LOGS} WHERE _part = {{p:String}} AND Origin = {{o:String}} "
                    "AND Seq >= {a:UInt64} AND Seq < {b:UInt64} AND NOT ignore(*)",
                    {"p": name, "o": origin, "a": first, "b": end},
                )
            except StoreDamagedError:
                damaged.append(name)
        return damaged

    def first_seq(self, origin: str, without_parts: Sequence[str] = ()) -> int | None:
        """The smallest Seq of an origin's rows outside `without_parts`; None if there is none."""
        count, low = self._query(
            f"SELECT count(), min(Seq) FROM {LOGS} WHERE Origin = {{o:String}} "
            "AND _part NOT IN {skip:Array(String)}",
            {"o": origin, "skip": list(without_parts)},
        )[0]
        return int(low) if count else None

    def seq_gaps(
        self, origin: str, first: int, end: int, without_parts: Sequence[str] = ()
    ) -> list[tuple[int, int]]:
        """The Seq ranges (first, last, inclusive) within [first, end) that have no row, not
        counting rows in `without_parts` (damaged_parts: rows the engine cannot read)."""
        where = (
            "Origin = {o:String} AND Seq >= {a:UInt64} AND Seq < {b:UInt64} "
            "AND _part NOT IN {skip:Array(String)}"
        )
        params = {"o": origin, "a": first, "b": end, "skip": list(without_parts)}
        rows = self._query(
            f"""
            SELECT prev + 1, toInt64(Seq) - 1 FROM (
                SELECT Seq, lagInFrame(toInt64(Seq), 1, toInt64({{a:UInt64}}) - 1) OVER w AS prev
                FROM {LOGS} WHERE {where}
                WINDOW w AS (ORDER BY Seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))
            WHERE toInt64(Seq) > prev + 1 ORDER BY Seq""",
            params,
        )
        gaps = [(int(a), int(b)) for a, b in rows]
        count, high = self._query(f"SELECT count(), max(Seq) FROM {LOGS} WHERE {where}", params)[0]
        last = int(high) if count else first - 1
        if last < end - 1:
            gaps.append((last + 1, end - 1))
        return gaps

    def stream_rows(
        self, origin: str, first: int = 0, end: int = 2**64 - 1, block_rows: int = 65536
    ) -> Iterator[list[tuple]]:
        """The rows of Seq [first, end) in Seq order, as blocks of tuples of ROW_COLUMNS
        (otel_audit/columns.py: StoredRow.of reads one by name)."""
        select = select_list(ROW_COLUMNS)
        query = (
            f"SELECT {select} FROM {LOGS} WHERE Origin = {{o:String}} "
            "AND Seq >= {a:UInt64} AND Seq < {b:UInt64} ORDER BY Seq "
            "SETTINGS optimize_read_in_order = 1"
        )
        try:
            with self.client.query_row_block_stream(
                query,
                parameters={"o": origin, "a": first, "b": end},
                column_formats={"Entry": "bytes"},
                settings={"max_block_size": block_rows},
            ) as stream:
                yield from stream
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"reading {LOGS} failed: {exc}") from exc

    def select(
        self,
        sql: str,
        parameters: dict | None = None,
        column_formats: dict[str, str | dict[str, str]] | None = None,
    ) -> list[tuple]:
        """Rows of a query of ours, with bound parameters."""
        return self._query(sql, parameters, column_formats)

    # -- helpers -------------------------------------------------------------------------

    def command(self, sql: str) -> object:
        return self._command(sql)

    def _command(self, sql: str) -> object:
        try:
            return self.client.command(sql)
        except (ClickHouseError, OSError) as exc:
            raise store_error(exc, f"{sql.split(chr(10))[0][:80]}...: {exc}") from exc

    def _raw(self, sql: str, parameters: dict) -> bytes:
        try:
            return self.client.raw_query(sql, parameters=parameters, fmt="RowBinary")
        except (ClickHouseError, OSError) as exc:
            raise _read_error(exc) from exc

    def _query(
        self,
        sql: str,
        parameters: dict | None = None,
        column_formats: dict[str, str | dict[str, str]] | None = None,
    ) -> list[tuple]:
        try:
            result = self.client.query(sql, parameters=parameters, column_formats=column_formats)
            return [tuple(row) for row in result.result_rows]
        except (ClickHouseError, OSError) as exc:
            raise _read_error(exc) from exc


def _read_error(exc: Exception) -> StoreError:
    """A failed read as our error (backend/error_codes.py), saying so when the engine says
    the data it holds is damaged."""
    if error_class(exc) is StoreDamagedError:
        return StoreDamagedError(f"the store cannot read data it holds: {exc}")
    return store_error(exc, f"query failed: {exc}")


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """Split ranges into groups small enough for one query's WHERE clause."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def _open_hint(dsn: str, exc: Exception) -> str:
    text = str(exc)
    if urlsplit(dsn).scheme == "chdb":
        return (
            f"cannot open embedded store {redact(dsn)}: {text}. One process owns an embedded "
            "store at a time: if `otel-audit serve` is running on it, stop it first."
        )
    return f"cannot open store {redact(dsn)}: {text}"
