"""Tests for otel_audit.entry: sealed OTLP log records and the columns derived from them.

Requests are built by hand from the OTLP protobuf classes, the way the gRPC receiver gets
them; protobuf's own deterministic serializer is the reference for the entry bytes.
"""

from __future__ import annotations

import base64

import pytest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

import otel_audit.entry
from otel_audit.columns import DERIVED_COLUMNS
from otel_audit.derivation import derived_row
from otel_audit.entry import (
    ATTR_MASKING,
    ATTR_ORIGIN,
    ATTR_PRODUCER,
    ATTR_SEALED_AT,
    ATTR_SEQ,
    Context,
    Seal,
    SealEncoder,
    decode_entry,
    reserved_attribute,
    split_record,
)
from otel_audit.errors import FormatError
from otel_audit.value_strings import any_value_as_string, attributes_as_map

from .test_value_strings import _kvlist

SEAL = Seal("example.com/audit", 41, 1_700_000_002_000_000_000)
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")


def _s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _kv(key: str, value: AnyValue | str) -> KeyValue:
    return KeyValue(key=key, value=_s(value) if isinstance(value, str) else value)


def _col(row: tuple, name: str) -> object:
    assert len(row) == len(DERIVED_COLUMNS)
    return row[DERIVED_COLUMNS.index(name)]


def _resource() -> Resource:
    return Resource(
        attributes=[_kv("service.name", "checkout"), _kv("host.name", "h1")],
        dropped_attributes_count=2,
    )


def _scope() -> InstrumentationScope:
    return InstrumentationScope(name="audit", version="1.2.3", attributes=[_kv("k", "v")])


def _record(**overrides: object) -> LogRecord:
    fields: dict[str, object] = {
        "time_unix_nano": 1_700_000_000_500_000_000,
        "observed_time_unix_nano": 1_700_000_001_000_000_000,
        "severity_number": 13,  # SEVERITY_NUMBER_WARN
        "severity_text": "WARN",
        "body": _s("user alice logged in"),
        "attributes": [_kv("user", "alice"), _kv("count", AnyValue(int_value=3))],
        "flags": 0x101,
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "event_name": "login",
    }
    fields.update(overrides)
    return LogRecord(**fields)  # type: ignore[arg-type]


def _with_unknown_fields(record: LogRecord) -> LogRecord:
    """A record as a newer producer might send it: fields this protobuf does not know, at the
    top level (field 99, and field 6 with the wrong wire type) and inside the body."""
    body = AnyValue(string_value="b").SerializeToString() + b"\xa0\x06\x07"  # field 100: 7
    raw = LogRecord(body=AnyValue.FromString(body)).SerializeToString()
    raw = record.SerializeToString() + raw + b"\x98\x06\x05" + b"\x30\x01"  # field 99: 5; 6 as varint
    parsed = LogRecord.FromString(raw)
    assert b"\x98\x06\x05" in parsed.SerializeToString(deterministic=True)  # kept, not dropped
    return parsed


def _request(
    record: LogRecord,
    resource: Resource | None = None,
    resource_schema: str = "",
    scope: InstrumentationScope | None = None,
    scope_schema: str = "",
) -> tuple[ResourceLogs, ScopeLogs]:
    """A ResourceLogs as received; fields left as None are not set at all."""
    scope_kwargs: dict[str, object] = {"schema_url": scope_schema, "log_records": [record]}
    if scope is not None:
        scope_kwargs["scope"] = scope
    resource_kwargs: dict[str, object] = {"schema_url": resource_schema}
    if resource is not None:
        resource_kwargs["resource"] = resource
    resource_logs = ResourceLogs(scope_logs=[ScopeLogs(**scope_kwargs)], **resource_kwargs)
    return resource_logs, resource_logs.scope_logs[0]


def seal_attributes(seal: Seal) -> bytes:
    return SealEncoder(seal.origin, seal.sealed_at_ns, seal.producer, seal.masking)(seal.seq)


