"""What the fuzzer sends (hypothesis strategies, and the raw-bytes encoding they need).

(a) Structurally valid ExportLogsServiceRequests with extreme values: every scalar at its
type's edges (time_unix_nano up to 2^64-1, severity_number negative and huge, flags,
dropped counts), huge and deeply nested AnyValues, odd trace and span ids, reserved
``otel_audit.*`` keys in record, resource and scope attributes and event names, huge
attribute counts, unknown fields, and invalid UTF-8 spliced in as raw bytes (no protobuf
library builds that). Each record carries a unique id attribute (store.ID_KEY), appended as
raw bytes, so that what was answered OK can be looked up in the store afterwards.
(b) Malformed bytes: mutations (flips, cuts, insertions, repeats) of valid encodings, gzip
bodies that are truncated, concatenated or followed by garbage, and JSON documents that are
not OTLP (deep nesting, null, numbers).
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .soak import audit_request
from .store import ID_KEY

NewIds = Callable[[str, int], list[str]]  # (prefix, how many) -> fresh record ids
U64, I64, U32, I32 = 2**64 - 1, 2**63 - 1, 2**32 - 1, 2**31 - 1
NS = 10**9
# 2^32 s in ns (2106-02-07: the end of DateTime), 2^63 ns and 2^64-1 ns: the edges of the store.
TIMESTAMPS = (0, 1, 2**32 * NS - 1, 2**32 * NS, I64, I64 + 1, U64)
INT64S = (-(2**63), -1, 0, 1, I64)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2): tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# --- (a) structurally valid requests with extreme values ---------------------------------

keys = st.one_of(
    st.sampled_from(["user.id", "audit.action", "audit.outcome", "audit.resource", "service.name", ""]),
    st.sampled_from(["otel_audit.seq", "otel_audit.producer", "otel_audit.", "OTEL_AUDIT.seq"]),
    st.text(max_size=20).filter(lambda k: k != ID_KEY),
)
scalars = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), st.text(max_size=30)),
    st.builds(lambda b: AnyValue(bool_value=b), st.booleans()),
    st.builds(lambda i: AnyValue(int_value=i), st.sampled_from(INT64S) | st.integers(-(2**63), I64)),
    st.builds(lambda d: AnyValue(double_value=d), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda b: AnyValue(bytes_value=b), st.binary(max_size=30)),
    st.just(AnyValue()),  # no value set
)


def _array(values: list[AnyValue]) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=values))


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))


any_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(_array),
        st.lists(st.tuples(keys, inner), max_size=4).map(_kvlist),
    ),
    max_leaves=6,
)


@dataclass(frozen=True)
class Sizes:
    """How big "huge" is: string and bytes values, wide arrays, attribute counts. The suite
    runs SMALL (seconds); bench/fuzz.py runs FULL."""

    strings: tuple[int, ...]
    wide: tuple[int, ...]
    many: tuple[int, ...]


SMALL = Sizes(strings=(4096, 65_536), wide=(1000,), many=(300,))
FULL = Sizes(strings=(65_536, 1 << 20, 3 << 20), wide=(1000, 20_000), many=(1000, 10_000))


@st.composite
def huge_values(draw: st.DrawFn, sizes: Sizes) -> AnyValue:
    """Values far beyond what hypothesis would draw leaf by leaf: long strings, wide arrays,
    nesting up to what protobuf's Python runtime will build (deeper ones: deep_body)."""
    kind = draw(st.sampled_from(["string", "bytes", "deep_array", "deep_kvlist", "wide_array"]))
    if kind in ("string", "bytes"):
        size = draw(st.sampled_from(sizes.strings))
        return AnyValue(string_value="x" * size) if kind == "string" else AnyValue(bytes_value=b"\xff" * size)
    if kind == "wide_array":
        return _array([AnyValue(int_value=i) for i in range(draw(st.sampled_from(sizes.wide)))])
    value = AnyValue(string_value="bottom")
    for _ in range(draw(st.sampled_from([8, 16, 24]))):
        value = _array([value]) if kind == "deep_array" else _kvlist([("k", value)])
    return value


