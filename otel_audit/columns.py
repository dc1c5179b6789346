"""The columns of otel_audit.logs, defined once, and the column hashes a checkpoint signs.

Each column is declared once, as a field of the row it belongs to: its name, its Python type,
its ClickHouse type and where its value comes from (`Source`). Every list of columns the
code needs is derived from these two declarations: what the sealing workers prepare
(`RECORD_COLUMNS`), what the sealer adds (`SEALER_COLUMNS`), what the store reads back
(`ROW_COLUMNS`) and what a column hash covers (`DERIVED_COLUMNS`). The SQL migrations
(backend/sql/) create the same table; tests/test_columns.py compares this table with the
table a migrated store describes, so the two cannot drift apart.

A row is checked in two parts. Every column of `DerivedRow` is a function of the entry
(otel_audit/derivation.py); the sealer writes them and the verifier derives them again from
the entry to prove that no column was edited behind the entry's back. `StoredRow` adds the
entry and its hashes, which the hash chain and the Merkle tree protect.

Column hashes: how `verify` checks every stored column without decoding every entry.
Decoding an entry and rebuilding its ~20 derived columns costs Python some 10 us per record;
ClickHouse can hash the stored columns of a record in well under 1 us. So right after each
INSERT the sealer asks the store for the hash of each new row's derived columns, and every
checkpoint signs the SHA-256 of those hashes over the records it adds (the ``otel-audit
columns`` extension). `verify` recomputes the same hashes from what is stored now; where a
commitment does not match, it decodes the entries of that range to name the Seq and columns.

A column hash is SHA-256 over the row's DERIVED_COLUMNS in ClickHouse's RowBinary encoding
(``formatRowNoNewline('RowBinary', ...)``): a byte-exact, documented wire format that does
not change between ClickHouse versions, so a hash taken today still matches in seven years.
A derived column added after the first release (Producer) is appended as raw bytes after the
RowBinary row (which is self-delimiting): empty for every row sealed before it existed, so
those rows hash exactly as they did when their checkpoints signed them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Annotated, NamedTuple, get_type_hints


class Source(Enum):
    """Where a column's value comes from, which says who makes it and what checks it."""

    RECORD = "record"  # the producer's record alone: prepared by the sealing workers (sealer/prepare.py)
    SEAL = "seal"  # the seal too (Seq, seal time, producer): made by the sealer (sealer/pipeline.py)
    STORED = "stored"  # the entry and its hashes: made by the sealer, stored, derived from nothing


@dataclass(frozen=True)
class Column:
    """One column of otel_audit.logs; `name` is the row field that declares it."""

    type: str  # the table's type, as `DESCRIBE otel_audit.logs` shows it
    source: Source
    since: int = 1  # the schema migration that added it (backend/sql/NNN_*.sql)
    name: str = ""

    @property
    def sent_as(self) -> str:
        """The type an INSERT sends it as: the table's, without LowCardinality, whose
        dictionaries the engine builds itself, in C++ (and faster than Python could)."""
        return re.sub(r"LowCardinality\((\w+)\)", r"\1", self.type)

    @property
    def derived(self) -> bool:
        """Whether it is a function of the entry: checked against it and column-hashed."""
        return self.source is not Source.STORED


_TEXT = "LowCardinality(String)"
_MAP = "Map(LowCardinality(String), String)"
_RECORD, _SEAL, _STORED = Source.RECORD, Source.SEAL, Source.STORED


