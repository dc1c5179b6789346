"""OTLP/HTTP: POST /v1/logs with binary protobuf or OTLP JSON, optionally gzip-compressed.

The same pipeline as OTLP/gRPC (sealer/intake.py), and the same table from a refused call to
its answer (sealer/outcomes.py). Answers, per the OTLP specification:

- 200 with an ExportLogsServiceResponse (partial_success when records were rejected), in the
  request's Content-Type;
- 400 with a google.rpc.Status body for a request that cannot be decoded (not retryable), and
  for a Content-Encoding other than gzip or none (as the Collector answers);
- 401 when the request carries no producer identity this listener accepts (sealer/auth.py);
- 404 for another path, 405 for another method, 408 when the body does not arrive in time;
- 413 for a body (or gzip-decompressed body) over the size limit; 415 for another media type;
- 429 (queue full) or 503 (store down, sealer stopping) with Retry-After: the OTel exporters
  retry those, so nothing is buffered without bound and nothing is dropped.

The server is aiohttp (asyncio): a maintained production server that streams request bodies,
closes idle connections, takes an ssl.SSLContext (and so mutual TLS, whose verified peer
certificate names the producer) and has a CORS extension (aiohttp-cors) for browsers later.
One event loop thread owns every connection, so a connection that trickles or stalls costs a
socket and a coroutine, never a thread. What a request costs a thread (inflating, parsing,
sealing, waiting for the commit) runs in a pool of `HttpLimits.threads` threads, so a slow
store never blocks the loop and the pool bounds the concurrent work.

Order of work for one request, cheapest refusal first, the body read last:
path (404), producer identity from the headers and the TLS peer (401), Content-Type (415),
Content-Encoding (400), Content-Length over the limit (413): each answered without reading
the body, the connection then drained for at most `linger_seconds` so that a client still
sending reads the answer instead of a reset, and closed. With `Expect: 100-continue` the same
checks run before "100 Continue" is sent. Then the body is read (Content-Length or chunked),
cut at the limit (413) and within `body_seconds` (408, and the connection closed).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from otel_audit.errors import BodyTooLarge, RequestError, Unauthenticated

from .auth import Authenticator, TlsFiles
from .http_body import JSON, MEDIA_TYPES, PROTOBUF, encoding_of, request_bytes
from .intake import MAX_MESSAGE_BYTES, Intake, export
from .outcomes import Outcome
from .pipeline import Pipeline

log = logging.getLogger(__name__)

PATH = "/v1/logs"
_PRODUCER = web.RequestKey("producer", str)  # set once the headers are accepted


@dataclass(frozen=True)
class HttpLimits:
    """What one producer's connection may hold, so that it cannot hold up another's.

    idle_seconds bounds a connection with no request under way: from accepting it (or from
    the previous answer, on a kept-alive connection) to the end of the next request's
    headers, so a client that trickles its headers (slowloris) is closed too; it is longer
    than the exporters' usual 1-5 s between exports, which keep their connection.
    body_seconds bounds reading one whole body, however it trickles. The TLS handshake has
    idle_seconds too. Past max_connections a new connection is closed at once (with TLS,
    after its handshake); exporters retry.
    """

    idle_seconds: float = 15.0
    body_seconds: float = 30.0
    max_connections: int = 512
    threads: int = 16
    linger_seconds: float = 5.0  # draining an unread body after a refusal


@dataclass(frozen=True)
class _Answer:
    status: int
    message: Message
    headers: dict[str, str]
    close: bool = False  # close the connection after answering


class HttpReceiver:
    def __init__(
        self,
        pipeline: Pipeline,
        address: str,
        *,
        authenticator: Authenticator,
        intake: Intake,
        tls: TlsFiles | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        limits: HttpLimits = HttpLimits(),
    ) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        self._pipeline = pipeline
        self._authenticator = authenticator
        self._intake = intake
        self._max = max_message_bytes
        self._limits = limits
        self._ssl = _tls_context(tls) if tls is not None else None
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._socket = socket.create_server((host, int(port)), family=family, backlog=1024)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot listen for OTLP/HTTP on {address}: {exc}") from None
        self.port = self._socket.getsockname()[1]
        self.address = f"{host}:{self.port}" if family == socket.AF_INET else f"[{host}]:{self.port}"
        self._pool = futures.ThreadPoolExecutor(max_workers=limits.threads, thread_name_prefix="otlp-http")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="otlp-http", daemon=True)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._connections = 0

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result()

    def stop(self) -> None:
        """Stop accepting, then wait for the requests in flight to be answered."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._pool.shutdown(wait=True)
        self._socket.close()
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._request, expect_handler=self._expect)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self._limits.idle_seconds,
            lingering_time=self._limits.linger_seconds,
            auto_decompress=False,  # inflated here, exactly and bounded (sealer/http_body.py)
        )
        await self._runner.setup()
        self._server = await self._loop.create_server(
            self._protocol,
            sock=self._socket,
            ssl=self._ssl,
            ssl_handshake_timeout=self._limits.idle_seconds if self._ssl else None,
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()  # waits for handlers in flight

    def _protocol(self) -> asyncio.Protocol:
        """A protocol for one accepted connection: aiohttp's, counted, or one that closes it."""
        assert self._runner is not None and self._runner.server is not None
        if self._connections >= self._limits.max_connections:
            self._intake.rejected("too_many_connections")
            return _Refused()
        self._connections += 1
        return _Counted(self._runner.server(), self._closed)

    def _closed(self) -> None:
        self._connections -= 1

    # -- one request ---------------------------------------------------------------------------

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse before the client sends its body, or let it send."""
        answer = self._refusal(request)
        if answer is not None:
            return _response(request, answer)
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # what aiohttp's own expect handler does
        return None

    async def _request(self, request: web.Request) -> web.StreamResponse:
        answer = self._refusal(request)
        if answer is None:
            try:
                body = await asyncio.wait_for(self._read(request), self._limits.body_seconds)
            except BodyTooLarge as exc:
                answer = self._refused(exc, close=True)
            except HttpProcessingError as exc:  # chunked framing, a body shorter than announced
                self._intake.rejected("bad_request")
                message = f"the body is malformed: {exc.message}"
                answer = _Answer(HTTPStatus.BAD_REQUEST, _invalid(message), {}, close=True)
            except ConnectionError:  # the client went away: nobody to answer
                log.debug("OTLP/HTTP: client closed the connection before its body was read")
                return web.Response(status=HTTPStatus.BAD_REQUEST)
            except asyncio.TimeoutError:
                self._intake.rejected("timeout")
                message = f"the body did not arrive within {self._limits.body_seconds:g} s"
                response = _response(request, _Answer(HTTPStatus.REQUEST_TIMEOUT, _invalid(message), {}))
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()  # no draining a client that does not send
                return response
            else:
                answer = await self._loop.run_in_executor(
                    self._pool,
                    self.handle,
                    body,
                    _media_type(request),
                    request.headers.get(hdrs.CONTENT_ENCODING, ""),
                    request[_PRODUCER],
                )
        return _response(request, answer)

    def _refusal(self, request: web.Request) -> _Answer | None:
        """The answer to a request refused on its headers alone, or None (and its producer
        kept in request[_PRODUCER]): nothing here reads the body."""
        if _PRODUCER in request:  # already checked, by the Expect handler
            return None
        if request.path != PATH:
            message = f"OTLP logs are accepted at {PATH}"
            return _Answer(HTTPStatus.NOT_FOUND, _invalid(message), {}, close=True)
        if request.method != hdrs.METH_POST:
            message = f"{request.method} is not supported; OTLP logs are sent with POST"
            return _Answer(HTTPStatus.METHOD_NOT_ALLOWED, _invalid(message), {"Allow": "POST"}, close=True)
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            request[_PRODUCER] = self._authenticator.producer(
                request.headers.get(hdrs.AUTHORIZATION), certificate
            )
        except Unauthenticated as exc:
            return self._refused(exc, close=True)
        media_type = _media_type(request)
        if media_type not in MEDIA_TYPES:
            message = f"Content-Type {media_type!r} is not supported; use {PROTOBUF} or {JSON}"
            return _Answer(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, _invalid(message), {}, close=True)
        try:
            encoding_of(request.headers.get(hdrs.CONTENT_ENCODING, ""))
        except RequestError as exc:
            return self._refused(exc, close=True)
        if request.content_length is not None and request.content_length > self._max:
            message = f"body exceeds {self._max} bytes (Content-Length {request.content_length})"
            return _Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _invalid(message), {}, close=True)
        return None

    async def _read(self, request: web.Request) -> bytes:
        """The whole body, streamed (Content-Length or chunked), cut as soon as it passes the limit."""
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > self._max:
                raise BodyTooLarge(f"body exceeds {self._max} bytes")
        return bytes(body)

    def handle(self, body: bytes, media_type: str, encoding: str, producer: str) -> _Answer:
        """The answer to one authenticated POST to /v1/logs (runs in the pool: it blocks until
        the records are committed)."""
        try:
            request = request_bytes(body, media_type, encoding_of(encoding), self._max)
            return _Answer(HTTPStatus.OK, export(self._pipeline, self._intake, request, producer), {})
        except Exception as exc:  # answered as sealer/outcomes.py says; never hang or crash a caller
            return self._refused(exc)

    def _refused(self, exc: Exception, close: bool = False) -> _Answer:
        """The answer sealer/outcomes.py gives a refused call, counted under its reason."""
        return _refused(self._intake.refused(exc, "OTLP/HTTP"), exc, close)


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, telling the receiver when it is gone."""

    def __init__(self, inner: asyncio.Protocol, closed: Callable[[], None]) -> None:
        self._inner = inner
        self._closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _Refused(asyncio.Protocol):
    """A connection over HttpLimits.max_connections: closed at once (counted in
    otel_audit_records_rejected_total{reason="too_many_connections"})."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


def _media_type(request: web.Request) -> str:
    return (request.headers.get(hdrs.CONTENT_TYPE) or "").split(";")[0].strip().lower()


def _response(request: web.Request, answer: _Answer) -> web.Response:
    """The answer in the request's content type (protobuf when that is not one of ours)."""
    media_type = _media_type(request)
    if media_type == JSON:
        payload = json_format.MessageToJson(answer.message, indent=None).encode()
    else:
        media_type, payload = PROTOBUF, answer.message.SerializeToString()
    response = web.Response(status=answer.status, body=payload, headers=answer.headers)
    response.content_type = media_type
    if answer.close:
        response.force_close()
    return response


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


def _refused(outcome: Outcome, exc: Exception, close: bool) -> _Answer:
    status = _status(outcome.http_code, outcome.http_text(exc))
    return _Answer(outcome.http_status, status, outcome.headers(), close)


def _invalid(message: str) -> status_pb2.Status:
    return _status(code_pb2.INVALID_ARGUMENT, message)


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)
