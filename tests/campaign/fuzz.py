"""The fuzzer over both receivers: what it generates, how it sends it, and how it judges
every answer (hypothesis strategies; the tests and bench/fuzz.py drive them).

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

The answers a request may get (README, "Sending audit events"): OK / 200, with
partial_success naming what was refused; INVALID_ARGUMENT / 400 with a message for what
cannot be decoded; back-pressure (RetryInfo, 429), after which it is sent again. Never
INTERNAL / 500, never UNAVAILABLE / 503 (not retryable input answered as if it were), never
no answer at all.
"""

from __future__ import annotations

import gzip
import itertools
import threading
import time
import zlib
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .clients import Answer, GrpcClient, HttpClient, otlp_json
from .soak import audit_request
from .store import ID_KEY

U64, I64, U32, I32 = 2**64 - 1, 2**63 - 1, 2**32 - 1, 2**31 - 1
NS = 10**9
# 2^32 s in ns (2106-02-07: the end of DateTime), 2^63 ns and 2^64-1 ns: the edges of the store.
TIMESTAMPS = (0, 1, 2**32 * NS - 1, 2**32 * NS, I64, I64 + 1, U64)
INT64S = (-(2**63), -1, 0, 1, I64)
FIELD_WORDS = (  # a refusal must say what it refused: one of these appears in the message
    "attribute",
    "time_unix_nano",
    "timestamp",
    "severity",
    "body",
    "event",
    "trace",
    "span",
    "flags",
    "log_records",
    "resource",
    "scope",
    "audit event",
)


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


@st.composite
def huge_values(draw: st.DrawFn) -> AnyValue:
    """Values far beyond what hypothesis would draw leaf by leaf: long strings, wide arrays,
    nesting up to what protobuf's Python runtime will build (deeper ones: deep_body)."""
    kind = draw(st.sampled_from(["string", "bytes", "deep_array", "deep_kvlist", "wide_array"]))
    if kind in ("string", "bytes"):
        size = draw(st.sampled_from([65_536, 1 << 20, 3 << 20]))
        return AnyValue(string_value="x" * size) if kind == "string" else AnyValue(bytes_value=b"\xff" * size)
    if kind == "wide_array":
        return _array([AnyValue(int_value=i) for i in range(draw(st.sampled_from([1000, 20_000])))])
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


def attributes(max_size: int = 4) -> st.SearchStrategy[list[KeyValue]]:
    small = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), keys, any_values), max_size=max_size)
    many = st.sampled_from([1000, 10_000]).map(
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
def log_records(draw: st.DrawFn, timestamps: st.SearchStrategy[int]) -> LogRecord:
    record = LogRecord(
        time_unix_nano=draw(timestamps),
        observed_time_unix_nano=draw(timestamps),
        severity_number=draw(edge_enum),  # type: ignore[arg-type]
        severity_text=draw(st.text(max_size=10)),
        attributes=draw(attributes()),
        dropped_attributes_count=draw(edge_u32),
        flags=draw(edge_u32),
        trace_id=draw(ids),
        span_id=draw(ids),
        event_name=draw(event_names),
    )
    body = draw(st.one_of(st.none(), any_values, any_values, huge_values()))
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


scopes = st.builds(
    lambda present, name, version, attrs, dropped: (
        InstrumentationScope(name=name, version=version, attributes=attrs, dropped_attributes_count=dropped)
        if present
        else None
    ),
    st.booleans(),
    st.text(max_size=20),
    st.text(max_size=10),
    attributes(3),
    edge_u32,
)
resources = st.builds(
    lambda present, attrs, dropped: (
        Resource(attributes=attrs, dropped_attributes_count=dropped) if present else None
    ),
    st.booleans(),
    attributes(4),
    edge_u32,
)


def request_specs(timestamps: st.SearchStrategy[int] = edge_u64) -> st.SearchStrategy[RequestSpec]:
    """(a): requests of 1 to 2 resources, 1 to 2 scopes each, 1 to 3 records each."""
    scope_specs = st.builds(
        ScopeSpec,
        scopes,
        st.lists(st.builds(RecordSpec, log_records(timestamps), suffixes), min_size=1, max_size=3),
        st.text(max_size=10),
    )
    resource_specs = st.builds(
        ResourceSpec,
        resources,
        st.lists(scope_specs, min_size=1, max_size=2),
        st.text(max_size=10),
        mostly(st.just(b""), unknown_fields, 5),
    )
    return st.builds(
        RequestSpec, st.lists(resource_specs, min_size=1, max_size=2), mostly(st.just(b""), unknown_fields, 5)
    )


# Timestamps the store can hold (DateTime64(9) and DateTime: before 2^32 s), the edges included.
STORE_TIMESTAMPS = st.sampled_from([0, 1, 2**32 * NS - 1]) | st.integers(0, 2**32 * NS - 1)
requests_a = request_specs()


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


def good_request_bytes(ledger: Ledger, records: int) -> tuple[list[str], bytes]:
    """A valid request of ordinary audit records (the soak's) with fresh ids, to mutate."""
    record_ids = ledger.new_ids("ok", records)
    return record_ids, audit_request(record_ids, "fuzz-good").SerializeToString()


GZIP_DEFECTS = ("two members", "truncated", "trailing garbage", "trailing zeros", "mutated")
gzip_defects = st.tuples(
    st.sampled_from(GZIP_DEFECTS),
    st.integers(2, 40),
    st.floats(0.01, 0.99),
    st.lists(mutation, min_size=1, max_size=4),
)


def bad_gzip(ledger: Ledger, defect: tuple[str, int, float, list]) -> tuple[list[str], bytes]:
    """(ids, gzip body) for a gzip body that is not exactly one well-formed gzip member."""
    kind, records, where, mutations = defect
    record_ids, raw = good_request_bytes(ledger, records)
    whole = gzip.compress(raw)
    if kind == "two members":
        more_ids, more = good_request_bytes(ledger, 3)
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


# --- sending and judging -------------------------------------------------------------------


@dataclass
class Sent:
    """One request and its answer. `ids` are its records' ids (empty when unknown: a
    mutant); `refusable`: decoding may fail (invalid UTF-8, mutants, bad gzip or JSON)."""

    transport: str
    ids: list[str]
    answer: Answer
    what: str = ""


@dataclass
class Ledger:
    """Every request the fuzzer sent and what it was told, for the check after the run."""

    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=itertools.count)

    def new_ids(self, prefix: str, n: int) -> list[str]:
        with self._lock:
            return [f"{prefix}-{next(self._ids)}" for _ in range(n)]

    def add(self, sent: Sent) -> Sent:
        with self._lock:
            self.sent.append(sent)
        return sent

    @property
    def requests(self) -> int:
        return len(self.sent)