def seal_record(context: Context, record: LogRecord, seal: Seal) -> tuple[bytes, tuple]:
    """One record's entry and derived columns, from the pieces the sealing workers and the
    sealer each make (sealer/prepare.py, sealer/pipeline.py)."""
    before, after = split_record(record)
    entry = context.frame.entry(before, seal_attributes(seal), after)
    own = attributes_as_map(record.attributes)
    return entry, derived_row(
        context.shared, record, own, seal.origin, seal.seq, seal.sealed_at_ns, seal.producer
    )


def add_seal(record: LogRecord, seal: Seal) -> None:
    """The reference for the seal: the attributes appended with protobuf's own classes."""
    attrs = record.attributes
    attrs.add(key=ATTR_ORIGIN).value.string_value = seal.origin
    attrs.add(key=ATTR_SEQ).value.int_value = seal.seq
    attrs.add(key=ATTR_SEALED_AT).value.int_value = seal.sealed_at_ns
    if seal.producer:
        attrs.add(key=ATTR_PRODUCER).value.string_value = seal.producer
    if seal.masking:
        attrs.add(key=ATTR_MASKING).value.string_value = seal.masking


def _seal(
    resource_logs: ResourceLogs, scope_logs: ScopeLogs, seal: Seal = SEAL
) -> tuple[bytes, tuple, LogRecord]:
    """seal_record's entry and row, and the record sealed by the reference (add_seal)."""
    record = scope_logs.log_records[0]
    original = record.SerializeToString()
    entry, row = seal_record(Context(resource_logs, scope_logs), record, seal)
    assert record.SerializeToString() == original  # the producer's record is left as it was
    sealed = LogRecord()
    sealed.CopyFrom(record)
    add_seal(sealed, seal)
    return entry, row, sealed


def _reference_entry(resource_logs: ResourceLogs, scope_logs: ScopeLogs, sealed: LogRecord) -> bytes:
    """Protobuf's own serialization of ResourceLogs{resource, [ScopeLogs{scope, [sealed]}]}."""
    scope_kwargs: dict[str, object] = {"schema_url": scope_logs.schema_url, "log_records": [sealed]}
    if scope_logs.HasField("scope"):
        scope_kwargs["scope"] = scope_logs.scope
    resource_kwargs: dict[str, object] = {"schema_url": resource_logs.schema_url}
    if resource_logs.HasField("resource"):
        resource_kwargs["resource"] = resource_logs.resource
    message = ResourceLogs(scope_logs=[ScopeLogs(**scope_kwargs)], **resource_kwargs)
    return message.SerializeToString(deterministic=True)


ENTRY_CASES = [
    pytest.param(
        {
            "resource": _resource(),
            "resource_schema": "https://opentelemetry.io/schemas/1.26.0",
            "scope": _scope(),
            "scope_schema": "https://opentelemetry.io/schemas/1.25.0",
        },
        _record(),
        id="with-schema-urls",
    ),
    pytest.param({"resource": _resource(), "scope": _scope()}, _record(), id="without-schema-urls"),
    pytest.param(
        {"resource_schema": "r", "scope": _scope(), "scope_schema": "s"},
        _record(),
        id="no-resource",
    ),
    pytest.param(
        {"resource": _resource(), "resource_schema": "r", "scope_schema": "s"},
        _record(),
        id="no-scope",
    ),
    pytest.param({}, _record(), id="no-resource-no-scope"),
    pytest.param({}, LogRecord(), id="empty-record"),
    pytest.param(
        {"resource": Resource(attributes=[_kv("service.name", "x" * 200)]), "scope": _scope()},
        _record(body=_s("b" * 20_000), attributes=[_kv("a" * 300, "v" * 300)]),
        id="long-fields-multibyte-lengths",
    ),
    pytest.param(
        {"resource": _resource(), "scope": _scope()},
        _record(
            body=AnyValue(
                kvlist_value=KeyValueList(
                    values=[
                        _kv("z", AnyValue(double_value=1.5)),
                        _kv("a", AnyValue(bytes_value=b"\x00\xff")),
                    ]
                )
            )
        ),
        id="kvlist-body",
    ),
    pytest.param({}, _with_unknown_fields(_record()), id="unknown-fields-top-and-nested"),
    pytest.param(
        {},
        _record(body=AnyValue.FromString(_s("b").SerializeToString() + b"\xa0\x06\x07")),
        id="unknown-fields-nested-only",
    ),
    pytest.param({}, _record(attributes=[]), id="no-attributes"),
    pytest.param(
        {},
        _record(attributes=[_kv("k", _s("\x32\x00" * 40))], event_name="\x32\x00"),
        id="seal-marker-bytes-in-values",
    ),
    pytest.param(
        {},
        _record(
            dropped_attributes_count=2**32 - 1,
            flags=2**32 - 1,
            trace_id=b"t" * 200,
            span_id=b"s" * 3,
            event_name="\u00e9" * 100,
        ),
        id="fields-after-attributes-extreme",
    ),
]


