"""Leaf entries: one sealed OTLP log record, encoded for sealing and decoded for checking.

An entry is the deterministic protobuf serialization of an OTLP ``ResourceLogs`` holding one
``ScopeLogs`` holding one ``LogRecord`` (DESIGN.md, "Formats"), so any OTLP tool decodes it.
The seal metadata travels inside it as the record's last attributes, under the reserved
``otel_audit.`` prefix that producers may not use.

Encoding is split for speed: the sealing workers serialize each record once, split where the
seal goes (`split_record`), and frame it once per ScopeLogs (`EntryFrame`); the sealer only
splices in the seal attributes (`SealEncoder`). `decode_entry` reads an entry back, strictly,
and derives its columns (otel_audit/derivation.py), as the verifier and `restore` need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from .columns import DerivedRow
from .derivation import derived_row, shared_columns
from .errors import FormatError
from .value_strings import attributes_as_map
from .varint import varint

SEAL_PREFIX = "otel_audit."
ATTR_ORIGIN = "otel_audit.origin"
ATTR_SEQ = "otel_audit.seq"
ATTR_SEALED_AT = "otel_audit.sealed_at"
ATTR_PRODUCER = "otel_audit.producer"  # only when the producer was authenticated
ATTR_MASKING = "otel_audit.masking"  # only when masking rules applied (sealer/masking.py)


@dataclass(frozen=True)
class Seal:
    """What the sealer adds to a record: its otel_audit.* attributes, decoded."""

    origin: str
    seq: int
    sealed_at_ns: int
    producer: str = ""  # the authenticated sender (certificate subject or token name), or ""
    masking: str = ""  # the identity of the masking rules applied before sealing, or ""


class SealEncoder:
    """The seal attributes, encoded: the producer's record's last attributes (in this order;
    producer and masking only when there are any, so entries sealed before they existed read
    the same).

    Only Seq changes from record to record, so the sealer encodes the rest once per group.
    Each attribute is a LogRecord.attributes entry (field 6): a KeyValue with the key (field 1)
    and an AnyValue (field 2) holding string_value (field 1) or int_value (field 3, varint).
    """

    __slots__ = ("_after_seq", "_before_seq")

    def __init__(self, origin: str, sealed_at_ns: int, producer: str = "", masking: str = "") -> None:
        self._before_seq = _attribute(ATTR_ORIGIN, _STRING + _bytes(origin.encode()))
        after = _attribute(ATTR_SEALED_AT, _INT + varint(sealed_at_ns))
        if producer:
            after += _attribute(ATTR_PRODUCER, _STRING + _bytes(producer.encode()))
        if masking:
            after += _attribute(ATTR_MASKING, _STRING + _bytes(masking.encode()))
        self._after_seq = after

    def __call__(self, seq: int) -> bytes:
        value = varint(seq)
        return self._before_seq + _SEQ_HEADS[len(value)] + value + self._after_seq


_STRING, _INT = b"\x0a", b"\x18"  # AnyValue.string_value and AnyValue.int_value tags


def _attribute(key: str, any_value: bytes) -> bytes:
    """One LogRecord.attributes entry: tag 0x32 (field 6, length-delimited) and a KeyValue."""
    key_value = b"\x0a" + _bytes(key.encode()) + b"\x12" + _bytes(any_value)
    return b"\x32" + _bytes(key_value)


def _bytes(payload: bytes) -> bytes:
    """A length-delimited payload: its length as a varint, then the bytes."""
    return varint(len(payload)) + payload


# The fields after the attributes that _tail_length knows; a newer opentelemetry-proto with
# more fields falls back to _marked_spot for every record rather than split wrong.
_TAIL_IS_KNOWN = sorted(f.number for f in LogRecord.DESCRIPTOR.fields if f.number > 6) == list(range(7, 13))


def split_record(record: LogRecord) -> tuple[bytes, bytes]:
    """A producer's record serialized, split where the seal attributes go: (before, after).

    The seal attributes are the last entries of `attributes`, and deterministic protobuf
    writes a message's fields in field-number order (unknown fields last), so they go after
    the producer's own attributes and before the fields numbered above them (7 to 12), which
    are all scalars whose length is simple arithmetic. Records that carry unknown fields
    (from a newer producer) are split by `_marked_spot` instead, which asks protobuf.
    """
    whole = record.SerializeToString(deterministic=True)
    known = _TAIL_IS_KNOWN and not len(UnknownFieldSet(record))
    spot = len(whole) - _tail_length(record) if known else _marked_spot(record, whole)
    return whole[:spot], whole[spot:]


def _tail_length(record: LogRecord) -> int:
    """How many bytes LogRecord fields 7 to 12 take: each a one-byte tag and its value, and
    nothing when it has its default (proto3 writes only what is set)."""
    length = 0
    if record.dropped_attributes_count:  # 7: varint
        length += 1 + len(varint(record.dropped_attributes_count))
    if record.flags:  # 8: fixed32
        length += 5
    for size in (len(record.trace_id), len(record.span_id)):  # 9, 10: bytes
        if size:
            length += 1 + len(varint(size)) + size
    if record.observed_time_unix_nano:  # 11: fixed64
        length += 9
    if record.event_name:  # 12: string
        size = len(record.event_name.encode())
        length += 1 + len(varint(size)) + size
    return length


def _marked_spot(record: LogRecord, whole: bytes) -> int:
    """Where the seal attributes go in `whole`, found by protobuf itself: an empty attribute
    appended for a moment encodes as 32 00 exactly there. The first byte where the two
    serializations differ is the spot, because nothing that may follow the attributes starts
    with 0x32 (that byte is the attributes' own tag)."""
    record.attributes.add()
    marked = record.SerializeToString(deterministic=True)
    del record.attributes[-1]
    diff = int.from_bytes(whole, "big") ^ int.from_bytes(marked[: len(whole)], "big")
    spot = len(whole) - 1 - (diff.bit_length() - 1) // 8 if diff else len(whole)
    if marked[spot : spot + 2] != b"\x32\x00" or marked[spot + 2 :] != whole[spot:]:
        raise FormatError("record cannot be split for sealing")  # cannot happen; never seal it wrong
    return spot


def reserved_attribute(attributes: Mapping[str, str]) -> str | None:
    """The first attribute key a producer may not send, or None."""
    if SEAL_PREFIX not in "".join(attributes):  # no key holds it: the common case, in C
        return None
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


@dataclass(frozen=True, slots=True)
class EntryFrame:
    """The bytes of an entry around its record, encoded once per ScopeLogs.

    An entry is the deterministic serialization of ResourceLogs{resource, [ScopeLogs{scope,
    [record]}]}. Protobuf encodes a message as its fields in field-number order, an unset
    field as nothing, so the entry is: `resource_head`, the ScopeLogs' length, `scope_head`,
    the record's length, the record, `tail` (tested equal to protobuf's own serializer).
    The heads end in 0x12, the tag of field 2, length-delimited (ResourceLogs.scope_logs and
    ScopeLogs.log_records); `tail` is the schema_url fields of the ScopeLogs, then of the
    ResourceLogs, of which `scope_tail_len` bytes belong to the ScopeLogs.
    """

    resource_head: bytes
    scope_head: bytes
    scope_tail_len: int
    tail: bytes

    @classmethod
    def of(cls, resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> EntryFrame:
        resource_bytes = resource_logs.resource.SerializeToString(deterministic=True)
        scope_bytes = scope_logs.scope.SerializeToString(deterministic=True)
        scope_tail = _field(3, scope_logs.schema_url.encode())
        return cls(
            resource_head=_field(1, resource_bytes) + b"\x12",
            scope_head=_field(1, scope_bytes) + b"\x12",
            scope_tail_len=len(scope_tail),
            tail=scope_tail + _field(3, resource_logs.schema_url.encode()),
        )

    def entry(self, before: bytes, seal: bytes = b"", after: bytes = b"") -> bytes:
        """The entry of the record `before + seal + after` (split_record, SealEncoder)."""
        record_length = len(before) + len(seal) + len(after)
        record_prefix = varint(record_length)
        scope_length = len(self.scope_head) + len(record_prefix) + record_length + self.scope_tail_len
        head = (self.resource_head, varint(scope_length), self.scope_head, record_prefix)
        return b"".join((*head, before, seal, after, self.tail))


class Context:
    """What a record shares with its neighbours: the shared columns and the entry's frame.

    Built once per ScopeLogs of a request so that per-record work is only the record.
    """

    __slots__ = ("frame", "shared")

    def __init__(self, resource_logs: ResourceLogs, scope_logs: ScopeLogs) -> None:
        self.shared = shared_columns(resource_logs, scope_logs)
        self.frame = EntryFrame.of(resource_logs, scope_logs)


# The Seq attribute up to its value, for each length of the value's varint (1 to 10 bytes).
_SEQ_HEADS = {n: _attribute(ATTR_SEQ, _INT + bytes(n))[:-n] for n in range(1, 11)}


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); an empty one is unset and encodes as nothing."""
    if not payload:
        return b""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def decode_entry(entry: bytes) -> tuple[Seal, DerivedRow]:
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
    shared = shared_columns(resource_logs, scope_logs)
    return seal, derived_row(shared, record, own, seal.origin, seal.seq, seal.sealed_at_ns, seal.producer)