def answer_problem(answer: Answer, records: int | None) -> str | None:
    """What is wrong with `answer` to a request of `records` records (None: unknown), or None."""
    if answer.ok:
        if answer.rejected and not any(word in answer.message.lower() for word in FIELD_WORDS):
            return f"partial_success names no field: {answer.message!r}"
        if records is not None and not 0 <= answer.rejected <= records:
            return f"{answer.rejected} records rejected of {records}"
        return None
    if answer.status in ("INVALID_ARGUMENT", "400"):
        return None if answer.message else f"{answer.status} without a message"
    return f"{answer.transport} answered {answer.status}: {answer.message[:300]!r}"


class Sender:
    """Sends to one running sealer over either receiver, retrying after back-pressure."""

    def __init__(self, grpc_endpoint: str, http_url: str, ledger: Ledger) -> None:
        self._grpc = GrpcClient(grpc_endpoint)
        self._grpc_endpoint, self._http_url = grpc_endpoint, http_url
        self._local = threading.local()
        self._http_clients: list[HttpClient] = []
        self.ledger = ledger

    def _http(self) -> HttpClient:
        """One keep-alive session per sending thread."""
        client = getattr(self._local, "http", None)
        if client is None:
            client = self._local.http = HttpClient(self._http_url)
            self._http_clients.append(client)
        return client

    def send(self, transport: str, body: bytes, *, encoded: bool = False) -> Answer:
        for _ in range(30):
            if transport == "grpc":
                answer = self._grpc.send(body, timeout=60)
            else:
                answer = self._http().send(body, transport, timeout=60, encoded=encoded)
            if not answer.backpressure:
                return answer
            time.sleep(0.2)
        return answer

    def send_spec(self, transport: str, spec: RequestSpec) -> tuple[Sent, str | None]:
        """Send `spec` (JSON only when it decodes: JSON cannot carry invalid UTF-8)."""
        ids = self.ledger.new_ids("fz", spec.records)
        body = spec.encode(ids)
        if transport == "http/json":
            try:
                body = otlp_json(ExportLogsServiceRequest.FromString(body))
            except DecodeError:
                transport = "http/protobuf"
        answer = self.send(transport, body)
        sent = self.ledger.add(Sent(transport, ids, answer))
        return sent, answer_problem(answer, spec.records)

    def canary(self, transport: str) -> tuple[Sent, str | None]:
        """Three good audit records from another producer: they must be sealed, always."""
        ids = self.ledger.new_ids("canary", 3)
        request = audit_request(ids, "canary")
        body = otlp_json(request) if transport == "http/json" else request.SerializeToString()
        answer = self.send(transport, body)
        sent = self.ledger.add(Sent(transport, ids, answer, "canary"))
        problem = None if answer.accepted_all else f"canary over {transport} got {answer}"
        return sent, problem

    def close(self) -> None:
        """Close every connection (before the sealer is stopped: see the README's campaign
        section on idle OTLP/HTTP keep-alive connections)."""
        self._grpc.close()
        for client in self._http_clients:
            client.close()


def stored_problems(ledger: Ledger, stored: dict[str, int]) -> list[str]:
    """Per request with known ids: all answered OK are stored once; a partial answer stores
    exactly the records it did not reject; a refused request stores none."""
    problems = []
    for sent in ledger.sent:
        if not sent.ids:
            continue
        copies = [stored.get(i, 0) for i in sent.ids]
        if any(n > 1 for n in copies):
            problems.append(f"{sent.what or 'request'} over {sent.transport}: a record stored twice")
        kept = sum(1 for n in copies if n)
        want = len(sent.ids) - sent.answer.rejected if sent.answer.ok else 0
        if kept != want:
            problems.append(
                f"{sent.what or 'request'} over {sent.transport} answered {sent.answer.status} "
                f"(rejected {sent.answer.rejected}): {kept} of {len(sent.ids)} stored, want {want}"
            )
    return problems