@pytest.mark.parametrize(("request_fields", "record"), ENTRY_CASES)
def test_entry_equals_protobuf_serialization(request_fields: dict, record: LogRecord) -> None:
    resource_logs, scope_logs = _request(record, **request_fields)
    entry, _, sealed = _seal(resource_logs, scope_logs)
    assert entry == _reference_entry(resource_logs, scope_logs, sealed)
    # And the entry is a ResourceLogs any OTLP tool reads back to the same message.
    parsed = ResourceLogs.FromString(entry)
    assert parsed.scope_logs[0].log_records[0] == sealed
    assert parsed.resource == resource_logs.resource
    assert parsed.scope_logs[0].scope == scope_logs.scope
    assert parsed.schema_url == resource_logs.schema_url
    assert parsed.scope_logs[0].schema_url == scope_logs.schema_url


@pytest.mark.parametrize(("request_fields", "record"), ENTRY_CASES)
def test_entry_reencodes_identically(request_fields: dict, record: LogRecord) -> None:
    resource_logs, scope_logs = _request(record, **request_fields)
    entry, _, _ = _seal(resource_logs, scope_logs)
    parsed = ResourceLogs.FromString(entry)
    assert parsed.SerializeToString(deterministic=True) == entry


def test_entry_omits_explicitly_set_empty_resource_and_scope() -> None:
    # Protobuf writes a set-but-empty submessage as tag + zero length; the entry is canonical
    # and leaves it out, exactly as if the producer had not set the field.
    resource_logs, scope_logs = _request(_record(), resource=Resource(), scope=InstrumentationScope())
    assert resource_logs.HasField("resource") and scope_logs.HasField("scope")
    entry, row, sealed = _seal(resource_logs, scope_logs)
    unset_rl, unset_sl = _request(_record())
    assert entry == _reference_entry(unset_rl, unset_sl, sealed)
    assert entry != _reference_entry(resource_logs, scope_logs, sealed)
    assert decode_entry(entry) == (SEAL, row)


@pytest.mark.parametrize(("request_fields", "record"), ENTRY_CASES)
def test_decode_entry_returns_seal_and_row_of_seal_record(request_fields: dict, record: LogRecord) -> None:
    resource_logs, scope_logs = _request(record, **request_fields)
    entry, row, _ = _seal(resource_logs, scope_logs)
    assert decode_entry(entry) == (SEAL, row)


def test_seal_record_full_row() -> None:
    resource_logs, scope_logs = _request(
        _record(), resource=_resource(), resource_schema="rs", scope=_scope(), scope_schema="ss"
    )
    _, row, _ = _seal(resource_logs, scope_logs)
    assert dict(zip(DERIVED_COLUMNS, row)) == {
        "Origin": "example.com/audit",
        "Seq": 41,
        "SealedAt": 1_700_000_002_000_000_000,
        "Timestamp": 1_700_000_000_500_000_000,
        "TimestampTime": 1_700_000_000,
        "ObservedTimestamp": 1_700_000_001_000_000_000,
        "TraceId": "5b8efff798038103d269b633813fc60c",
        "SpanId": "eee19b7ec3c1b174",
        "TraceFlags": 0x01,
        "SeverityText": "WARN",
        "SeverityNumber": 13,
        "ServiceName": "checkout",
        "Body": "user alice logged in",
        "ResourceSchemaUrl": "rs",
        "ResourceAttributes": {"service.name": "checkout", "host.name": "h1"},
        "ScopeSchemaUrl": "ss",
        "ScopeName": "audit",
        "ScopeVersion": "1.2.3",
        "ScopeAttributes": {"k": "v"},
        "LogAttributes": {"user": "alice", "count": "3"},
        "EventName": "login",
        "Producer": "",
    }


