"""A request that protobuf refuses as a whole, taken apart so that only what is broken is refused.

A Collector sends many producers' records in one Export request, so a single record that
protobuf will not parse (invalid UTF-8 in a `string` field, which proto3 forbids and upb
checks; a value nested past its limit of 100 messages) must not refuse every record beside
it. When the whole request fails to parse, `salvage` reads its frame with every resource,
scope and record left as bytes, then parses each of those alone, each wrapped as deep as it
sits in a request (so a record that passes here parses in a request of its own, and its
entry, one level shallower, parses again in `verify`). What fails is reported by its path;
the request is rebuilt with an empty message in its place, so that every other path stays
what it was. Only a request whose frame itself is broken is refused whole.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_audit.varint import varint


def _frame_type() -> type[Message]:
    """ExportLogsServiceRequest down to its records, with the field numbers of logs.proto and
    every leaf as repeated bytes: repeated, because protobuf merges a message field that
    occurs more than once (and a string field keeps its last occurrence)."""
    file = descriptor_pb2.FileDescriptorProto(name="otel_audit/salvage.proto", package="otel_audit.salvage")
    file.syntax = "proto3"
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    as_bytes = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    as_message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    shapes = {
        "Request": [("resource_logs", 1, ".otel_audit.salvage.ResourceLogs")],
        "ResourceLogs": [
            ("resource", 1, ""),
            ("scope_logs", 2, ".otel_audit.salvage.ScopeLogs"),
            ("schema_url", 3, ""),
        ],
        "ScopeLogs": [("scope", 1, ""), ("log_records", 2, ""), ("schema_url", 3, "")],
    }
    for name, fields in shapes.items():
        message = file.message_type.add(name=name)
        for field_name, number, type_name in fields:
            field = message.field.add(name=field_name, number=number, label=repeated, type=as_bytes)
            if type_name:
                field.type, field.type_name = as_message, type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("otel_audit.salvage.Request"))


_FRAME = _frame_type()


# Where each piece sits in a request: resource_logs (1), then resource (1) or scope_logs (2),
# then scope (1) or log_records (2).
_RESOURCE, _SCOPE, _RECORD = (b"\x0a", b"\x0a"), (b"\x0a", b"\x12", b"\x0a"), (b"\x0a", b"\x12", b"\x12")


def salvage(raw: bytes) -> tuple[ExportLogsServiceRequest, dict[str, str]]:
    """The request rebuilt from what parses, and why each piece that does not was left out,
    by its path: ``resource_logs[r]`` (its resource or schema URL), ``...scope_logs[s]`` (its
    scope or schema URL) or ``...log_records[i]``. DecodeError if even the frame is broken."""
    frame = _FRAME.FromString(raw)
    _refuse_unplaced_bytes(frame)
    request = ExportLogsServiceRequest()
    broken: dict[str, str] = {}
    for r, resource_part in enumerate(frame.resource_logs):  # type: ignore[attr-defined]
        resource_path = f"resource_logs[{r}]"
        resource_logs = request.resource_logs.add()
        try:
            if resource_part.resource:  # the field's presence is kept as it came
                alone = _alone(b"".join(resource_part.resource), _RESOURCE)
                resource_logs.resource.CopyFrom(alone.resource_logs[0].resource)
            resource_logs.schema_url = _last_string(resource_part.schema_url)
        except (DecodeError, UnicodeDecodeError) as exc:
            broken[resource_path] = f"cannot be decoded: {exc}"
            resource_logs.Clear()
        for s, scope_part in enumerate(resource_part.scope_logs):
            scope_path = f"{resource_path}.scope_logs[{s}]"
            scope_logs = resource_logs.scope_logs.add()
            try:
                if scope_part.scope:
                    alone = _alone(b"".join(scope_part.scope), _SCOPE)
                    scope_logs.scope.CopyFrom(alone.resource_logs[0].scope_logs[0].scope)
                scope_logs.schema_url = _last_string(scope_part.schema_url)
            except (DecodeError, UnicodeDecodeError) as exc:
                broken[scope_path] = f"cannot be decoded: {exc}"
                scope_logs.Clear()
            for i, record_bytes in enumerate(scope_part.log_records):
                record = scope_logs.log_records.add()
                try:
                    alone = _alone(record_bytes, _RECORD)
                except DecodeError as exc:
                    broken[f"{scope_path}.log_records[{i}]"] = f"cannot be decoded: {exc}"
                    continue
                record.CopyFrom(alone.resource_logs[0].scope_logs[0].log_records[0])
    return request, broken


def _refuse_unplaced_bytes(frame: Message) -> None:
    """DecodeError if any part of a broken request sits where no resource, scope or record is.

    A request that parses whole may carry fields newer than our logs.proto; one that does not
    parse cannot be trusted that far: its records may be among those bytes (a cut or shifted
    frame), and refusing only the pieces we can place would answer OK for records never sealed.
    """
    parts = [("the request", frame)]
    for r, resource_part in enumerate(frame.resource_logs):  # type: ignore[attr-defined]
        parts.append((f"resource_logs[{r}]", resource_part))
        parts += [
            (f"resource_logs[{r}].scope_logs[{s}]", s_part)
            for s, s_part in enumerate(resource_part.scope_logs)
        ]
    for path, part in parts:
        if len(UnknownFieldSet(part)):
            raise DecodeError(
                f"{path} holds fields logs.proto does not define, and the request does not parse"
            )


def _alone(payload: bytes, tags: tuple[bytes, ...]) -> ExportLogsServiceRequest:
    """A request holding only `payload`, where `tags` place it (innermost last)."""
    for tag in reversed(tags):
        payload = tag + varint(len(payload)) + payload
    return ExportLogsServiceRequest.FromString(payload)


def _last_string(parts: list[bytes]) -> str:
    """A proto3 string field from its occurrences: the last one, which must be UTF-8."""
    return parts[-1].decode() if parts else ""
