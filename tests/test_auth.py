"""Producer authentication: bearer tokens and TLS client certificates, over OTLP/gRPC and
OTLP/HTTP with the OTel SDK's own exporters; the producer sealed into each record; what is
refused (unknown tokens, anonymous producers on network listeners, plaintext on the network).
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import grpc
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.errors import ConfigError, Unauthenticated
from otel_audit.note import SignerKey
from sealer.auth import (
    Authenticator,
    add_token,
    authenticator_for,
    load_tokens,
    token_digest,
)

from .certs import TestPki
from .conftest import CLI, Sealer, run_cli, start_sealer
from .test_http import SPEC_LOGS_JSON, post

SERVICE = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


# -- the rules, as pure functions --------------------------------------------------------------


def test_token_file_keeps_digests_only_and_names_producers(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    token = add_token(path, "orders")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert token not in path.read_text() and token_digest(token) in path.read_text()
    assert load_tokens(path) == {token_digest(token): "orders"}
    with pytest.raises(ConfigError, match="already has a token"):
        add_token(path, "orders")
    path.write_text(path.read_text() + "broken line\n")
    with pytest.raises(ConfigError, match="line 2"):
        load_tokens(path)


def test_authenticator_decides_the_producer(tmp_path: Path) -> None:
    auth = Authenticator({token_digest("s3cret"): "orders"}, allow_anonymous=False)
    client = TestPki(tmp_path).issue("c", "billing")
    assert auth.producer(None, client.cert.read_bytes()) == "CN=billing,O=Acme"
    assert (
        auth.producer("Bearer nope", client.cert.read_bytes()) == "CN=billing,O=Acme"
    )  # the certificate wins
    assert auth.producer("Bearer s3cret", None) == "orders"
    assert auth.producer("bearer  s3cret ", None) == "orders"
    for header, message in [("Bearer nope", "unknown bearer token"), ("Basic abc", "Bearer <token>")]:
        with pytest.raises(Unauthenticated, match=message):
            auth.producer(header, None)
    with pytest.raises(Unauthenticated, match="needs a producer identity"):
        auth.producer(None, None)
    assert Authenticator({}, allow_anonymous=True).producer(None, None) == ""


@pytest.mark.parametrize(
    ("address", "tokens", "insecure", "anonymous", "error"),
    [
        ("127.0.0.1:4317", False, False, False, None),
        ("localhost:4317", False, False, False, None),
        ("0.0.0.0:4317", True, False, False, "no TLS"),
        ("0.0.0.0:4317", False, True, False, "no producer could authenticate"),
        ("0.0.0.0:4317", True, True, False, None),
        ("0.0.0.0:4317", False, True, True, None),
    ],
)
def test_listener_rules(
    address: str, tokens: bool, insecure: bool, anonymous: bool, error: str | None
) -> None:
    table = {token_digest("t"): "p"} if tokens else {}
    if error:
        with pytest.raises(ConfigError, match=error):
            authenticator_for(address, table, None, anonymous, insecure)
    else:
        policy = authenticator_for(address, table, None, anonymous, insecure)
        assert policy.allow_anonymous == (anonymous or address.startswith(("127.", "localhost")))


# -- real serve, real exporters ------------------------------------------------------------------


def _emit(exporter: object, body: str) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "orders"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))  # type: ignore[arg-type]
    provider.get_logger("auth-test").emit(LogRecord(body=body, attributes={"user.id": "u1"}))
    provider.shutdown()


def _producers(sealer: Sealer) -> str:
    done = run_cli(
        "query",
        "--store",
        sealer.store,
        "SELECT Body, Producer FROM otel_audit.logs ORDER BY Seq",
        "--format",
        "TSV",
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _request_bytes() -> bytes:
    from google.protobuf import json_format

    return json_format.Parse(
        SPEC_LOGS_JSON.replace("5B8EFFF798038103D269B633813FC60C", "").replace("EEE19B7EC3C1B174", ""),
        ExportLogsServiceRequest(),
    ).SerializeToString()


def test_tokens_on_a_network_listener(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    token = add_token(tokens, "orders-svc")
    sealer = start_sealer(
        tmp_path, SignerKey.generate("auth.example/audit"), "--grpc", "0.0.0.0:0", "--http", "0.0.0.0:0",
        "--tokens", str(tokens), "--insecure",
    )  # fmt: skip
    try:
        bearer = {"authorization": f"Bearer {token}"}
        _emit(GrpcExporter(endpoint=sealer.endpoint, insecure=True, headers=bearer), "via grpc")
        _emit(HttpExporter(endpoint=sealer.http_endpoint, headers=bearer), "via http")
        channel = grpc.insecure_channel(sealer.endpoint)
        export = channel.unary_unary(SERVICE)
        for metadata in [(), (("authorization", "Bearer wrong"),)]:
            with pytest.raises(grpc.RpcError) as raised:
                export(_request_bytes(), metadata=metadata, timeout=30)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for headers in [{}, {"Authorization": "Bearer wrong"}]:
            request = urllib.request.Request(
                sealer.http_endpoint, data=SPEC_LOGS_JSON.encode(), method="POST",
                headers={"Content-Type": "application/json", **headers},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as http_error:
                urllib.request.urlopen(request, timeout=30)
            assert http_error.value.code == 401 and http_error.value.headers["WWW-Authenticate"] == "Bearer"
        assert _producers(sealer) == "via grpc\torders-svc\nvia http\torders-svc\n"
        assert sealer.stop() == 0
        done = sealer.verify()
        assert done.returncode == 0, done.stdout
    finally:
        sealer.kill()


def test_client_certificates_name_the_producer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override the exporter's own CA file
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    pki = TestPki(tmp_path)
    server = pki.issue("server", "sealer", server=True)
    client = pki.issue("orders", "orders")
    sealer = start_sealer(
        tmp_path, SignerKey.generate("tls.example/audit"), "--grpc", "0.0.0.0:0", "--http", "0.0.0.0:0",
        "--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(pki.ca.cert),
    )  # fmt: skip
    try:
        credentials = grpc.ssl_channel_credentials(
            pki.ca.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
        )
        _emit(GrpcExporter(endpoint=sealer.endpoint, credentials=credentials), "grpc with cert")
        _emit(
            HttpExporter(
                endpoint=sealer.http_endpoint.replace("http://", "https://"),
                certificate_file=str(pki.ca.cert),
                client_certificate_file=str(client.cert),
                client_key_file=str(client.key),
            ),
            "http with cert",
        )
        channel = grpc.secure_channel(sealer.endpoint, grpc.ssl_channel_credentials(pki.ca.cert.read_bytes()))
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(SERVICE)(_request_bytes(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # no certificate: the handshake fails
        assert _producers(sealer) == "grpc with cert\tCN=orders,O=Acme\nhttp with cert\tCN=orders,O=Acme\n"
    finally:
        sealer.stop()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--grpc", "0.0.0.0:0"], "has no TLS"),
        (["--http", "0.0.0.0:0", "--insecure"], "no producer could authenticate"),
        (["--tls-cert", "x.pem"], "--tls-cert and --tls-key together"),
    ],
)
def test_serve_refuses_an_exposed_listener(tmp_path: Path, flags: list[str], message: str) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--store", f"chdb://{tmp_path / 'store'}", "--grpc",
         "127.0.0.1:0", "--http", "127.0.0.1:0", *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_token_command(tmp_path: Path) -> None:
    done = run_cli("token", "--name", "billing", "--tokens", str(tmp_path / "tokens"))
    assert done.returncode == 0 and "not shown again" in done.stderr
    assert load_tokens(tmp_path / "tokens") == {token_digest(done.stdout.strip()): "billing"}


def test_http_401_body_is_a_status(sealer: Sealer) -> None:
    # a loopback listener accepts anonymous producers; an unknown token is still refused
    assert post(sealer.http_endpoint, SPEC_LOGS_JSON.encode(), "application/json")[0] == 200
    request = urllib.request.Request(
        sealer.http_endpoint, data=SPEC_LOGS_JSON.encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer nope"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 401 and "unknown bearer token" in raised.value.read().decode()
