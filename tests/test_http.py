"""OTLP/HTTP: the OTel SDK's own OTLP/HTTP exporter against a real `serve`, JSON requests from
the OTLP specification's example (opentelemetry-proto/examples/logs.json), and the error
answers (400 with a google.rpc.Status, 413, 415, 404, 429/503 with Retry-After).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from backend.store import Store
from sealer.auth import Authenticator
from sealer.grpc_receiver import GrpcReceiver
from sealer.http_receiver import HttpReceiver
from sealer.intake import Intake
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import Rules
from sealer.state import LogState
from sealer.workers import Workers

from .conftest import Sealer, run_cli
from .producers import send_audit_events

# opentelemetry-proto examples/logs.json, verbatim.
SPEC_LOGS_JSON = """{
  "resourceLogs": [
    {
      "resource": {
        "attributes": [
          {
            "key": "service.name",
            "value": {
              "stringValue": "my.service"
            }
          }
        ]
      },
      "scopeLogs": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              {
                "key": "my.scope.attribute",
                "value": {
                  "stringValue": "some scope attribute"
                }
              }
            ]
          },
          "logRecords": [
            {
              "timeUnixNano": 1544712660300000000,
              "observedTimeUnixNano": 1544712660300000000,
              "severityText": "Information",
              "traceId": "5B8EFFF798038103D269B633813FC60C",
              "spanId": "EEE19B7EC3C1B174",
              "body": {
                "stringValue": "Example log record"
              },
              "attributes": [
                {
                  "key": "string.attribute",
                  "value": {
                    "stringValue": "some string"
                  }
                },
                {
                  "key": "boolean.attribute",
                  "value": {
                    "boolValue": true
                  }
                },
                {
                  "key": "int.attribute",
                  "value": {
                    "intValue": 10
                  }
                },
                {
                  "key": "double.attribute",
                  "value": {
                    "doubleValue": 637.704
                  }
                },
                {
                  "key": "array.attribute",
                  "value": {
                    "arrayValue": {
                      "values": [
                        {
                          "stringValue": "many"
                        },
                        {
                          "stringValue": "values"
                        }
                      ]
                    }
                  }
                },
                {
                  "key": "map.attribute",
                  "value": {
                    "kvlistValue": {
                      "values": [
                        {
                          "key": "some.map.key",
                          "value": {
                            "stringValue": "some value"
                          }
                        }
                      ]
                    }
                  }
                }
              ]
            }
          ]
        }
      ]
    }
  ]
}"""


def post(url: str, body: bytes, content_type: str, encoding: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def query(sealer: Sealer, sql: str) -> str:
    done = run_cli("query", "--store", sealer.store, sql, "--format", "TSV")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sdk_http_exporter_and_grpc_share_one_log(sealer: Sealer) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "payments"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=sealer.http_endpoint)))
    logger = provider.get_logger("payments.audit")

    def via_http() -> None:
        for i in range(300):
            logger.emit(
                LogRecord(
                    body=f"payment {i}",
                    severity_number=SeverityNumber.INFO,
                    attributes={
                        "user.id": "clerk-1",
                        "audit.action": "payment.send",
                        "audit.outcome": "success",
                    },
                )
            )
        assert provider.force_flush(60_000)

    thread = threading.Thread(target=via_http)
    thread.start()
    send_audit_events(sealer.endpoint, 300)  # gRPC at the same time
    thread.join()
    provider.shutdown()
    assert query(sealer, "SELECT ServiceName, count() FROM otel_audit.logs GROUP BY 1 ORDER BY 1") == (
        "orders\t300\npayments\t300\n"
    )
    assert query(sealer, "SELECT min(Seq), max(Seq), uniqExact(Seq) FROM otel_audit.logs") == "0\t599\t600\n"
    assert sealer.stop() == 0
    done = sealer.verify()
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_spec_json_example_is_sealed_as_the_spec_means(sealer: Sealer, encoding: str | None) -> None:
    body = SPEC_LOGS_JSON.encode()
    status, headers, payload = post(
        sealer.http_endpoint, gzip.compress(body) if encoding else body, "application/json", encoding
    )
    assert status == 200, payload
    assert headers["Content-Type"] == "application/json"
    assert "partialSuccess" not in json.loads(payload)
    row = query(
        sealer,
        "SELECT TraceId, SpanId, Body, ServiceName, ScopeName, SeverityText, "
        "LogAttributes['int.attribute'], LogAttributes['array.attribute'], toUnixTimestamp64Nano(Timestamp) "
        "FROM otel_audit.logs",
    )
    assert row.split("\t") == [
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        "Example log record",
        "my.service",
        "my.library",
        "Information",
        "10",
        '["many","values"]',
        "1544712660300000000\n",
    ]


def test_json_with_int64_as_strings_and_unknown_fields(sealer: Sealer) -> None:
    document = json.loads(SPEC_LOGS_JSON)
    record = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    record["timeUnixNano"] = "1544712660300000001"
    record["severityNumber"] = 9
    record["aFieldFromTheFuture"] = {"x": 1}
    status, _, payload = post(sealer.http_endpoint, json.dumps(document).encode(), "application/json")
    assert status == 200, payload
    assert query(sealer, "SELECT toUnixTimestamp64Nano(Timestamp), SeverityNumber FROM otel_audit.logs") == (
        "1544712660300000001\t9\n"
    )


def test_reserved_attribute_is_rejected_through_partial_success(sealer: Sealer) -> None:
    document = json.loads(SPEC_LOGS_JSON)
    records = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records.append(json.loads(json.dumps(records[0])))
    records[1]["attributes"].append({"key": "otel_audit.seq", "value": {"intValue": "7"}})
    status, _, payload = post(sealer.http_endpoint, json.dumps(document).encode(), "application/json")
    assert status == 200
    partial = json.loads(payload)["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "otel_audit.seq" in partial["errorMessage"]
    assert query(sealer, "SELECT count() FROM otel_audit.logs") == "1\n"


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status", "message"),
    [
        (b"\xff\xff\xff", "application/x-protobuf", None, 400, "not a valid OTLP ExportLogsServiceRequest"),
        (b"{not json", "application/json", None, 400, "not JSON"),
        (b'{"resourceLogs": [{"scopeLogs": "x"}]}', "application/json", None, 400, "OTLP JSON"),
        (SPEC_LOGS_JSON.replace("5B8EFFF7", "ZZZZZZZZ").encode(), "application/json", None, 400, "not hex"),
        (b"plain", "text/plain", None, 415, "not supported"),
        (b"\x1f\x8b broken", "application/x-protobuf", "gzip", 400, "not valid gzip"),
        (gzip.compress(bytes(17 * 1024 * 1024)), "application/x-protobuf", "gzip", 413, "exceeds"),
        (SPEC_LOGS_JSON.encode(), "application/json", "br", 400, "Content-Encoding"),
    ],
)
def test_bad_requests_get_a_status_and_seal_nothing(
    sealer: Sealer, body: bytes, content_type: str, encoding: str | None, status: int, message: str
) -> None:
    got, headers, payload = post(sealer.http_endpoint, body, content_type, encoding)
    assert got == status, payload
    if headers["Content-Type"] == "application/json":
        assert message in json.loads(payload)["message"]
    else:
        parsed = status_pb2.Status.FromString(payload)
        assert parsed.code == code_pb2.INVALID_ARGUMENT and message in parsed.message
    # the sealer is unharmed: a good request right after is sealed
    assert post(sealer.http_endpoint, SPEC_LOGS_JSON.encode(), "application/json")[0] == 200
    assert query(sealer, "SELECT count() FROM otel_audit.logs") == "1\n"


def test_wrong_path_is_404(sealer: Sealer) -> None:
    status, _, payload = post(
        sealer.http_endpoint.replace("/v1/logs", "/v1/traces"), b"", "application/x-protobuf"
    )
    assert status == 404 and "/v1/logs" in status_pb2.Status.FromString(payload).message


# -- store trouble: in-process receiver on a real store ---------------------------------------


ANONYMOUS = Authenticator({}, allow_anonymous=True)
INLINE = Intake(Workers(Rules(), workers=0))  # requests prepared in the receiving thread


@pytest.fixture
def receiver(tmp_path):  # type: ignore[no-untyped-def]
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    pipeline = Pipeline(
        store, PublishedLog(LogState.empty("http.example/audit")), max_queued_records=3, insert_attempts=5
    )
    pipeline.start()
    http = HttpReceiver(pipeline, "127.0.0.1:0", authenticator=ANONYMOUS, intake=INLINE)
    http.start()
    yield store, pipeline, f"http://{http.address}/v1/logs"
    http.stop()
    pipeline.stop()
    store.close()


def _protobuf_request(records: int) -> bytes:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    document = json.loads(SPEC_LOGS_JSON)
    scope = document["resourceLogs"][0]["scopeLogs"][0]
    scope["logRecords"] = [{"body": {"stringValue": f"r{i}"}} for i in range(records)]
    return json_format.ParseDict(document, ExportLogsServiceRequest()).SerializeToString()


def test_store_down_is_503_and_full_queue_is_429_with_retry_after(receiver) -> None:  # type: ignore[no-untyped-def]
    store, _, url = receiver
    status, _, payload = post(url, _protobuf_request(2), "application/x-protobuf")
    assert status == 200 and ExportLogsServiceResponse.FromString(payload) == ExportLogsServiceResponse()
    store.command("DETACH TABLE otel_audit.logs")
    results: list[tuple[int, dict, bytes]] = []
    first = threading.Thread(
        target=lambda: results.append(post(url, _protobuf_request(2), "application/x-protobuf"))
    )
    first.start()  # its INSERT fails and is retried with back-off, holding the queue
    time.sleep(0.1)
    status, headers, payload = post(url, _protobuf_request(2), "application/x-protobuf")
    assert status == 429 and headers["Retry-After"] == "1"
    assert status_pb2.Status.FromString(payload).code == code_pb2.RESOURCE_EXHAUSTED
    first.join()
    status, headers, payload = results[0]
    assert status == 503 and headers["Retry-After"] == "1"
    assert "retry" in status_pb2.Status.FromString(payload).message
    store.command("ATTACH TABLE otel_audit.logs")
    assert post(url, _protobuf_request(2), "application/x-protobuf")[0] == 200
    assert store.seq_range("http.example/audit") == (4, 0, 3)  # no gap, nothing twice


def test_stopping_sealer_answers_503(receiver) -> None:  # type: ignore[no-untyped-def]
    _, pipeline, url = receiver
    pipeline.stop()
    status, headers, payload = post(url, _protobuf_request(1), "application/x-protobuf")
    assert status == 503 and headers["Retry-After"] == "1"
    assert "shutting down" in status_pb2.Status.FromString(payload).message


def test_read_commands_through_a_running_sealer_never_touch_its_writes(sealer: Sealer) -> None:
    """`query` (also one that tries to write) runs on the read API's own read-only connection:
    the sealer keeps sealing and signs its final checkpoint."""
    send_audit_events(sealer.endpoint, 10)
    for sql in [
        "SELECT count() FROM otel_audit.logs",
        "DROP TABLE otel_audit.logs",
        "SELECT 1 SETTINGS readonly = 0",
    ]:
        run_cli("query", "--store", sealer.store, sql)
    assert query(sealer, "SELECT getSetting('readonly')") == "1\n"
    send_audit_events(sealer.endpoint, 10, start=10)
    assert post(sealer.http_endpoint, SPEC_LOGS_JSON.encode(), "application/json")[0] == 200
    assert sealer.stop() == 0, "".join(sealer.output)
    done = sealer.verify()
    assert done.returncode == 0 and "21 records" in done.stdout, done.stdout


def test_grpc_back_pressure_carries_retry_info(receiver) -> None:  # type: ignore[no-untyped-def]
    """gRPC's answer to a full queue: UNAVAILABLE with RetryInfo, as the OTLP spec asks."""
    store, pipeline, _ = receiver
    server = GrpcReceiver(pipeline, "127.0.0.1:0", authenticator=ANONYMOUS, intake=INLINE)
    server.start()
    try:
        export = grpc.insecure_channel(server.address).unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
        )
        store.command("DETACH TABLE otel_audit.logs")
        first = threading.Thread(target=lambda: _swallow(lambda: export(_protobuf_request(2), timeout=60)))
        first.start()  # its INSERT fails and is retried with back-off, holding the queue
        time.sleep(0.1)
        with pytest.raises(grpc.RpcError) as raised:
            export(_protobuf_request(2), timeout=60)
        first.join()
        store.command("ATTACH TABLE otel_audit.logs")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        details = dict(raised.value.trailing_metadata())["grpc-status-details-bin"]
        retry = error_details_pb2.RetryInfo()
        assert status_pb2.Status.FromString(details).details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 1
    finally:
        server.stop(5)


def _swallow(call) -> None:  # type: ignore[no-untyped-def]
    import contextlib

    with contextlib.suppress(Exception):
        call()