def deep_body(depth: int, kind: str) -> bytes:
    """A record's body field (5) nested `depth` AnyValues deep, as raw bytes: protobuf's
    Python runtime refuses to build messages this deep, but a client can send them."""
    value = field_bytes(1, b"bottom")  # AnyValue.string_value
    for _ in range(depth):
        if kind == "array":  # AnyValue.array_value(5) -> ArrayValue.values(1)
            value = field_bytes(5, field_bytes(1, value))
        else:  # AnyValue.kvlist_value(6) -> KeyValueList.values(1) -> KeyValue.value(2)
            value = field_bytes(6, field_bytes(1, field_bytes(1, b"k") + field_bytes(2, value)))
    return field_bytes(5, value)


def attributes(sizes: Sizes, max_size: int = 4) -> st.SearchStrategy[list[KeyValue]]:
    small = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), keys, any_values), max_size=max_size)
    many = st.sampled_from(sizes.many).map(
        lambda n: [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(n)]
    )
    return st.one_of(small, small, small, many)


edge_u64 = st.sampled_from(TIMESTAMPS) | st.integers(0, U64)
edge_u32 = st.sampled_from([0, 1, 255, 256, U32]) | st.integers(0, U32)
edge_enum = st.sampled_from([0, 9, 24, 25, -1, -(2**31), I32]) | st.integers(-(2**31), I32)
ids = st.sampled_from([0, 1, 8, 15, 16, 17, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
event_names = st.one_of(
    st.just(""), st.sampled_from(["audit.order.place", "otel_audit.seal", "audit."]), st.text(max_size=20)
)


@st.composite
def log_records(draw: st.DrawFn, timestamps: st.SearchStrategy[int], sizes: Sizes) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(timestamps),
        observed_time_unix_nano=draw(timestamps),
        severity_number=draw(edge_enum),  # type: ignore[arg-type]
        severity_text=draw(st.text(max_size=10)),
        attributes=draw(attributes(sizes)),
        dropped_attributes_count=draw(edge_u32),
        flags=draw(edge_u32),
        trace_id=draw(ids),
        span_id=draw(ids),
        event_name=draw(event_names),
    )
    body = draw(st.one_of(st.none(), any_values, any_values, huge_values(sizes)))
    if body is not None:
        record.body.CopyFrom(body)
    return record


# Raw bytes appended to a serialized message: protobuf merges them into it (the last scalar
# wins), which is how a record gets invalid UTF-8 or unknown fields no builder would give it.
_INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\x80")


def _unknown_field(number: int, wire: int, payload: bytes) -> bytes:
    if wire == 0:
        return _varint(number << 3) + _varint(int.from_bytes(payload[:8] or b"\x00", "little"))
    if wire == 1:
        return _varint(number << 3 | 1) + payload[:8].ljust(8, b"\x00")
    if wire == 5:
        return _varint(number << 3 | 5) + payload[:4].ljust(4, b"\x00")
    return field_bytes(number, payload)


unknown_fields = st.builds(
    _unknown_field,
    st.sampled_from([13, 99, 1000, 2**29 - 1]),
    st.sampled_from([0, 1, 2, 5]),
    st.binary(max_size=16),
)
invalid_utf8_fields = st.builds(
    lambda where, bad: {
        "severity_text": field_bytes(3, bad),
        "event_name": field_bytes(12, bad),
        "body": field_bytes(5, field_bytes(1, bad)),
        "attribute key": field_bytes(6, field_bytes(1, bad)),
        "attribute value": field_bytes(6, field_bytes(1, b"k") + field_bytes(2, field_bytes(1, bad))),
    }[where],
    st.sampled_from(["severity_text", "event_name", "body", "attribute key", "attribute value"]),
    st.sampled_from(_INVALID_UTF8),
)
deep_bodies = st.builds(
    deep_body, st.sampled_from([45, 50, 100, 1000, 20_000]), st.sampled_from(["array", "kvlist"])
)


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy, in_20: int) -> st.SearchStrategy:
    """`rare` about in_20 times in 20, `common` otherwise (st.one_of weighs its branches
    alike, and folds identical ones into one)."""
    return st.integers(0, 19).flatmap(lambda i: rare if i < in_20 else common)


