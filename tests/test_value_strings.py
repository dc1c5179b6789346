"""Tests for otel_audit.value_strings: OTLP values as the Collector's ClickHouse exporter
writes them (pdata's Value.AsString())."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_audit.value_strings import any_value_as_string, attributes_as_map


def _s(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _array(*values: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(values)))


def _kvlist(*pairs: tuple[str, AnyValue]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in pairs]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(_s("hello"), "hello", id="string"),
        pytest.param(_s(""), "", id="empty-string"),
        pytest.param(_s("caf\u00e9 \u2603"), "caf\u00e9 \u2603", id="unicode-string"),
        pytest.param(AnyValue(bool_value=True), "true", id="true"),
        pytest.param(AnyValue(bool_value=False), "false", id="false"),
        pytest.param(AnyValue(int_value=42), "42", id="int"),
        pytest.param(AnyValue(int_value=0), "0", id="zero"),
        pytest.param(AnyValue(int_value=-17), "-17", id="negative-int"),
        pytest.param(AnyValue(int_value=-(2**63)), "-9223372036854775808", id="min-int64"),
        pytest.param(AnyValue(double_value=1.5), "1.5", id="double-1.5"),
        pytest.param(AnyValue(double_value=2.0), "2", id="double-2.0"),
        pytest.param(AnyValue(double_value=0.0), "0", id="double-zero"),
        pytest.param(AnyValue(double_value=-0.0), "-0", id="double-negative-zero"),
        pytest.param(AnyValue(double_value=-2.5), "-2.5", id="double-negative"),
        pytest.param(AnyValue(double_value=100.0), "100", id="double-100"),
        pytest.param(AnyValue(double_value=0.1), "0.1", id="double-0.1"),
        pytest.param(AnyValue(double_value=1e20), "100000000000000000000", id="double-1e20"),
        pytest.param(AnyValue(double_value=1e-7), "0.0000001", id="double-1e-7"),
        pytest.param(AnyValue(double_value=123456.789), "123456.789", id="double-fraction"),
        pytest.param(AnyValue(double_value=math.nan), "NaN", id="nan"),
        pytest.param(AnyValue(double_value=math.inf), "+Inf", id="inf"),
        pytest.param(AnyValue(double_value=-math.inf), "-Inf", id="negative-inf"),
        pytest.param(AnyValue(bytes_value=b"\x00\x01\xfe\xff"), "AAH+/w==", id="bytes"),
        pytest.param(AnyValue(bytes_value=b""), "", id="empty-bytes"),
        pytest.param(AnyValue(), "", id="empty"),
        pytest.param(_array(), "[]", id="empty-array"),
        pytest.param(
            _array(
                _s("a"),
                AnyValue(int_value=1),
                AnyValue(bool_value=True),
                AnyValue(double_value=1.5),
            ),
            '["a",1,true,1.5]',
            id="array",
        ),
        pytest.param(
            _array(AnyValue(), AnyValue(bytes_value=b"\xff"), _s("caf\u00e9")),
            '[null,"/w==","caf\u00e9"]',
            id="array-empty-bytes-unicode",
        ),
        pytest.param(_kvlist(), "{}", id="empty-kvlist"),
        pytest.param(
            _kvlist(("z", _s("last")), ("a", AnyValue(int_value=-1)), ("m", AnyValue(bool_value=False))),
            '{"a":-1,"m":false,"z":"last"}',
            id="kvlist-sorted-keys",
        ),
        pytest.param(
            _kvlist(("outer", _kvlist(("y", _array(_s("x"))), ("b", AnyValue())))),
            '{"outer":{"b":null,"y":["x"]}}',
            id="nested-kvlist",
        ),
        pytest.param(
            _array(_kvlist(("q", _s('say "hi"\n')))),
            '[{"q":"say \\"hi\\"\\n"}]',
            id="json-escaping",
        ),
    ],
)
def test_any_value_as_string(value: AnyValue, expected: str) -> None:
    assert any_value_as_string(value) == expected


def test_attributes_as_map_is_any_value_as_string_of_each_value() -> None:
    """attributes_as_map takes a shortcut for non-empty strings; every kind of value, empty
    strings and repeated keys included, must come out as any_value_as_string gives it."""
    values = [
        _s("text"),
        _s(""),
        AnyValue(),
        AnyValue(int_value=0),
        AnyValue(int_value=-7),
        AnyValue(bool_value=False),
        AnyValue(double_value=0.1),
        AnyValue(bytes_value=b""),
        AnyValue(bytes_value=b"\x00\xff"),
        _array(_s("a"), AnyValue(int_value=1)),
        _kvlist(("k", _s("v"))),
    ]
    record = LogRecord()
    for i, value in enumerate(values):
        record.attributes.add(key=f"k{i}").value.CopyFrom(value)
    record.attributes.add(key="k0").value.int_value = 5  # a repeated key: the last one wins
    expected = {f"k{i}": any_value_as_string(v) for i, v in enumerate(values)} | {"k0": "5"}
    assert attributes_as_map(record.attributes) == expected
