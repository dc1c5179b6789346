"""One OTLP Export request over either receiver, and its answer as a value.

The campaign sends raw bytes (gRPC with no serializer, HTTP bodies as they are) so that it
can send what no SDK would build: invalid UTF-8, unknown fields, broken encodings. Answers
are read the way an OTel exporter reads them (OTLP specification, "Failures"): OK or 200
with an optional partial_success; a status code and message otherwise; RetryInfo or
Retry-After marking back-pressure.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

import grpc
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
PROTOBUF, JSON = "application/x-protobuf", "application/json"
TRANSPORTS = ("grpc", "http/protobuf", "http/protobuf+gzip", "http/json")
UNREACHABLE = "unreachable"  # no answer at all: connection refused, reset, or timed out


@dataclass(frozen=True)
class Answer:
    """What the sealer said. `status` is "OK", a gRPC code name ("INVALID_ARGUMENT"), an HTTP
    status as text ("400"), or UNREACHABLE; `backpressure` is True when the answer asked the
    client to come back later (gRPC RetryInfo, HTTP 429)."""

    transport: str
    status: str
    message: str = ""
    rejected: int = 0
    backpressure: bool = False

    @property
    def ok(self) -> bool:
        return self.status in ("OK", "200")

    @property
    def accepted_all(self) -> bool:
        return self.ok and self.rejected == 0


class GrpcClient:
    """A raw-bytes LogsService/Export caller on one channel."""

    def __init__(self, endpoint: str) -> None:
        self._channel = grpc.insecure_channel(endpoint)
        self._export = self._channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)

    def send(self, body: bytes, timeout: float = 30) -> Answer:
        try:
            raw = self._export(body, timeout=timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            details = exc.details() or ""  # type: ignore[attr-defined]
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not _is_answer(
                exc
            ):
                return Answer("grpc", UNREACHABLE, details)
            return Answer("grpc", code.name, details, backpressure=_has_retry_info(exc))
        response = ExportLogsServiceResponse.FromString(raw)
        partial = response.partial_success
        return Answer("grpc", "OK", partial.error_message, partial.rejected_log_records)

    def close(self) -> None:
        self._channel.close()


def _is_answer(exc: grpc.RpcError) -> bool:
    """True when the sealer itself answered (ours carry "records not sealed"), False for
    grpcio's own transport errors (connection refused, reset, deadline)."""
    return "records not sealed" in (exc.details() or "")  # type: ignore[attr-defined]


def _has_retry_info(exc: grpc.RpcError) -> bool:
    for key, value in exc.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            return any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
    return False


class HttpClient:
    """POST /v1/logs on one keep-alive session; `transport` picks the encoding."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._session = requests.Session()

    def send(self, body: bytes, transport: str, timeout: float = 30, *, encoded: bool = False) -> Answer:
        """`body` is protobuf bytes for "http/protobuf[+gzip]" and JSON text for "http/json";
        with `encoded` it is sent exactly as given (already gzipped, say)."""
        media = JSON if transport == "http/json" else PROTOBUF
        headers = {"Content-Type": media}
        if transport.endswith("+gzip"):
            headers["Content-Encoding"] = "gzip"
            if not encoded:
                body = gzip.compress(body)
        try:
            reply = self._session.post(self._url, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            self._session.close()
            self._session = requests.Session()
            return Answer(transport, UNREACHABLE, str(exc))
        backpressure = reply.status_code == 429
        if reply.status_code != 200:
            return Answer(
                transport, str(reply.status_code), _status_message(reply), backpressure=backpressure
            )
        if reply.headers.get("Content-Type", "").startswith(JSON):
            partial = json.loads(reply.content).get("partialSuccess", {})
            rejected = int(partial.get("rejectedLogRecords", 0))
            return Answer(transport, "200", partial.get("errorMessage", ""), rejected)
        response = ExportLogsServiceResponse.FromString(reply.content)
        partial_pb = response.partial_success
        return Answer(transport, "200", partial_pb.error_message, partial_pb.rejected_log_records)

    def close(self) -> None:
        self._session.close()


def _status_message(reply: requests.Response) -> str:
    """The google.rpc.Status message of an error answer, in either content type."""
    try:
        if reply.headers.get("Content-Type", "").startswith(JSON):
            return str(json.loads(reply.content).get("message", ""))
        return status_pb2.Status.FromString(reply.content).message
    except Exception:  # an answer that is no Status at all: show what came
        return reply.text[:200]


def otlp_json(request: object) -> bytes:
    """An ExportLogsServiceRequest as OTLP JSON: protobuf's JSON mapping with trace and span
    ids in hex instead of base64 (OTLP specification, "JSON Protobuf Encoding")."""
    import base64

    from google.protobuf import json_format

    document = json_format.MessageToDict(request)  # type: ignore[arg-type]
    for resource_logs in document.get("resourceLogs", []):
        for scope_logs in resource_logs.get("scopeLogs", []):
            for record in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(document).encode()
