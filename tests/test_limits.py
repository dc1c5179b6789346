"""The store's limits (backend/limits.py), each at its edge: the largest value that seals and
verifies, the smallest that is refused for its record alone, with a message naming the field.
And the reserved otel_audit.* prefix wherever a producer could put it."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from backend import limits, native
from backend.log_verifier import verify_origin
from backend.store import Store
from otel_audit.entry import decode_entry
from otel_audit.errors import RequestError, StoreDataError
from otel_audit.note import SignerKey
from otel_audit.varint import varint
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import Prepared, Rules, prepare_request
from sealer.salvage import salvage
from sealer.state import LogState

ORIGIN = "limits.example/audit"
LATEST_S = limits.LATEST_TIMESTAMP_NS  # 2106-02-07T06:28:15.999999999Z
RECORD = "resource_logs[0].scope_logs[0].log_records[1]"  # the second record: the first is good


def request(**fields: object) -> ExportLogsServiceRequest:
    """A request of three records: a good one, one with `fields`, a good one."""
    req = ExportLogsServiceRequest()
    scope_logs = req.resource_logs.add().scope_logs.add()
    scope_logs.log_records.add(body=AnyValue(string_value="before"))
    scope_logs.log_records.add(body=AnyValue(string_value="edge"), **fields)  # type: ignore[arg-type]
    scope_logs.log_records.add(body=AnyValue(string_value="after"))
    return req


def prepare(req: ExportLogsServiceRequest) -> Prepared:
    return prepare_request(req.SerializeToString(), Rules())


# (fields of the record at the edge: the largest value that seals) and (the smallest refused,
# the field the message names, and words of the message).
EDGES = [
    pytest.param(
        {"time_unix_nano": LATEST_S},
        {"time_unix_nano": LATEST_S + 1},
        "time_unix_nano: 4294967296000000000 ns is after 2106-02-07T06:28:15Z",
        id="time_unix_nano",
    ),
    pytest.param(
        {"observed_time_unix_nano": LATEST_S},  # no time: the observed time is its Timestamp
        {"observed_time_unix_nano": LATEST_S + 1},
        "observed_time_unix_nano: 4294967296000000000 ns is after 2106-02-07T06:28:15Z, the latest "
        "time the store's TimestampTime column can hold",
        id="observed_time_unix_nano_as_timestamp",
    ),
    pytest.param(
        {"time_unix_nano": 1, "observed_time_unix_nano": limits.LATEST_DATETIME64_NS},
        {"time_unix_nano": 1, "observed_time_unix_nano": limits.LATEST_DATETIME64_NS + 1},
        "observed_time_unix_nano: 9223372036854775808 ns is after 2262-04-11T23:47:16Z, the latest "
        "time the store's ObservedTimestamp column",
        id="observed_time_unix_nano",
    ),
    pytest.param(
        {"time_unix_nano": LATEST_S},  # the same edge, refused from the top of fixed64
        {"time_unix_nano": 2**64 - 1},
        "time_unix_nano: 18446744073709551615 ns is after 2106-02-07T06:28:15Z, the latest time the "
        "store's TimestampTime column can hold",
        id="time_unix_nano_max",
    ),
    pytest.param(
        {"severity_number": 255},
        {"severity_number": 256},
        "severity_number: 256 is outside 0..255, what the store's SeverityNumber column (UInt8)",
        id="severity_number_high",
    ),
    pytest.param(
        {"severity_number": 0},
        {"severity_number": -1},
        "severity_number: -1 is outside 0..255",
        id="severity_number_negative",
    ),
    pytest.param(
        {"trace_id": bytes(range(1, 17))},
        {"trace_id": bytes(range(1, 16))},
        "trace_id: 15 bytes; OTLP trace_ids are 16 bytes",
        id="trace_id",
    ),
    pytest.param(
        {"trace_id": bytes(range(1, 17))},
        {"trace_id": bytes(range(1, 18))},
        "trace_id: 17 bytes",
        id="trace_id_long",
    ),
    pytest.param(
        {"span_id": bytes(range(1, 9))},
        {"span_id": bytes(range(1, 8))},
        "span_id: 7 bytes; OTLP span_ids are 8 bytes",
        id="span_id",
    ),
]


@pytest.mark.parametrize(("good", "bad", "message"), EDGES)
def test_the_smallest_value_past_a_limit_is_refused_for_its_record_alone(good, bad, message) -> None:
    prepared = prepare(request(**bad))
    assert prepared.count == 2  # the records beside it are sealed
    assert len(prepared.rejected) == 1
    rejection = prepared.rejected[0]
    assert rejection.message.startswith(f"{RECORD}.")
    assert message in rejection.message
    assert prepare(request(**good)).rejected == []


def test_the_largest_values_within_the_limits_seal_and_verify(tmp_path) -> None:
    """Every edge value that is accepted is committed by the real store and verifies."""
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    key = SignerKey.generate(ORIGIN)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    try:
        for edge in EDGES:
            prepared = prepare(request(**edge.values[0]))
            assert prepared.rejected == [] and pipeline.seal(prepared) >= 0
        pipeline.stop()
        Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600).stop()
        report = verify_origin(store, key.verifier(), tmp_path / "anchors")
        assert report.ok and report.records == 3 * len(EDGES), report.findings
        stored = store.client.query(
            "SELECT toUnixTimestamp64Nano(Timestamp), toUnixTimestamp(TimestampTime), "
            "toUnixTimestamp64Nano(ObservedTimestamp), SeverityNumber FROM otel_audit.logs "
            "WHERE Body = 'edge' ORDER BY Seq"
        ).result_rows
    finally:
        store.close()
    assert stored[0][:2] == (LATEST_S, 2**32 - 1)  # the last nanosecond of 2106-02-07T06:28:15Z
    assert stored[1][:3] == (LATEST_S, 2**32 - 1, LATEST_S)
    assert stored[2][2] == limits.LATEST_DATETIME64_NS
    assert stored[4][3] == 255


def test_a_record_with_both_times_unset_takes_the_seal_time() -> None:
    """Timestamp 0 is "unset" in OTLP: not a 1970 time to check, the seal time replaces it."""
    prepared = prepare(request(time_unix_nano=0, observed_time_unix_nano=0))
    assert prepared.rejected == [] and list(prepared.timestamps) == [0, 0, 0]


def test_trace_flags_keep_only_the_trace_flags_byte() -> None:
    """Not a limit: OTLP reserves bits 8-31 of flags; the column holds bits 0-7, the entry all."""
    prepared = prepare(request(flags=2**32 - 1))
    assert prepared.rejected == [] and prepared.count == 3


# -- what protobuf refuses: only the piece that holds it -------------------------------------


def _nested(depth: int) -> AnyValue:
    value = AnyValue(string_value="x")
    for _ in range(depth):
        outer = AnyValue()
        outer.array_value.values.add().CopyFrom(value)
        value = outer
    return value


def _deepest_body() -> int:
    """The deepest array nesting of a body that protobuf's parser takes in a request."""
    depth = 1
    while True:
        req = request()
        req.resource_logs[0].scope_logs[0].log_records[1].body.CopyFrom(_nested(depth + 1))
        try:
            ExportLogsServiceRequest.FromString(req.SerializeToString())
        except Exception:
            return depth
        depth += 1


