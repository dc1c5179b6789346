"""ClickHouse Native blocks, built in two halves by two kinds of process.

A Native block is its column count and row count (LEB128 varints), then each column in turn:
its name, its type and its values. The sealing workers encode the columns that come from the
producer's records (sealer/prepare.py); the sealer encodes the columns that depend on Seq and
the seal, and frames the block around both halves (sealer/seal.py). The values are
written by clickhouse-connect's own column writers, compiled, so neither half costs Python
a loop over its rows.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from clickhouse_connect.datatypes.base import ClickHouseType
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.exceptions import DataError
from clickhouse_connect.driver.insert import InsertContext

from otel_audit.columns import COLUMN
from otel_audit.errors import StoreDataError
from otel_audit.varint import varint


def _string(text: str) -> bytes:
    raw = text.encode()
    return varint(len(raw)) + raw


@dataclass(frozen=True)
class Columns:
    """Some columns of a table and their types, as the INSERT sends them."""

    names: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def of(cls, names: Sequence[str]) -> Columns:
        """Columns of otel_audit.logs, each sent as its table entry says (Column.sent_as)."""
        return cls(tuple(names), tuple(COLUMN[name].sent_as for name in names))

    @cached_property
    def _writers(self) -> list[tuple[str, bytes, ClickHouseType]]:
        return [(n, _string(n) + _string(t), get_from_name(t)) for n, t in zip(self.names, self.types)]

    def encode(self, values: Sequence[Sequence[object]]) -> bytes:
        """The columns' part of a block: one sequence of values per column, in `names` order.
        StoreDataError if a value does not fit its column's type (backend/limits.py)."""
        if len(values) != len(self.names):
            raise ValueError(f"{len(values)} columns of values for {len(self.names)} columns")
        context = InsertContext("", self.names, [w for _, _, w in self._writers])
        out = bytearray()
        for (name, header, writer), column in zip(self._writers, values):
            out += header
            context.start_column(name)
            try:
                writer.write_column(column, out, context)
            except (DataError, ValueError, OverflowError, TypeError, struct.error) as exc:
                raise StoreDataError(
                    f"column {name}: a value its type {writer.name} cannot hold ({exc})"
                ) from None
        return bytes(out)

    def encode_by_name(self, values: Mapping[str, Sequence[object]]) -> bytes:
        """`encode`, the values given by column name."""
        return self.encode([values[name] for name in self.names])


def block(rows: int, columns: int, *parts: bytes) -> bytes:
    """A Native block of `rows` rows from Columns.encode parts holding `columns` columns in all."""
    return b"".join((varint(columns), varint(rows), *parts))
