"""Leaf entries: one sealed OTLP log record, and the columns derived from it.

An entry is the deterministic protobuf serialization of an OTLP ``ResourceLogs`` holding one
``ScopeLogs`` holding one ``LogRecord`` (DESIGN.md, "Formats"), so any OTLP tool decodes it.
The seal metadata travels inside it as the record's last attributes, under the reserved
``otel_audit.`` prefix that producers may not use.

Every column of ``otel_audit.logs`` except LeafHash and ChainHash is a function of the entry
(`columns_of`). The sealer and the verifier both call that one function, which is how the
verifier proves that no column was edited behind the entry's back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from math import isfinite

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from .errors import FormatError

SEAL_PREFIX = "otel_audit."
ATTR_ORIGIN = "otel_audit.origin"
ATTR_SEQ = "otel_audit.seq"
ATTR_SEALED_AT = "otel_audit.sealed_at"
ATTR_PRODUCER = "otel_audit.producer"  # only when the producer was authenticated
ATTR_MASKING = "otel_audit.masking"  # only when masking rules applied (sealer/masking.py)

# The columns of otel_audit.logs that `columns_of` derives, in this order. TimestampTime is
# the Collector schema's DEFAULT toDateTime(Timestamp), written explicitly and checked too.
DERIVED_COLUMNS: tuple[str, ...] = (
    "Origin",
    "Seq",
    "SealedAt",
    "Timestamp",
    "TimestampTime",
    "ObservedTimestamp",
    "TraceId",
    "SpanId",
    "TraceFlags",
    "SeverityText",
    "SeverityNumber",
    "ServiceName",
    "Body",
    "ResourceSchemaUrl",
    "ResourceAttributes",
    "ScopeSchemaUrl",
    "ScopeName",
    "ScopeVersion",
    "ScopeAttributes",
    "LogAttributes",
    "EventName",
    "Producer",
)
# Timestamps are carried as integer nanoseconds (seconds for TimestampTime).
Row = tuple


def any_value_as_string(value: AnyValue) -> str:
    """pdata's Value.AsString(), the rule the Collector's ClickHouse exporter uses."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return ""
    if kind in ("array_value", "kvlist_value"):
        return json.dumps(_raw(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return _scalar_as_string(value, kind)


def _scalar_as_string(value: AnyValue, kind: str) -> str:
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _format_float(value.double_value)
    return base64.b64encode(value.bytes_value).decode()


def _format_float(number: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): shortest digits, never an exponent."""
    if not isfinite(number):
        return "NaN" if number != number else ("+Inf" if number > 0 else "-Inf")
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _raw(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_raw(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _raw(kv.value) for kv in value.kvlist_value.values}
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value if isfinite(value.double_value) else _format_float(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes_as_map(attributes: object) -> dict[str, str]:
    """Each attribute's key and value as a string (any_value_as_string). A non-empty
    string_value can only be the value of a string attribute (the value is a oneof), and
    most are: those skip the slower general path."""
    out: dict[str, str] = {}
    for kv in attributes:  # type: ignore[attr-defined]
        value = kv.value
        out[kv.key] = value.string_value or any_value_as_string(value)
    return out


def _hex_id(raw: bytes) -> str:
    return raw.hex() if any(raw) else ""


@dataclass(frozen=True)
class Seal:
    origin: str
    seq: int
    sealed_at_ns: int
    producer: str = ""  # the authenticated sender (certificate subject or token name), or ""
    masking: str = ""  # the identity of the masking rules applied before sealing, or ""


def add_seal(record: LogRecord, seal: Seal) -> None:
    """Append the seal attributes to a record the sealer owns (last, in this order; producer
    and masking only when there are any, so entries sealed before they existed read the same)."""
    attrs = record.attributes
    attrs.add(key=ATTR_ORIGIN).value.string_value = seal.origin
    attrs.add(key=ATTR_SEQ).value.int_value = seal.seq
    attrs.add(key=ATTR_SEALED_AT).value.int_value = seal.sealed_at_ns
    if seal.producer:
        attrs.add(key=ATTR_PRODUCER).value.string_value = seal.producer
    if seal.masking:
        attrs.add(key=ATTR_MASKING).value.string_value = seal.masking


def reserved_attribute(attributes: Mapping[str, str]) -> str | None:
    """The first attribute key a producer may not send, or None."""
    return next((key for key in attributes if key.startswith(SEAL_PREFIX)), None)


def _read_seal(record: LogRecord) -> tuple[Seal, dict[str, str]]:
    """Split a sealed record's attributes into the seal and the producer's own attributes."""
    attrs = list(record.attributes)
    optional = {ATTR_PRODUCER: "", ATTR_MASKING: ""}
    for key in (ATTR_MASKING, ATTR_PRODUCER):  # the optional seal attributes, from the end
        if attrs and attrs[-1].key == key:
            if attrs[-1].value.WhichOneof("value") != "string_value" or not attrs[-1].value.string_value:
                raise FormatError(f"entry seal attribute {key} must be a non-empty string")
            optional[key] = attrs.pop().value.string_value
    tail = attrs[-3:]
    if len(tail) != 3 or [kv.key for kv in tail] != [ATTR_ORIGIN, ATTR_SEQ, ATTR_SEALED_AT]:
        raise FormatError("entry lacks the otel_audit seal attributes at the end of the record")
    origin, seq, sealed_at = (kv.value for kv in tail)
    if (
        origin.WhichOneof("value") != "string_value"
        or seq.WhichOneof("value") != "int_value"
        or sealed_at.WhichOneof("value") != "int_value"
    ):
        raise FormatError("entry seal attributes have the wrong value types")
    own = attributes_as_map(attrs[:-3])
    if any(key.startswith(SEAL_PREFIX) for key in own):  # on the map: upb keys are slow to read
        raise FormatError("entry carries a reserved otel_audit.* attribute outside the seal")
    seal = Seal(
        origin.string_value,
        seq.int_value,
        sealed_at.int_value,
        optional[ATTR_PRODUCER],
        optional[ATTR_MASKING],
    )
    return seal, own


def _shared_columns(resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> tuple:
    """The columns every record of one ScopeLogs shares (see record_columns)."""
    resource_attrs = attributes_as_map(resource_logs.resource.attributes)
    scope = scope_logs.scope
    return (
        resource_attrs.get("service.name", ""),
        resource_logs.schema_url,
        resource_attrs,
        scope_logs.schema_url,
        scope.name,
        scope.version,
        attributes_as_map(scope.attributes),
    )


class Context:
    """What a record shares with its neighbours: resource and scope, already encoded.

    Built once per ScopeLogs of a request so that per-record work is only the record.
    """

    __slots__ = ("_resource_head", "_resource_tail", "_scope_head", "_scope_tail", "shared")

    def __init__(self, resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> None:
        self.shared = _shared_columns(resource_logs, scope_logs)
        resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
        scope_bytes = scope_logs.scope.SerializeToString(deterministic=True)
        self._resource_head = _field(1, resource_bytes) + b"\x12"
        self._resource_tail = _field(3, resource_logs.schema_url.encode())
        self._scope_head = _field(1, scope_bytes) + b"\x12"
        self._scope_tail = _field(3, scope_logs.schema_url.encode())

    def entry(self, record_bytes: bytes) -> bytes:
        """The deterministic serialization of ResourceLogs{resource, [ScopeLogs{scope, [record]}]}.

        Protobuf encodes a message as its fields in field-number order, an unset field as
        nothing; we assemble exactly those bytes around the record from parts encoded once
        per ScopeLogs (tested equal to protobuf's own serializer). 0x12 is the tag of
        field 2, length-delimited: ScopeLogs.log_records and ResourceLogs.scope_logs.
        """
        scope_logs = self._scope_head + _varint(len(record_bytes)) + record_bytes + self._scope_tail
        return self._resource_head + _varint(len(scope_logs)) + scope_logs + self._resource_tail


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); an empty one is unset and encodes as nothing."""
    if not payload:
        return b""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def record_columns(shared: tuple, record: LogRecord, seal: Seal, own_attributes: dict[str, str]) -> Row:
    """The derived column values, in DERIVED_COLUMNS order."""
    service, resource_schema, resource_attrs, scope_schema, scope_name, scope_version, scope_attrs = shared
    timestamp = record.time_unix_nano or record.observed_time_unix_nano or seal.sealed_at_ns
    return (
        seal.origin,
        seal.seq,
        seal.sealed_at_ns,
        timestamp,
        timestamp // 1_000_000_000,
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
        seal.producer,
    )


def seal_record(
    context: Context, record: LogRecord, seal: Seal, attributes: dict[str, str] | None = None
) -> tuple[bytes, Row]:
    """Seal a producer's record: returns its entry bytes and derived columns.

    `attributes` is the record's attributes_as_map, when the caller already made it (the
    receiver does, to refuse reserved keys): reading upb attributes is the costliest step.
    """
    own = attributes_as_map(record.attributes) if attributes is None else attributes
    add_seal(record, seal)
    entry = context.entry(record.SerializeToString(deterministic=True))
    return entry, record_columns(context.shared, record, seal, own)


def decode_entry(entry: bytes) -> tuple[Seal, Row]:
    """Parse an entry and derive its columns; FormatError if it is not a sealed entry."""
    resource_logs = ResourceLogs()
    try:
        resource_logs.ParseFromString(entry)
    except Exception as exc:  # protobuf raises its own DecodeError
        raise FormatError(f"entry is not an OTLP ResourceLogs: {exc}") from None
    if len(resource_logs.scope_logs) != 1 or len(resource_logs.scope_logs[0].log_records) != 1:
        raise FormatError("entry must hold exactly one ScopeLogs with one LogRecord")
    scope_logs = resource_logs.scope_logs[0]
    record = scope_logs.log_records[0]
    seal, own = _read_seal(record)
    return seal, record_columns(_shared_columns(resource_logs, scope_logs), record, seal, own)
