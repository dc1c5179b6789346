"""An OTLP/HTTP request body, decoded exactly, to the protobuf bytes the sealing workers take.

Nothing here may seal a prefix or a guess: a body is accepted only when every byte of it is
accounted for, and everything else is a RequestError (400) naming the problem.

- gzip (RFC 1952): the body must be exactly one gzip member, what every OTLP exporter and the
  Collector send. A stream cut short, a CRC or length that does not match, and any byte
  after the member (a second member, which RFC 1952 allows, or trailing garbage) are refused
  rather than partly read; decoding many members exactly would cost time quadratic in their
  number. Output is bounded while inflating: past the size limit the body is BodyTooLarge
  (413), so a small bomb stays small.
- OTLP JSON: must be a JSON object of the ExportLogsServiceRequest shape. A top-level null,
  number, string or array, invalid UTF-8, a key given twice in one object (which value
  would be sealed?), NaN/Infinity (not JSON) and nesting deeper than Python's parser can
  follow are each refused with a message. Trace and span ids are hex in OTLP JSON, not
  base64: they are converted before json_format parses the rest (lowerCamelCase keys, enums
  as numbers, 64-bit integers as strings or numbers, unknown fields ignored).
"""

from __future__ import annotations

import base64
import json
import zlib

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_audit.errors import BodyTooLarge, RequestError

PROTOBUF, JSON = "application/x-protobuf", "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)
GZIP, IDENTITY = "gzip", "identity"
ENCODINGS = {"": IDENTITY, IDENTITY: IDENTITY, GZIP: GZIP, "x-gzip": GZIP}  # RFC 9110 8.4.1.3


def encoding_of(header: str) -> str:
    """The content coding named by a Content-Encoding header: gzip or identity."""
    value = header.strip().lower()
    if value not in ENCODINGS:
        raise RequestError(f"Content-Encoding {header!r} is not supported; use gzip or none")
    return ENCODINGS[value]


def request_bytes(body: bytes, media_type: str, encoding: str, limit: int) -> bytes:
    """The request as protobuf bytes: a protobuf body as it came (the worker decodes it, and
    refuses it if it cannot), OTLP JSON parsed here; gzip inflated first, to at most `limit`."""
    if encoding == GZIP:
        body = gunzip(body, limit)
    if media_type == PROTOBUF:
        return body
    return json_to_protobuf(body)


def gunzip(body: bytes, limit: int) -> bytes:
    """The one gzip member that is `body`, inflated; never more than `limit` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing; CRC and length checked
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(f"decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise RequestError("body is not valid gzip: the stream is truncated")
    if inflater.unused_data:
        raise RequestError(
            f"body is not valid gzip: {len(inflater.unused_data)} bytes follow the end of the gzip "
            "stream (a second member or trailing data); send the body as one gzip member"
        )
    return out


def json_to_protobuf(body: bytes) -> bytes:
    document = parse_json(body)
    if not isinstance(document, dict):
        raise RequestError(
            f"body is a JSON {_json_type(document)}; an OTLP JSON ExportLogsServiceRequest is an "
            'object such as {"resourceLogs": [...]}'
        )
    hex_ids_to_base64(document)
    request = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except RecursionError:
        raise RequestError("body is nested too deeply for an OTLP JSON ExportLogsServiceRequest") from None
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        raise RequestError(f"body is not an OTLP JSON ExportLogsServiceRequest: {exc}") from None
    return request.SerializeToString()


def parse_json(body: bytes) -> object:
    """The JSON document in `body`, strictly: UTF-8, no repeated keys, no NaN/Infinity."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"body is not JSON: not UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise RequestError("body is not JSON this receiver accepts: nested too deeply") from None
    except ValueError as exc:
        raise RequestError(f"body is not JSON: {exc}") from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return document


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value (OTLP JSON writes it as the string {name!r})")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array"


def hex_ids_to_base64(document: object) -> None:
    """OTLP JSON carries traceId/spanId as hex; json_format expects base64 for bytes fields."""
    for resource_logs in _list(document, "resourceLogs", "resource_logs"):
        for scope_logs in _list(resource_logs, "scopeLogs", "scope_logs"):
            for record in _list(scope_logs, "logRecords", "log_records"):
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    value = record.get(key)
                    if isinstance(value, str) and value:
                        try:
                            record[key] = base64.b64encode(bytes.fromhex(value)).decode()
                        except ValueError:
                            raise RequestError(f"{key} {value!r} is not hex") from None


def _list(parent: object, *keys: str) -> list[dict]:
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []
