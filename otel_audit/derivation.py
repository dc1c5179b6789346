"""The derived columns' values: what a row says, computed from its record and its seal.

The sealer and the verifier both derive a row here (the sealing workers the record's part,
`record_values`; the sealer the seal's part, `timestamp_columns`; the verifier all of it,
through otel_audit/entry.py's `decode_entry`), which is how the verifier proves that no column
was edited behind the entry's back. The columns themselves are otel_audit/columns.py's.

The Timestamp rule lives here and only here: a record's Timestamp is its own time (its
time_unix_nano, else its observed_time_unix_nano), or the seal time when it has neither;
TimestampTime is that Timestamp in whole seconds (the Collector schema's DEFAULT
toDateTime(Timestamp), backend/sql/001_schema.sql).
"""

from __future__ import annotations

from typing import NamedTuple

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from .columns import DerivedRow
from .value_strings import any_value_as_string, attributes_as_map


class SharedColumns(NamedTuple):
    """The derived columns every record of one ScopeLogs shares (DerivedRow's names)."""

    ServiceName: str
    ResourceSchemaUrl: str
    ResourceAttributes: dict[str, str]
    ScopeSchemaUrl: str
    ScopeName: str
    ScopeVersion: str
    ScopeAttributes: dict[str, str]


def shared_columns(resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> SharedColumns:
    resource_attrs = attributes_as_map(resource_logs.resource.attributes)
    scope = scope_logs.scope
    return SharedColumns(
        resource_attrs.get("service.name", ""),
        resource_logs.schema_url,
        resource_attrs,
        scope_logs.schema_url,
        scope.name,
        scope.version,
        attributes_as_map(scope.attributes),
    )


def record_timestamp(record: LogRecord) -> int:
    """The record's own time: its time, else its observed time; 0 when it has neither (then
    the Timestamp column takes the seal time, timestamp_columns)."""
    return record.time_unix_nano or record.observed_time_unix_nano


def record_timestamp_field(record: LogRecord) -> str:
    """The LogRecord field record_timestamp takes the record's own time from."""
    return "time_unix_nano" if record.time_unix_nano else "observed_time_unix_nano"


def timestamp_columns(record_time_ns: int, sealed_at_ns: int) -> tuple[int, int]:
    """Timestamp (ns) and TimestampTime (s): the record's own time (record_timestamp), or the
    seal time when it has none."""
    timestamp = record_time_ns or sealed_at_ns
    return timestamp, timestamp // 1_000_000_000


def _hex_id(raw: bytes) -> str:
    return raw.hex() if any(raw) else ""


def record_values(shared: SharedColumns, record: LogRecord, own_attributes: dict[str, str]) -> tuple:
    """The RECORD_COLUMNS values of a record, in that order (a plain tuple: this runs once per
    record on the hot path). TraceFlags is the trace-flags byte of `flags` (OTLP's
    LOG_RECORD_FLAGS_TRACE_FLAGS_MASK). The sealer no longer seals a severity outside 0..255
    (backend/limits.py); the clamp stays so that entries sealed before that still derive the
    columns they were stored with."""
    service, resource_schema, resource_attrs, scope_schema, scope_name, scope_version, scope_attrs = shared
    return (
        record.observed_time_unix_nano,
        _hex_id(record.trace_id),
        _hex_id(record.span_id),
        record.flags & 0xFF,
        record.severity_text,
        max(0, min(255, record.severity_number)),
        service,
        record.body.string_value or any_value_as_string(record.body),
        resource_schema,
        resource_attrs,
        scope_schema,
        scope_name,
        scope_version,
        scope_attrs,
        own_attributes,
        record.event_name,
    )


def derived_row(
    shared: SharedColumns,
    record: LogRecord,
    own_attributes: dict[str, str],
    origin: str,
    seq: int,
    sealed_at_ns: int,
    producer: str,
) -> DerivedRow:
    """Every derived column of a record sealed as `origin` Seq `seq` at `sealed_at_ns`."""
    times = timestamp_columns(record_timestamp(record), sealed_at_ns)
    values = (origin, seq, sealed_at_ns, *times, *record_values(shared, record, own_attributes), producer)
    return DerivedRow._make(values)
