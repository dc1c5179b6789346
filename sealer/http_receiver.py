"""OTLP/HTTP: POST /v1/logs with binary protobuf or OTLP JSON, optionally gzip-compressed.

The same pipeline as OTLP/gRPC (sealer/otlp.py). Answers, per the OTLP specification:

- 200 with an ExportLogsServiceResponse (partial_success when records were rejected), in the
  request's Content-Type;
- 400 with a google.rpc.Status body for a request that cannot be decoded (not retryable);
- 401 when the request carries no producer identity this listener accepts (sealer/auth.py);
- 413 for a body (or gzip-decompressed body) over the size limit; 415 for another media type;
- 429 (queue full) or 503 (store down, sealer stopping) with Retry-After: the OTel exporters
  retry those, so nothing is buffered without bound and nothing is dropped.

OTLP JSON differs from protobuf's canonical JSON in one way that matters here: trace and span
ids are hex, not base64. They are converted before parsing; everything else (lowerCamelCase
keys, enums as numbers, 64-bit integers as strings or numbers, unknown fields ignored) is what
google.protobuf.json_format accepts.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import tempfile
import threading
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_audit.errors import AuditError

from .auth import Authenticator, TlsFiles, Unauthenticated
from .otlp import Intake, export
from .pipeline import BackpressureError, Pipeline
from .prepare import RequestError

log = logging.getLogger(__name__)

PATH = "/v1/logs"
PROTOBUF, JSON = "application/x-protobuf", "application/json"
RETRY_AFTER_SECONDS = 1


class BadRequest(Exception):
    """The request cannot be decoded; the message says why (sent back in a Status)."""


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
                            raise BadRequest(f"{key} {value!r} is not hex") from None


def _list(parent: object, *keys: str) -> list[dict]:
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [item for item in value if isinstance(item, dict)]
    return []


def request_bytes(body: bytes, media_type: str) -> bytes:
    """The request as protobuf bytes, what the sealing workers take: a protobuf body as it
    came (the worker decodes it, and refuses it if it cannot), OTLP JSON parsed here."""
    if media_type == PROTOBUF:
        return body
    request = ExportLogsServiceRequest()
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not an OTLP JSON ExportLogsServiceRequest: {exc}") from None
    return request.SerializeToString()


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress, refusing to produce more than `limit` bytes (a small bomb stays small)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise _TooLarge(f"decompressed body exceeds {limit} bytes")
    return out


class _TooLarge(Exception):
    pass


class HttpReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        address: str,
        *,
        authenticator: Authenticator,
        intake: Intake,
        tls: TlsFiles | None = None,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        host, _, port = address.rpartition(":")
        receiver = self

        class Handler(_Handler):
            owner = receiver

        self._pipeline = pipeline
        self._authenticator = authenticator
        self._intake = intake
        self._max = max_message_bytes
        try:
            self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot listen for OTLP/HTTP on {address}: {exc}") from None
        if tls is not None:
            self._server.socket = _tls_context(tls).wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )  # the handshake happens in the request's thread, not in the accept loop
        self._server.daemon_threads = False  # stop() waits for requests in flight
        self._server.block_on_close = True
        self.port = self._server.server_address[1]
        self.address = f"{host or '127.0.0.1'}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, then wait for the requests in flight to be answered."""
        self._server.shutdown()
        self._server.server_close()

    def handle(
        self,
        body: bytes,
        media_type: str,
        encoding: str,
        authorization: str | None,
        certificate: bytes | None,
    ) -> tuple[int, Message, dict[str, str]]:
        """(HTTP status, response message, extra headers) for one POST to /v1/logs."""
        try:
            producer = self._authenticator.producer(authorization, certificate)
        except Unauthenticated as exc:
            self._intake.rejected("unauthenticated")
            challenge = {"WWW-Authenticate": "Bearer"}
            return HTTPStatus.UNAUTHORIZED, _status(code_pb2.UNAUTHENTICATED, str(exc)), challenge
        try:
            if encoding == "gzip":
                body = _gunzip(body, self._max)
            elif encoding not in ("", "identity"):
                raise BadRequest(f"Content-Encoding {encoding!r} is not supported; use gzip or none")
            return (
                HTTPStatus.OK,
                export(self._pipeline, self._intake, request_bytes(body, media_type), producer),
                {},
            )
        except (BadRequest, RequestError) as exc:
            self._intake.rejected("bad_request")
            return HTTPStatus.BAD_REQUEST, _status(code_pb2.INVALID_ARGUMENT, str(exc)), {}
        except _TooLarge as exc:
            return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _status(code_pb2.INVALID_ARGUMENT, str(exc)), {}
        except BackpressureError as exc:
            self._intake.rejected("queue_full")
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            return HTTPStatus.TOO_MANY_REQUESTS, _status(code_pb2.RESOURCE_EXHAUSTED, str(exc)), retry
        except AuditError as exc:
            self._intake.rejected("unavailable")
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            message = f"records not sealed, retry: {exc}"
            return HTTPStatus.SERVICE_UNAVAILABLE, _status(code_pb2.UNAVAILABLE, message), retry
        except Exception as exc:  # never hang or crash a caller on our bug
            log.exception("OTLP/HTTP export failed")
            return HTTPStatus.INTERNAL_SERVER_ERROR, _status(code_pb2.INTERNAL, f"sealer error: {exc}"), {}


def _tls_context(tls: TlsFiles) -> ssl.SSLContext:
    cert, key, client_ca = tls.read()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as scratch:  # load_cert_chain reads files only
        cert_file, key_file = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)
    if client_ca is not None:  # mutual TLS, as on the gRPC listener
        context.load_verify_locations(cadata=client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


class _Handler(BaseHTTPRequestHandler):
    owner: HttpReceiver
    protocol_version = "HTTP/1.1"  # keep-alive: exporters send many requests on one connection
    server_version = "otel-audit"

    def do_POST(self) -> None:
        media_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        reply_type = media_type if media_type in (PROTOBUF, JSON) else PROTOBUF
        if self.path.split("?")[0] != PATH:
            self.close_connection = True  # the body is not read
            self._error(HTTPStatus.NOT_FOUND, f"OTLP logs are accepted at {PATH}", reply_type)
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required", reply_type)
            return
        if int(length) > self.owner._max:
            self.close_connection = True  # the body is not read
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body exceeds {self.owner._max} bytes", reply_type
            )
            return
        body = self.rfile.read(int(length))
        if media_type not in (PROTOBUF, JSON):
            message = f"Content-Type {media_type!r} is not supported; use {PROTOBUF} or {JSON}"
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, message, reply_type)
            return
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        certificate = None
        if isinstance(self.connection, ssl.SSLSocket):
            certificate = self.connection.getpeercert(binary_form=True)
        authorization = self.headers.get("Authorization")
        status, message, headers = self.owner.handle(body, media_type, encoding, authorization, certificate)
        self._send(status, message, reply_type, headers)

    def _error(self, status: int, message: str, reply_type: str) -> None:
        self._send(status, _status(code_pb2.INVALID_ARGUMENT, message), reply_type, {})

    def _send(self, status: int, message: Message, media_type: str, headers: dict[str, str]) -> None:
        if media_type == JSON:
            payload = json_format.MessageToJson(message, indent=None).encode()
        else:
            payload = message.SerializeToString()
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)