@pytest.mark.parametrize(
    "attributes",
    [
        [],
        [_kv("user", "alice")],
        [
            _kv("user", "alice"),
            _kv("n", AnyValue(int_value=-1)),
            _kv("ok", AnyValue(bool_value=False)),
        ],
    ],
)
def test_seal_attributes_are_last_and_excluded_from_log_attributes(
    attributes: list[KeyValue],
) -> None:
    resource_logs, scope_logs = _request(_record(attributes=attributes))
    entry, row, sealed = _seal(resource_logs, scope_logs)
    record = ResourceLogs.FromString(entry).scope_logs[0].log_records[0]
    assert record == sealed
    assert len(record.attributes) == len(attributes) + 3
    assert list(record.attributes[: len(attributes)]) == attributes
    tail = record.attributes[-3:]
    assert [kv.key for kv in tail] == [ATTR_ORIGIN, ATTR_SEQ, ATTR_SEALED_AT]
    assert [ATTR_ORIGIN, ATTR_SEQ, ATTR_SEALED_AT] == [
        "otel_audit.origin",
        "otel_audit.seq",
        "otel_audit.sealed_at",
    ]
    assert tail[0].value == AnyValue(string_value=SEAL.origin)
    assert tail[1].value == AnyValue(int_value=SEAL.seq)
    assert tail[2].value == AnyValue(int_value=SEAL.sealed_at_ns)
    expected = {kv.key: any_value_as_string(kv.value) for kv in attributes}
    assert _col(row, "LogAttributes") == expected
    assert _col(decode_entry(entry)[1], "LogAttributes") == expected


@pytest.mark.parametrize("seq", [0, 1, 127, 128, 16383, 16384, 2**35, 2**63 - 1])
@pytest.mark.parametrize(
    ("producer", "masking"), [("", ""), ("CN=orders,O=Acme", ""), ("", "sha256:ab"), ("p" * 200, "m")]
)
def test_seal_attributes_equal_protobuf_encoding(seq: int, producer: str, masking: str) -> None:
    seal = Seal("example.com/" + "o" * 150, seq, 1_700_000_002_000_000_000, producer, masking)
    reference = LogRecord()
    add_seal(reference, seal)
    assert seal_attributes(seal) == reference.SerializeToString(deterministic=True)
    encoder = SealEncoder(seal.origin, seal.sealed_at_ns, producer, masking)
    assert encoder(seq) == seal_attributes(seal)
    zero = LogRecord()
    add_seal(zero, Seal("o", 0, 0))
    assert zero.attributes[1].value.WhichOneof("value") == "int_value"  # set even when 0
    assert seal_attributes(Seal("o", 0, 0)) == zero.SerializeToString(deterministic=True)


# Each field after the attributes alone, at the edges of its encoded length.
_TAIL_FIELDS = [
    {"dropped_attributes_count": 1},
    {"dropped_attributes_count": 128},
    {"flags": 1},
    {"trace_id": b"\x00"},
    {"trace_id": b"t" * 127},
    {"trace_id": b"t" * 128},
    {"span_id": b"s" * 8},
    {"observed_time_unix_nano": 1},
    {"event_name": "e"},
    {"event_name": "\u2603" * 43},  # 129 bytes in UTF-8
]


