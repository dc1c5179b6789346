"""Tests for otel_audit.columns: the one definition of otel_audit.logs' columns agrees with the
table the SQL migrations build, and every list of columns is derived from it."""

from __future__ import annotations

import re
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_audit.columns import (
    COLUMNS,
    DERIVED_COLUMNS,
    INSERT_COLUMNS,
    RECORD_COLUMNS,
    ROW_COLUMNS,
    SEALER_COLUMNS,
    DerivedRow,
    Source,
    StoredRow,
)
from otel_audit.entry import decode_entry
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import PREPARED_COLUMNS, Rules, prepare_request
from sealer.state import LogState

SQL = Path(__file__).resolve().parent.parent / "backend" / "sql"


def test_the_table_is_the_one_a_migrated_store_describes(store) -> None:
    described = store.select("DESCRIBE TABLE otel_audit.logs")
    assert {name: kind for name, kind, *_ in described} == {c.name: c.type for c in COLUMNS}
    defaults = {name: (default, expression) for name, _, default, expression, *_ in described}
    # TimestampTime is Timestamp's second, as the Timestamp rule derives it (otel_audit/derivation.py)
    assert defaults["TimestampTime"] == ("DEFAULT", "toDateTime(Timestamp)")


def test_each_column_comes_from_the_migration_it_names() -> None:
    """`since` decides how a column is hashed (COLUMN_HASH_SQL): it must be the migration that
    really added the column, and a column added later must be a String, appended raw."""
    first = re.search(
        r"CREATE TABLE IF NOT EXISTS otel_audit.logs\s*\((.*?)\n\)",
        (SQL / "001_schema.sql").read_text(),
        re.S,
    )
    assert first is not None
    created = {m.group(1) for m in re.finditer(r"^\s+([A-Z]\w+) [A-Z]", first.group(1), re.M)}
    for column in COLUMNS:
        if column.since == 1:
            assert column.name in created, column.name
            continue
        (migration,) = SQL.glob(f"{column.since:03d}_*.sql")
        assert f"ADD COLUMN IF NOT EXISTS {column.name} {column.type}" in migration.read_text()
        assert column.derived and column.sent_as == "String", column.name
    assert created == {c.name for c in COLUMNS if c.since == 1}


def test_every_list_of_columns_is_a_view_of_the_table() -> None:
    assert DerivedRow._fields == DERIVED_COLUMNS
    assert StoredRow._fields == ("derived", *ROW_COLUMNS[len(DERIVED_COLUMNS) :])
    assert tuple(c.name for c in COLUMNS) == ROW_COLUMNS
    assert sorted(INSERT_COLUMNS) == sorted(ROW_COLUMNS)  # an INSERT writes every column once
    assert INSERT_COLUMNS == RECORD_COLUMNS + SEALER_COLUMNS
    assert PREPARED_COLUMNS.names == RECORD_COLUMNS
    assert {c.name for c in COLUMNS if not c.derived} == {"Entry", "LeafHash", "ChainHash"}
    assert [c.source for c in COLUMNS if c.name in RECORD_COLUMNS] == [Source.RECORD] * len(RECORD_COLUMNS)
    # what an INSERT sends: the table's types, LowCardinality left to the engine
    sent = {c.name: c.sent_as for c in COLUMNS}
    assert sent["ServiceName"] == "String"
    assert sent["LogAttributes"] == "Map(String, String)"
    assert sent["ObservedTimestamp"] == "DateTime64(9)"


def test_a_stored_row_is_read_by_name(store) -> None:
    request = ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    scope_logs.log_records.add(body=AnyValue(string_value="hello"), severity_number=9)
    pipeline = Pipeline(store, PublishedLog(LogState.empty("columns.example/audit")))
    pipeline.start()
    try:
        pipeline.seal(prepare_request(request.SerializeToString(), Rules(incomplete="seal")))
    finally:
        pipeline.stop()
    (values,) = [row for block in store.stream_rows("columns.example/audit") for row in block]
    row = StoredRow.of(values)
    assert (row.derived.Seq, row.derived.Body, row.derived.SeverityNumber) == (0, "hello", 9)
    seal, derived = decode_entry(row.Entry)
    assert row.derived == derived and seal.seq == 0
    assert len(row.LeafHash) == len(row.ChainHash) == 32