def test_the_deepest_body_protobuf_parses_seals_and_its_entry_decodes_again() -> None:
    depth = _deepest_body()
    assert depth > 20  # protobuf's limit of 100 messages, two per array level
    req = request()
    req.resource_logs[0].scope_logs[0].log_records[1].body.CopyFrom(_nested(depth))
    prepared = prepare(req)
    assert prepared.rejected == [] and prepared.count == 3
    frame, befores, afters = prepared.groups[0]
    entry = frame.entry(befores[1], b"", afters[1])  # the entry is one level shallower
    with pytest.raises(Exception, match="seal attributes"):  # it parses; only the seal is missing
        decode_entry(entry)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field, built by hand: protobuf will not build a message it
    would refuse to parse."""
    return tag + varint(len(payload)) + payload


def _raw_request(*resources: bytes) -> bytes:
    return b"".join(_field(b"\x0a", resource) for resource in resources)  # resource_logs (1)


def _raw_resource(
    *records: bytes, resource: bytes = b"", scope: bytes = b"", schema_url: bytes = b""
) -> bytes:
    """A ResourceLogs of one ScopeLogs of `records` (serialized LogRecords)."""
    scope_logs = (_field(b"\x0a", scope) if scope else b"") + b"".join(_field(b"\x12", r) for r in records)
    scope_logs += _field(b"\x1a", schema_url) if schema_url else b""
    return (_field(b"\x0a", resource) if resource else b"") + _field(b"\x12", scope_logs)


def _good(body: str) -> bytes:
    return LogRecord(body=AnyValue(string_value=body)).SerializeToString()


def _too_deep() -> bytes:
    """A record whose body is one array level deeper than protobuf parses in a request."""
    body = AnyValue(string_value="x").SerializeToString()
    for _ in range(_deepest_body() + 1):
        body = _field(b"\x2a", _field(b"\x0a", body))  # AnyValue.array_value (5), values (1)
    return _field(b"\x2a", body)  # LogRecord.body (5)


def _bad_utf8() -> bytes:
    return LogRecord(severity_text="ok").SerializeToString().replace(b"ok", b"\xff\xfe")


@pytest.mark.parametrize(
    ("bad", "words"), [(_bad_utf8, "UTF-8"), (_too_deep, "MaxDepth")], ids=["invalid_utf8", "too_deep"]
)
def test_a_record_protobuf_cannot_decode_is_refused_alone(bad, words) -> None:
    """One such record in a Collector's request of many producers' records refuses only it."""
    raw = _raw_request(_raw_resource(_good("before"), bad(), _good("after")), _raw_resource(_good("other")))
    with pytest.raises(Exception, match=words):
        ExportLogsServiceRequest.FromString(raw)  # protobuf refuses the whole request
    prepared = prepare_request(raw, Rules())
    assert prepared.count == 3
    assert [r.reason for r in prepared.rejected] == ["undecodable"]
    assert prepared.rejected[0].message.startswith(f"{RECORD}: cannot be decoded: ")
    assert words in prepared.rejected[0].message
    clean = prepare_request(
        _raw_request(_raw_resource(_good("before"), _good("after")), _raw_resource(_good("other"))), Rules()
    )
    assert prepared.groups == clean.groups and prepared.columns == clean.columns  # sealed the same


@pytest.mark.parametrize(
    ("part", "where"),
    [
        ({"resource": _field(b"\x0a", _field(b"\x0a", b"\xff"))}, "resource_logs[0]: cannot be decoded"),
        ({"scope": _field(b"\x0a", b"\xc3")}, "resource_logs[0].scope_logs[0]: cannot be decoded"),
        ({"schema_url": b"\xff"}, "resource_logs[0].scope_logs[0]: cannot be decoded"),
    ],
    ids=["resource_attribute_key", "scope_name", "scope_schema_url"],
)
def test_a_resource_or_scope_protobuf_cannot_decode_refuses_the_records_under_it(part, where) -> None:
    raw = _raw_request(_raw_resource(_good("a"), _good("b"), **part), _raw_resource(_good("other")))
    prepared = prepare_request(raw, Rules())
    assert prepared.count == 1 and len(prepared.rejected) == 2
    assert all(r.message.startswith(where) for r in prepared.rejected)
    assert "every record under it is refused" in prepared.rejected[0].message


def test_a_request_whose_frame_is_broken_is_refused_whole() -> None:
    raw = _raw_request(_raw_resource(_good("a")))
    with pytest.raises(RequestError, match="not a valid OTLP"):
        prepare_request(raw[:-1], Rules())


def test_a_broken_request_with_bytes_outside_its_frame_is_refused_whole() -> None:
    """Found by the fuzzer (bench/fuzz.py, a request with its first 3 bytes deleted): the
    records sat in a field the frame does not define, the one resource left was broken, and
    the request was answered OK with nothing refused and nothing sealed."""
    good = _raw_request(
        _raw_resource(_good("a"), resource=_field(b"\x0a", KeyValue(key="k").SerializeToString()))
    )
    with pytest.raises(RequestError, match="not a valid OTLP"):
        prepare_request(good[3:], Rules())
    stray = _raw_request(_raw_resource(_too_deep())) + _field(b"\x12", _raw_resource(_good("b")))
    with pytest.raises(RequestError, match="not a valid OTLP"):
        prepare_request(stray, Rules())


def test_salvaging_a_valid_request_gives_what_protobuf_parses() -> None:
    """The frame's field numbers are logs.proto's: a valid request (here with its resource
    split in two occurrences, which protobuf merges) comes out the same."""
    req = request(time_unix_nano=5, trace_id=bytes(range(16)))
    req.resource_logs[0].schema_url = "https://example/resource"
    req.resource_logs[0].scope_logs[0].schema_url = "https://example/scope"
    req.resource_logs[0].scope_logs[0].scope.name = "scope"
    key_values = [_field(b"\x0a", KeyValue(key=k).SerializeToString()) for k in "ab"]  # attributes (1)
    split = _raw_resource(_good("x"), resource=key_values[0]) + _field(b"\x0a", key_values[1])
    for raw_request in (req.SerializeToString(), _raw_request(split)):
        rebuilt, broken = salvage(raw_request)
        assert broken == {} and rebuilt == ExportLogsServiceRequest.FromString(raw_request)
    assert [kv.key for kv in rebuilt.resource_logs[0].resource.attributes] == ["a", "b"]


# -- the reserved otel_audit. prefix ---------------------------------------------------------


def test_a_reserved_key_in_the_resource_refuses_every_record_of_that_resource() -> None:
    req = request()
    req.resource_logs[0].resource.attributes.add(key="otel_audit.producer").value.string_value = "ceo"
    req.resource_logs[0].scope_logs.add().log_records.add(body=AnyValue(string_value="second scope"))
    other = req.resource_logs.add()
    other.scope_logs.add().log_records.add(body=AnyValue(string_value="other resource"))
    prepared = prepare(req)
    assert prepared.count == 1  # only the other resource's record
    assert len(prepared.rejected) == 4
    assert {r.reason for r in prepared.rejected} == {"reserved_attribute"}
    messages = {r.message for r in prepared.rejected}
    assert messages == {
        "resource_logs[0].resource.attributes: key 'otel_audit.producer' uses the reserved "
        "otel_audit. prefix, which only the sealer may set; every record under it is refused"
    }


def test_a_reserved_key_in_the_scope_refuses_every_record_of_that_scope() -> None:
    req = request()
    req.resource_logs[0].scope_logs[0].scope.attributes.add(key="otel_audit.seq").value.int_value = 1
    req.resource_logs[0].scope_logs.add().log_records.add(body=AnyValue(string_value="other scope"))
    prepared = prepare(req)
    assert prepared.count == 1 and len(prepared.rejected) == 3
    assert prepared.rejected[0].message.startswith(
        "resource_logs[0].scope_logs[0].scope.attributes: key 'otel_audit.seq' uses the reserved"
    )


def test_a_reserved_event_name_refuses_its_record() -> None:
    prepared = prepare(request(event_name="otel_audit.seal"))
    assert prepared.count == 2 and len(prepared.rejected) == 1
    assert prepared.rejected[0].message.startswith(
        f"{RECORD}.event_name: 'otel_audit.seal' uses the reserved"
    )
    assert prepare(request(event_name="otel_audit")).rejected == []  # only the prefix is reserved


def test_a_reserved_record_attribute_names_its_record() -> None:
    req = request()
    req.resource_logs[0].scope_logs[0].log_records[1].attributes.add(key="otel_audit.origin")
    prepared = prepare(req)
    assert prepared.count == 2
    assert prepared.rejected[0].message.startswith(f"{RECORD}.attributes: key 'otel_audit.origin'")


@pytest.mark.parametrize(
    ("type_name", "largest"),
    [
        ("DateTime", limits.TIMESTAMP_TIME_MAX_S),
        ("DateTime64(9)", limits.LATEST_DATETIME64_NS),
        ("UInt8", limits.UINT8_MAX),
    ],
)
def test_the_limits_are_the_column_types_own(type_name: str, largest: int) -> None:
    """The block encoder takes each limit and refuses one more, as a StoreDataError (which
    the pipeline turns into a refusal of that batch alone)."""
    columns = native.Columns(("Value",), (type_name,))
    assert columns.encode([[largest]])
    with pytest.raises(StoreDataError, match="column Value"):
        columns.encode([[largest + 1]])