@pytest.mark.parametrize(
    "fields", _TAIL_FIELDS, ids=lambda f: "-".join(f"{k}={len(str(v))}" for k, v in f.items())
)
@pytest.mark.parametrize("attributes", [[], [_kv("user", "alice")]], ids=["no-attributes", "attributes"])
def test_split_record_knows_the_length_of_every_field_after_the_attributes(
    fields: dict, attributes: list[KeyValue]
) -> None:
    record = LogRecord(body=_s("b"), attributes=attributes, **fields)
    before, after = split_record(record)
    assert before + after == record.SerializeToString(deterministic=True)
    assert len(after) == len(LogRecord(**fields).SerializeToString(deterministic=True))


@pytest.mark.parametrize("tail_is_known", [True, False], ids=["arithmetic", "protobuf-marker"])
@pytest.mark.parametrize(("request_fields", "record"), ENTRY_CASES)
def test_split_record_is_the_serialization_around_the_seal(
    request_fields: dict, record: LogRecord, tail_is_known: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert otel_audit.entry._TAIL_IS_KNOWN  # this protobuf's LogRecord ends at field 12
    monkeypatch.setattr(otel_audit.entry, "_TAIL_IS_KNOWN", tail_is_known)
    before, after = split_record(record)
    assert before + after == record.SerializeToString(deterministic=True)
    sealed = LogRecord()
    sealed.CopyFrom(record)
    add_seal(sealed, SEAL)
    assert before + seal_attributes(SEAL) + after == sealed.SerializeToString(deterministic=True)


# -- derived columns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trace_id", "span_id", "expected_trace", "expected_span"),
    [
        (TRACE_ID, SPAN_ID, "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"),
        (bytes(16), bytes(8), "", ""),
        (b"", b"", "", ""),
        (
            bytes(15) + b"\x01",
            bytes(7) + b"\xab",
            "00000000000000000000000000000001",
            "00000000000000ab",
        ),
        (b"\xab" * 16, bytes(8), "ab" * 16, ""),
    ],
)
def test_trace_and_span_ids(trace_id: bytes, span_id: bytes, expected_trace: str, expected_span: str) -> None:
    entry, row, _ = _seal(*_request(_record(trace_id=trace_id, span_id=span_id)))
    assert (_col(row, "TraceId"), _col(row, "SpanId")) == (expected_trace, expected_span)
    assert decode_entry(entry)[1] == row


@pytest.mark.parametrize(
    ("time", "observed", "sealed_at", "expected"),
    [
        (
            1_600_000_000_999_999_999,
            1_700_000_000_000_000_000,
            1_800_000_000_000_000_000,
            1_600_000_000_999_999_999,
        ),
        (0, 1_700_000_000_000_000_001, 1_800_000_000_000_000_000, 1_700_000_000_000_000_001),
        (0, 0, 1_800_000_000_500_000_000, 1_800_000_000_500_000_000),
        (0, 0, 0, 0),
    ],
)
def test_timestamp_falls_back_to_observed_then_sealed_at(
    time: int, observed: int, sealed_at: int, expected: int
) -> None:
    record = _record(time_unix_nano=time, observed_time_unix_nano=observed)
    entry, row, _ = _seal(*_request(record), seal=Seal("o", 0, sealed_at))
    assert _col(row, "Timestamp") == expected
    assert _col(row, "TimestampTime") == expected // 1_000_000_000
    assert _col(row, "ObservedTimestamp") == observed
    assert _col(row, "SealedAt") == sealed_at
    assert decode_entry(entry)[1] == row


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (Resource(attributes=[_kv("service.name", "checkout")]), "checkout"),
        (Resource(attributes=[_kv("host.name", "h1"), _kv("service.name", "api")]), "api"),
        (Resource(attributes=[_kv("service.name", AnyValue(int_value=7))]), "7"),
        (Resource(attributes=[_kv("service.namespace", "shop")]), ""),
        (None, ""),
    ],
)
def test_service_name_comes_from_resource(resource: Resource | None, expected: str) -> None:
    entry, row, _ = _seal(*_request(_record(), resource=resource))
    assert _col(row, "ServiceName") == expected
    assert decode_entry(entry)[1] == row


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(0, 0), (1, 1), (0x101, 1), (0xFFFFFFFF, 0xFF)],
)
def test_trace_flags_are_the_low_byte(flags: int, expected: int) -> None:
    _, row, _ = _seal(*_request(_record(flags=flags)))
    assert _col(row, "TraceFlags") == expected