class DerivedRow(NamedTuple):
    """The columns a sealed row derives from its entry, in this order. Timestamps are integer
    nanoseconds (TimestampTime seconds): the Timestamp rule is otel_audit/derivation.py's."""

    Origin: Annotated[str, Column(_TEXT, _SEAL)]
    Seq: Annotated[int, Column("UInt64", _SEAL)]
    SealedAt: Annotated[int, Column("DateTime64(9)", _SEAL)]
    Timestamp: Annotated[int, Column("DateTime64(9)", _SEAL)]
    # The Collector schema's DEFAULT toDateTime(Timestamp), written explicitly and checked too.
    TimestampTime: Annotated[int, Column("DateTime", _SEAL)]
    ObservedTimestamp: Annotated[int, Column("DateTime64(9)", _RECORD)]
    TraceId: Annotated[str, Column("String", _RECORD)]
    SpanId: Annotated[str, Column("String", _RECORD)]
    TraceFlags: Annotated[int, Column("UInt8", _RECORD)]
    SeverityText: Annotated[str, Column(_TEXT, _RECORD)]
    SeverityNumber: Annotated[int, Column("UInt8", _RECORD)]
    ServiceName: Annotated[str, Column(_TEXT, _RECORD)]
    Body: Annotated[str, Column("String", _RECORD)]
    ResourceSchemaUrl: Annotated[str, Column(_TEXT, _RECORD)]
    ResourceAttributes: Annotated[dict[str, str], Column(_MAP, _RECORD)]
    ScopeSchemaUrl: Annotated[str, Column(_TEXT, _RECORD)]
    ScopeName: Annotated[str, Column("String", _RECORD)]
    ScopeVersion: Annotated[str, Column(_TEXT, _RECORD)]
    ScopeAttributes: Annotated[dict[str, str], Column(_MAP, _RECORD)]
    LogAttributes: Annotated[dict[str, str], Column(_MAP, _RECORD)]
    EventName: Annotated[str, Column("String", _RECORD)]
    Producer: Annotated[str, Column(_TEXT, _SEAL, since=3)]  # "" unless the sender authenticated


class StoredRow(NamedTuple):
    """A whole stored row: its derived columns, then the entry and its hashes."""

    derived: DerivedRow
    Entry: Annotated[bytes, Column("String", _STORED)]
    LeafHash: Annotated[bytes, Column("FixedString(32)", _STORED)]
    ChainHash: Annotated[bytes, Column("FixedString(32)", _STORED)]

    @classmethod
    def of(cls, values: Sequence[object]) -> StoredRow:
        """A row as the store reads it (ROW_COLUMNS, in order), by name."""
        return cls._make((DerivedRow._make(values[:_DERIVED_COUNT]), *values[_DERIVED_COUNT:]))


def _declared(row: type) -> tuple[Column, ...]:
    hints = get_type_hints(row, include_extras=True)
    return tuple(
        replace(spec, name=name)
        for name, hint in hints.items()
        for spec in getattr(hint, "__metadata__", ())
        if isinstance(spec, Column)
    )


DERIVED = _declared(DerivedRow)
COLUMNS = DERIVED + _declared(StoredRow)  # every column of otel_audit.logs
COLUMN = {column.name: column for column in COLUMNS}
_DERIVED_COUNT = len(DERIVED)

DERIVED_COLUMNS = tuple(c.name for c in DERIVED)  # what a column hash covers, in its order
ROW_COLUMNS = tuple(c.name for c in COLUMNS)  # what the store reads back (StoredRow.of)
RECORD_COLUMNS = tuple(c.name for c in COLUMNS if c.source is Source.RECORD)
SEALER_COLUMNS = tuple(c.name for c in COLUMNS if c.source is not Source.RECORD)
INSERT_COLUMNS = RECORD_COLUMNS + SEALER_COLUMNS  # an INSERT's: the prepared half, then the sealer's

_FIRST_RELEASE = [c.name for c in DERIVED if c.since == 1]
_ADDED_LATER = [c.name for c in DERIVED if c.since > 1]  # Strings: appended raw, empty before
COLUMN_HASH_SQL = (
    f"SHA256(concat(formatRowNoNewline('RowBinary', {', '.join(_FIRST_RELEASE)}), {', '.join(_ADDED_LATER)}))"
)


def columns_commitment(column_hashes: bytes) -> bytes:
    """What a checkpoint signs for the column hashes of its records, concatenated in Seq
    order (COLUMN_HASH_SQL makes each)."""
    return hashlib.sha256(column_hashes).digest()
