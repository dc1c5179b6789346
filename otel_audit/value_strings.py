"""OTLP values as the strings the Collector's ClickHouse exporter stores.

Body and the attribute maps of otel_audit.logs hold strings; a non-string OTLP value becomes
the string pdata's ``Value.AsString()`` makes of it, so our columns read exactly as the
exporter's ``otel_logs`` would (DESIGN.md, "Formats").
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from math import isfinite

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


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