# Mostly nothing: one record that cannot be decoded refuses its whole request.
suffixes = mostly(
    st.just(b""),
    st.one_of(
        unknown_fields,
        st.lists(unknown_fields, max_size=3).map(b"".join),
        invalid_utf8_fields,
        deep_bodies,
    ),
    4,
)


@dataclass(frozen=True)
class RecordSpec:
    record: LogRecord
    suffix: bytes  # raw fields appended to the record's bytes


@dataclass(frozen=True)
class ScopeSpec:
    scope: InstrumentationScope | None
    records: list[RecordSpec]
    schema_url: str


@dataclass(frozen=True)
class ResourceSpec:
    resource: Resource | None
    scopes: list[ScopeSpec]
    schema_url: str
    suffix: bytes


@dataclass(frozen=True)
class RequestSpec:
    """A request to build: records in their resources and scopes, plus raw extras."""

    resources: list[ResourceSpec]
    suffix: bytes

    @property
    def records(self) -> int:
        return sum(len(s.records) for r in self.resources for s in r.scopes)

    def encode(self, record_ids: list[str]) -> bytes:
        """The request's bytes, record i carrying id record_ids[i] as an attribute."""
        numbered = iter(record_ids)
        out = bytearray()
        for rs in self.resources:
            body = bytearray()
            if rs.resource is not None:
                body += field_bytes(1, rs.resource.SerializeToString())
            for ss in rs.scopes:
                scope = bytearray()
                if ss.scope is not None:
                    scope += field_bytes(1, ss.scope.SerializeToString())
                for spec in ss.records:
                    tag = KeyValue(key=ID_KEY, value=AnyValue(string_value=next(numbered)))
                    record = (
                        spec.record.SerializeToString()
                        + spec.suffix
                        + field_bytes(6, tag.SerializeToString())
                    )
                    scope += field_bytes(2, record)
                if ss.schema_url:
                    scope += field_bytes(3, ss.schema_url.encode())
                body += field_bytes(2, bytes(scope))
            if rs.schema_url:
                body += field_bytes(3, rs.schema_url.encode())
            out += field_bytes(1, bytes(body) + rs.suffix)
        return bytes(out) + self.suffix


def scopes(sizes: Sizes) -> st.SearchStrategy[InstrumentationScope | None]:
    return st.builds(
        lambda present, name, version, attrs, dropped: (
            InstrumentationScope(
                name=name, version=version, attributes=attrs, dropped_attributes_count=dropped
            )
            if present
            else None
        ),
        st.booleans(),
        st.text(max_size=20),
        st.text(max_size=10),
        attributes(sizes, 3),
        edge_u32,
    )


def resources(sizes: Sizes) -> st.SearchStrategy[Resource | None]:
    return st.builds(
        lambda present, attrs, dropped: (
            Resource(attributes=attrs, dropped_attributes_count=dropped) if present else None
        ),
        st.booleans(),
        attributes(sizes, 4),
        edge_u32,
    )


def request_specs(timestamps: st.SearchStrategy[int], sizes: Sizes) -> st.SearchStrategy[RequestSpec]:
    """(a): requests of 1 to 2 resources, 1 to 2 scopes each, 1 to 3 records each."""
    scope_specs = st.builds(
        ScopeSpec,
        scopes(sizes),
        st.lists(st.builds(RecordSpec, log_records(timestamps, sizes), suffixes), min_size=1, max_size=3),
        st.text(max_size=10),
    )
    resource_specs = st.builds(
        ResourceSpec,
        resources(sizes),
        st.lists(scope_specs, min_size=1, max_size=2),
        st.text(max_size=10),
        mostly(st.just(b""), unknown_fields, 5),
    )
    return st.builds(
        RequestSpec, st.lists(resource_specs, min_size=1, max_size=2), mostly(st.just(b""), unknown_fields, 5)
    )


