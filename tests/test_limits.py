"""The store's limits (backend/limits.py), each at its edge: the largest value that seals and
verifies, the smallest that is refused for its record alone, with a message naming the field.
And the reserved otel_audit.* prefix wherever a producer could put it."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from backend import limits, native
from backend.readers import verify_origin
from backend.store import Store
from otel_audit.entry import decode_entry, varint
from otel_audit.errors import StoreDataError
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline
from sealer.prepare import Prepared, RequestError, Rules, prepare_request
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
    pipeline = Pipeline(store, LogState.empty(ORIGIN))
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


# -- what protobuf refuses: the whole request, not retryable ---------------------------------


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


def test_a_body_nested_past_protobufs_limit_is_a_bad_request() -> None:
    # Built by hand: protobuf will not build a message deeper than it parses.
    body = AnyValue(string_value="x").SerializeToString()
    for _ in range(_deepest_body() + 1):
        array = b"\x0a" + _len(body) + body  # ArrayValue.values (1)
        body = b"\x2a" + _len(array) + array  # AnyValue.array_value (5)
    record_bytes = b"\x2a" + _len(body) + body  # LogRecord.body (5)
    scope = b"\x12" + _len(record_bytes) + record_bytes  # ScopeLogs.log_records (2)
    resource = b"\x12" + _len(scope) + scope  # ResourceLogs.scope_logs (2)
    raw = b"\x0a" + _len(resource) + resource  # ExportLogsServiceRequest.resource_logs (1)
    with pytest.raises(RequestError, match="not a valid OTLP"):
        prepare_request(raw, Rules())


def _len(payload: bytes) -> bytes:
    return varint(len(payload))


def test_invalid_utf8_in_a_string_field_is_a_bad_request() -> None:
    record = LogRecord(severity_text="ok").SerializeToString().replace(b"ok", b"\xff\xfe")
    scope = b"\x12" + _len(record) + record
    resource = b"\x12" + _len(scope) + scope
    with pytest.raises(RequestError, match="UTF-8"):
        prepare_request(b"\x0a" + _len(resource) + resource, Rules())


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


# -- the engine's data error codes -----------------------------------------------------------


def test_the_data_error_codes_are_the_engines(tmp_path) -> None:
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    try:
        names = store.client.query(
            "SELECT arrayJoin({c:Array(UInt32)}) AS c, errorCodeToName(c)",
            parameters={"c": sorted(limits.DATA_ERRORS)},
        ).result_rows
    finally:
        store.close()
    assert dict(names) == limits.DATA_ERRORS


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