# -- decode_entry failures ----------------------------------------------------------------


def _entry_of(*records: LogRecord, scopes: int = 1) -> bytes:
    message = ResourceLogs(
        resource=_resource(),
        scope_logs=[ScopeLogs(scope=_scope(), log_records=list(records)) for _ in range(scopes)],
    )
    return message.SerializeToString(deterministic=True)


def _sealed_record(**overrides: object) -> LogRecord:
    record = _record(**overrides)
    add_seal(record, SEAL)
    return record


def _with_seal_values(origin: AnyValue, seq: AnyValue, sealed_at: AnyValue) -> LogRecord:
    return _record(
        attributes=[
            _kv("user", "alice"),
            KeyValue(key=ATTR_ORIGIN, value=origin),
            KeyValue(key=ATTR_SEQ, value=seq),
            KeyValue(key=ATTR_SEALED_AT, value=sealed_at),
        ]
    )


GOOD_ORIGIN, GOOD_INT = _s("o"), AnyValue(int_value=1)


def test_decode_entry_accepts_the_hand_built_valid_entry() -> None:
    # The failure cases below are built the same way; this one shows the builder is sound.
    seal, row = decode_entry(_entry_of(_with_seal_values(GOOD_ORIGIN, GOOD_INT, GOOD_INT)))
    assert seal == Seal("o", 1, 1)
    assert _col(row, "LogAttributes") == {"user": "alice"}
    assert decode_entry(_entry_of(_sealed_record()))[0] == SEAL


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        pytest.param(b"\xff\xff\xff", r"entry is not an OTLP ResourceLogs", id="garbage"),
        pytest.param(b"\x0a\x05ab", r"entry is not an OTLP ResourceLogs", id="truncated"),
        pytest.param(
            _entry_of(_sealed_record())[:-3],
            r"entry is not an OTLP ResourceLogs",
            id="cut-short-entry",
        ),
        pytest.param(b"", r"exactly one ScopeLogs with one LogRecord", id="empty"),
        pytest.param(
            _entry_of(_sealed_record(), _sealed_record()),
            r"exactly one ScopeLogs with one LogRecord",
            id="two-records",
        ),
        pytest.param(_entry_of(), r"exactly one ScopeLogs with one LogRecord", id="no-records"),
        pytest.param(
            _entry_of(_sealed_record(), scopes=2),
            r"exactly one ScopeLogs with one LogRecord",
            id="two-scopes",
        ),
        pytest.param(
            _entry_of(_sealed_record(), scopes=0),
            r"exactly one ScopeLogs with one LogRecord",
            id="no-scopes",
        ),
        pytest.param(_entry_of(_record()), r"lacks the otel_audit seal attributes", id="unsealed"),
        pytest.param(
            _entry_of(_record(attributes=[])),
            r"lacks the otel_audit seal attributes",
            id="no-attributes",
        ),
        pytest.param(
            _entry_of(
                _record(
                    attributes=[
                        KeyValue(key=ATTR_SEQ, value=GOOD_INT),
                        KeyValue(key=ATTR_SEALED_AT, value=GOOD_INT),
                    ]
                )
            ),
            r"lacks the otel_audit seal attributes",
            id="origin-missing",
        ),
        pytest.param(
            _entry_of(
                _record(
                    attributes=[
                        KeyValue(key=ATTR_SEQ, value=GOOD_INT),
                        KeyValue(key=ATTR_ORIGIN, value=GOOD_ORIGIN),
                        KeyValue(key=ATTR_SEALED_AT, value=GOOD_INT),
                    ]
                )
            ),
            r"lacks the otel_audit seal attributes",
            id="seal-out-of-order",
        ),
        pytest.param(
            _entry_of(_record(attributes=[*_sealed_record().attributes, _kv("late", "x")])),
            r"lacks the otel_audit seal attributes",
            id="attribute-after-seal",
        ),
        pytest.param(
            _entry_of(_with_seal_values(AnyValue(int_value=1), GOOD_INT, GOOD_INT)),
            r"seal attributes have the wrong value types",
            id="origin-int",
        ),
        pytest.param(
            _entry_of(_with_seal_values(GOOD_ORIGIN, _s("1"), GOOD_INT)),
            r"seal attributes have the wrong value types",
            id="seq-string",
        ),
        pytest.param(
            _entry_of(_with_seal_values(GOOD_ORIGIN, GOOD_INT, AnyValue(double_value=1.0))),
            r"seal attributes have the wrong value types",
            id="sealed-at-double",
        ),
        pytest.param(
            _entry_of(_with_seal_values(GOOD_ORIGIN, GOOD_INT, AnyValue())),
            r"seal attributes have the wrong value types",
            id="sealed-at-empty",
        ),
        pytest.param(
            _entry_of(_sealed_record(attributes=[_kv("user", "a"), _kv("otel_audit.seq", "99")])),
            r"reserved otel_audit\.\* attribute outside the seal",
            id="reserved-key-outside-seal",
        ),
        pytest.param(
            _entry_of(_sealed_record(attributes=[_kv("otel_audit.anything", "x")])),
            r"reserved otel_audit\.\* attribute outside the seal",
            id="other-reserved-key",
        ),
    ],
)
def test_decode_entry_rejects(entry: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        decode_entry(entry)


def test_sealing_a_record_with_a_reserved_key_yields_an_undecodable_entry() -> None:
    # The receiver refuses such records (reserved_attribute) before they reach the sealer.
    record = _record(attributes=[_kv("otel_audit.seq", "forged")])
    assert reserved_attribute(attributes_as_map(record.attributes)) == "otel_audit.seq"
    entry, _, _ = _seal(*_request(record))
    with pytest.raises(FormatError, match=r"reserved otel_audit\.\* attribute outside the seal"):
        decode_entry(entry)


# -- reserved_attribute -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], None),
        (["user", "count"], None),
        (["otel_audit"], None),  # the prefix includes the dot
        (["otel_auditx.seq"], None),
        (["OTEL_AUDIT.seq"], None),  # keys are case-sensitive
        (["x.otel_audit.seq"], None),
        (["otel_audit.seq"], "otel_audit.seq"),
        (["user", "otel_audit.origin"], "otel_audit.origin"),
        (["otel_audit."], "otel_audit."),
        (["a", "otel_audit.x", "otel_audit.y"], "otel_audit.x"),  # the first one
    ],
)
def test_reserved_attribute(keys: list[str], expected: str | None) -> None:
    record = LogRecord(attributes=[_kv(k, "v") for k in keys])
    assert reserved_attribute(attributes_as_map(record.attributes)) == expected