# Timestamps the store can hold (DateTime64(9) and DateTime: before 2^32 s), the edges included.
STORE_TIMESTAMPS = st.sampled_from([0, 1, 2**32 * NS - 1]) | st.integers(0, 2**32 * NS - 1)


# --- (b) malformed bytes -------------------------------------------------------------------

mutation = st.tuples(
    st.sampled_from(["flip", "set", "cut", "insert", "delete", "repeat"]),
    st.floats(0, 1),
    st.integers(0, 255),
)


def mutate(data: bytes, mutations: list[tuple[str, float, int]]) -> bytes:
    """`data` with each mutation applied in turn (at a position given as a fraction)."""
    out = bytearray(data)
    for op, where, value in mutations:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == "cut":
            del out[i:]
        elif op == "insert":
            out[i:i] = bytes([value])
        elif not out:
            continue
        elif op == "flip":
            out[i] ^= 1 << (value % 8)
        elif op == "set":
            out[i] = value
        elif op == "delete":
            del out[i]
        elif op == "repeat":
            out[i:i] = out[i : i + 1 + value % 16]
    return bytes(out)


def good_request_bytes(new_ids: NewIds, records: int) -> tuple[list[str], bytes]:
    """A valid request of ordinary audit records (the soak's) with fresh ids, to mutate."""
    record_ids = new_ids("ok", records)
    return record_ids, audit_request(record_ids, "fuzz-good").SerializeToString()


GZIP_DEFECTS = ("two members", "truncated", "trailing garbage", "trailing zeros", "mutated")
gzip_defects = st.tuples(
    st.sampled_from(GZIP_DEFECTS),
    st.integers(2, 40),
    st.floats(0.01, 0.99),
    st.lists(mutation, min_size=1, max_size=4),
)


def bad_gzip(new_ids: NewIds, defect: tuple[str, int, float, list]) -> tuple[list[str], bytes]:
    """(ids, gzip body) for a gzip body that is not exactly one well-formed gzip member."""
    kind, records, where, mutations = defect
    record_ids, raw = good_request_bytes(new_ids, records)
    whole = gzip.compress(raw)
    if kind == "two members":
        more_ids, more = good_request_bytes(new_ids, 3)
        return record_ids + more_ids, whole + gzip.compress(more)
    if kind == "truncated":
        return record_ids, whole[: max(1, int(where * len(whole)))]
    if kind == "trailing garbage":
        return record_ids, whole + b"garbage"
    if kind == "trailing zeros":
        return record_ids, whole + b"\x00" * 8
    return record_ids, mutate(whole, mutations)


def gunzip_exactly(body: bytes) -> bytes | None:
    """What an exact decoder makes of a gzip body (every member, CRC and length checked,
    nothing left over), or None when it is not gzip: Python's own gzip module."""
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError
        return None


def _deep(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


bad_json = st.one_of(
    st.sampled_from([b"null", b"0", b"-1", b"1e999", b"true", b'"resourceLogs"', b"[]", b"", b"{"]),
    st.builds(_deep, st.sampled_from([100, 1000, 5000, 100_000]), st.sampled_from(["array", "object"])),
    st.builds(
        lambda depth: b'{"resourceLogs":' + _deep(depth, "array") + b"}",
        st.sampled_from([1000, 5000, 100_000]),
    ),
    st.builds(
        lambda v: b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":' + v + b"}]}]}]}",
        st.sampled_from([b'"x"', b"-1", b"1.5", b"18446744073709551616", b"null", b"[]", b"{}", b'"0x10"']),
    ),
    st.builds(
        lambda key, v: b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"' + key + b'":' + v + b"}]}]}]}",
        st.sampled_from([b"traceId", b"spanId", b"body", b"attributes", b"severityNumber", b"flags"]),
        st.sampled_from([b'"zz"', b'"abc"', b"5", b"[1]", b'{"x":1}', b'"' + b"0" * 33 + b'"', b"null"]),
    ),
)
