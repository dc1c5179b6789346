"""OTLP/HTTP under hostile or broken clients (issue 12): the producer is authenticated before
its body is read, the size limit is answered so clients see it, stalled and trickling
connections are closed without holding up anyone else, gzip is decoded exactly and every
body that is not an OTLP JSON object is a 400, never a 500. Real sockets, an in-process
receiver on a real embedded store.
"""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from backend.store import Store
from sealer.auth import Authenticator, TlsFiles, token_digest
from sealer.http_receiver import HttpLimits, HttpReceiver
from sealer.intake import Intake
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import Rules
from sealer.state import LogState
from sealer.workers import Workers

from .certs import TestPki
from .test_http import SPEC_LOGS_JSON, _protobuf_request, post

ORIGIN = "http.example/audit"
ANONYMOUS = Authenticator({}, allow_anonymous=True)
TOKENS = Authenticator({token_digest("secret"): "orders"}, allow_anonymous=False)
SHORT = HttpLimits(idle_seconds=1, body_seconds=1, linger_seconds=0.5)
WAIT = 20  # seconds a socket waits before the test gives up on an answer (a failure, not a pass)


@contextmanager
def receiving(
    tmp_path: Path, authenticator: Authenticator = ANONYMOUS, **options: object
) -> Iterator[tuple[Store, HttpReceiver]]:
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    receiver = HttpReceiver(
        pipeline,
        "127.0.0.1:0",
        authenticator=authenticator,
        intake=Intake(Workers(Rules(), workers=0)),
        **options,  # type: ignore[arg-type]
    )
    receiver.start()
    try:
        yield store, receiver
    finally:
        receiver.stop()
        pipeline.stop()
        store.close()


def sealed(store: Store) -> int:
    return store.seq_range(ORIGIN)[0]


def connect(receiver: HttpReceiver) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT)
    return sock