def test_body_column_uses_any_value_as_string() -> None:
    body = _kvlist(("b", AnyValue(bytes_value=b"hi")), ("a", AnyValue(double_value=1.5)))
    entry, row, _ = _seal(*_request(_record(body=body)))
    assert _col(row, "Body") == '{"a":1.5,"b":"' + base64.b64encode(b"hi").decode() + '"}'
    assert decode_entry(entry)[1] == row


def test_producer_is_sealed_last_and_read_back() -> None:
    resource_logs, scope_logs = _request(_record())
    seal = Seal("example.com/audit", 7, 1, producer="CN=orders,O=Acme")
    entry, row, _ = _seal(resource_logs, scope_logs, seal)
    assert dict(zip(DERIVED_COLUMNS, row))["Producer"] == "CN=orders,O=Acme"
    assert decode_entry(entry) == (seal, row)
    parsed = ResourceLogs.FromString(entry).scope_logs[0].log_records[0]
    assert [kv.key for kv in parsed.attributes][-4:] == [ATTR_ORIGIN, ATTR_SEQ, ATTR_SEALED_AT, ATTR_PRODUCER]
    parsed.attributes[-1].value.string_value = ""
    tampered = Context(*_request(parsed)).frame.entry(parsed.SerializeToString(deterministic=True))
    with pytest.raises(FormatError, match="producer"):
        decode_entry(tampered)