def head(length: int | None = None, **headers: str) -> bytes:
    lines = ["POST /v1/logs HTTP/1.1", "Host: sealer", "Content-Type: application/x-protobuf"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (whatever it answered before)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True


# -- authentication first, the size limit answered -----------------------------------------


def test_producer_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    with receiving(tmp_path, TOKENS, limits=SHORT) as (store, receiver):
        for auth in ({}, {"Authorization": "Bearer wrong"}):
            sock = connect(receiver)
            sock.sendall(head(1_000_000, **auth))  # announces a body, sends none of it
            status, payload = answer(sock)
            assert status == 401
            assert status_pb2.Status.FromString(payload).code == code_pb2.UNAUTHENTICATED
            assert closed_by_server(sock)
        # with Expect: 100-continue the refusal comes instead of "100 Continue"
        sock = connect(receiver)
        sock.sendall(head(1_000_000, Expect="100-continue"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")
        status, _, _ = post_with_token(receiver, "secret")
        assert status == 200 and sealed(store) == 1


def post_with_token(receiver: HttpReceiver, token: str) -> tuple[int, dict, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{receiver.address}/v1/logs",
        data=SPEC_LOGS_JSON.encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_sdk_exporter_sees_413_for_a_body_over_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The body is announced larger than the limit: answered 413 before reading it, and the
    connection drained, so the OTel exporter reads the 413 instead of a broken pipe."""
    with receiving(tmp_path, max_message_bytes=64 * 1024) as (store, receiver):
        exporter = OTLPLogExporter(endpoint=f"http://{receiver.address}/v1/logs", timeout=10)
        provider = LoggerProvider()
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        with caplog.at_level(logging.ERROR):
            provider.get_logger("big").emit(body="x" * (24 * 1024 * 1024))  # more than socket buffers
        provider.shutdown()
        assert "code: 413" in caplog.text, caplog.text
        assert sealed(store) == 0


def test_a_plain_http_client_reads_the_413_not_a_broken_pipe(tmp_path: Path) -> None:
    """http.client (unlike urllib3) has no retry-the-read-after-EPIPE trick: it sees what the
    server does. The body is read and dropped after the 413, so it is not reset."""
    with receiving(tmp_path, max_message_bytes=64 * 1024) as (store, receiver):
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=WAIT)
        body = bytes(24 * 1024 * 1024)  # more than the socket buffers hold
        connection.request("POST", "/v1/logs", body, {"Content-Type": "application/x-protobuf"})
        response = connection.getresponse()
        assert response.status == 413
        assert "exceeds 65536 bytes" in status_pb2.Status.FromString(response.read()).message
        assert sealed(store) == 0


def test_a_chunked_body_is_cut_at_the_limit(tmp_path: Path) -> None:
    with receiving(tmp_path, max_message_bytes=64 * 1024, limits=SHORT) as (store, receiver):
        sock = connect(receiver)
        sock.sendall(head(None, Transfer_Encoding="chunked"))
        chunk = b"\x00" * 16 * 1024
        for _ in range(5):  # 80 KiB, and the stream never ends
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, payload = answer(sock)
        assert status == 413 and "exceeds 65536 bytes" in status_pb2.Status.FromString(payload).message
        assert sealed(store) == 0
        # a chunked body within the limit is sealed
        body = _protobuf_request(3)
        sock = connect(receiver)
        sock.sendall(head(None, Transfer_Encoding="chunked"))
        sock.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        assert answer(sock)[0] == 200 and sealed(store) == 3


# -- stalled, trickling and too many connections --------------------------------------------


def test_stalled_connections_are_closed_and_do_not_stop_another_export(tmp_path: Path) -> None:
    with receiving(tmp_path, limits=SHORT) as (store, receiver):
        stalled_bodies = [connect(receiver) for _ in range(20)]
        for sock in stalled_bodies:
            sock.sendall(head(1000))  # announce a body, send nothing
        stalled_heads = [connect(receiver) for _ in range(20)]
        for sock in stalled_heads:
            sock.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: se")  # headers never finished
        silent = [connect(receiver) for _ in range(20)]  # connect, say nothing
        # another producer's export goes through meanwhile
        status, _, _ = post(
            f"http://{receiver.address}/v1/logs", _protobuf_request(2), "application/x-protobuf"
        )
        assert status == 200 and sealed(store) == 2
        for sock in stalled_bodies:
            status, payload = answer(sock)
            assert status == 408 and "did not arrive" in status_pb2.Status.FromString(payload).message
            assert closed_by_server(sock)
        for sock in stalled_heads + silent:
            assert closed_by_server(sock)


def test_a_trickled_body_is_cut_at_the_body_timeout(tmp_path: Path) -> None:
    """Slowloris: a byte at a time, each well within any per-read timeout, never a whole body."""
    with receiving(tmp_path, limits=SHORT) as (store, receiver):
        sock = connect(receiver)
        sock.sendall(head(10_000))
        got = b""
        sock.settimeout(0.2)
        for _ in range(100):  # up to 20 s of trickling; the body timeout is 1 s
            try:
                sock.sendall(b"\x00")
                got = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            break
        assert got.startswith(b"HTTP/1.1 408"), got
        sock.settimeout(WAIT)
        assert closed_by_server(sock)
        assert sealed(store) == 0


def test_connections_past_the_limit_are_closed(tmp_path: Path) -> None:
    limits = HttpLimits(max_connections=4)
    with receiving(tmp_path, limits=limits) as (store, receiver):
        held = [connect(receiver) for _ in range(4)]
        extra = connect(receiver)
        assert closed_by_server(extra)
        held.pop().close()
        deadline = time.monotonic() + WAIT
        while True:  # the freed slot is taken by the next connection once the server sees it gone
            status, _, _ = _post_or_reset(receiver)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200 and sealed(store) == 2


def _post_or_reset(receiver: HttpReceiver) -> tuple[int, dict, bytes]:
    try:
        return post(f"http://{receiver.address}/v1/logs", _protobuf_request(2), "application/x-protobuf")
    except OSError:
        return 0, {}, b""


# -- gzip exactly --------------------------------------------------------------------------


def _gzip_cases() -> list[tuple[str, bytes]]:
    first, second = _protobuf_request(20), _protobuf_request(20)
    whole = gzip.compress(_protobuf_request(40))
    return [
        ("two members", gzip.compress(first) + gzip.compress(second)),
        ("truncated", whole[: len(whole) * 2 // 3]),
        ("trailing garbage", whole + b"garbage"),
        ("trailing zeros", whole + bytes(8)),
        ("bad CRC", whole[:-8] + bytes(4) + whole[-4:]),
        ("empty", b""),
    ]


@pytest.mark.parametrize(("case", "body"), _gzip_cases(), ids=[case for case, _ in _gzip_cases()])
def test_gzip_is_decoded_exactly_or_refused(tmp_path: Path, case: str, body: bytes) -> None:
    with receiving(tmp_path) as (store, receiver):
        url = f"http://{receiver.address}/v1/logs"
        status, _, payload = post(url, body, "application/x-protobuf", "gzip")
        assert status == 400, (case, payload)
        assert "gzip" in status_pb2.Status.FromString(payload).message
        assert sealed(store) == 0  # never a prefix
        assert post(url, gzip.compress(_protobuf_request(40)), "application/x-protobuf", "gzip")[0] == 200
        assert sealed(store) == 40


# -- JSON that is not an OTLP object -------------------------------------------------------


def _nested_body(levels: int) -> bytes:
    """The spec example with its record's body an AnyValue nested `levels` kvlists deep."""
    value = '{"kvlistValue": {"values": [{"key": "k", "value": ' * levels
    value += '{"stringValue": "leaf"}' + "}]}}" * levels
    return SPEC_LOGS_JSON.replace(
        '{\n                "stringValue": "Example log record"\n              }', value
    ).encode()


JSON_CASES = [
    ("null", b"null", "JSON null"),
    ("number", b"42", "JSON number"),
    ("string", b'"resourceLogs"', "JSON string"),
    ("array", b"[]", "JSON array"),
    ("boolean", b"true", "JSON boolean"),
    ("deep array", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("deep object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    ("deep AnyValue", _nested_body(200), "Message too deep"),
    ("repeated key", b'{"resourceLogs": [], "resourceLogs": []}', "'resourceLogs' appears twice"),
    ("NaN", SPEC_LOGS_JSON.replace("637.704", "NaN").encode(), "NaN is not a JSON value"),
    (
        "invalid UTF-8",
        SPEC_LOGS_JSON.replace("some string", "\udcff").encode("utf-8", "surrogateescape"),
        "UTF-8",
    ),
    ("records not a list", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": 7}]}]}', "OTLP JSON"),
    ("null record", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [null]}]}]}', "OTLP JSON"),
]


@pytest.mark.parametrize(("case", "body", "message"), JSON_CASES, ids=[c for c, _, _ in JSON_CASES])
def test_json_that_is_not_an_otlp_object_is_400(tmp_path: Path, case: str, body: bytes, message: str) -> None:
    with receiving(tmp_path) as (store, receiver):
        url = f"http://{receiver.address}/v1/logs"
        status, _, payload = post(url, body, "application/json")
        assert status == 400, (case, payload)
        assert message in json.loads(payload)["message"]
        assert post(url, SPEC_LOGS_JSON.encode(), "application/json")[0] == 200
        assert sealed(store) == 1


def test_other_methods_are_405(tmp_path: Path) -> None:
    with receiving(tmp_path) as (_, receiver):
        sock = connect(receiver)
        sock.sendall(b"GET /v1/logs HTTP/1.1\r\nHost: sealer\r\n\r\n")
        status, payload = answer(sock)
        assert status == 405 and "POST" in status_pb2.Status.FromString(payload).message


def test_mutual_tls_names_the_producer_and_a_silent_handshake_is_closed(tmp_path: Path) -> None:
    pki = TestPki(tmp_path)
    server, client = pki.issue("server", "sealer", server=True), pki.issue("orders", "orders")
    tls = TlsFiles(server.cert, server.key, pki.ca.cert)
    with receiving(tmp_path, TOKENS, tls=tls, limits=SHORT) as (store, receiver):
        silent = connect(receiver)  # TCP, then never a ClientHello
        context = ssl.create_default_context(cafile=pki.ca.cert)
        context.load_cert_chain(client.cert, client.key)
        https = http.client.HTTPSConnection("127.0.0.1", receiver.port, context=context, timeout=WAIT)
        https.request("POST", "/v1/logs", _protobuf_request(1), {"Content-Type": "application/x-protobuf"})
        assert https.getresponse().status == 200
        assert store.select("SELECT Producer FROM otel_audit.logs") == [("CN=orders,O=Acme",)]
        assert closed_by_server(silent)
        anonymous = ssl.create_default_context(cafile=pki.ca.cert)  # no client certificate
        with (
            socket.create_connection(("127.0.0.1", receiver.port), timeout=WAIT) as sock,
            anonymous.wrap_socket(sock, server_hostname="127.0.0.1") as wrapped,
        ):
            try:  # TLS 1.3: the server refuses after the client's side of the handshake is done
                wrapped.sendall(head(0))
                answered = wrapped.recv(1)
            except (ssl.SSLError, ConnectionError):
                answered = b""
        assert answered == b""  # no HTTP answer to a producer without a certificate
        assert sealed(store) == 1
