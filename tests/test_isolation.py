"""No batch's data fails another producer's batch: the pipeline's defence behind prepare.py's
checks (a block that cannot be encoded, rows the engine refuses by error code), against a
real embedded ClickHouse, and a real `serve` fed bad and good records at once."""

from __future__ import annotations

import base64
import json
import threading
import urllib.request

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from backend import native
from backend.log_verifier import verify_origin
from backend.store import Store
from otel_audit.columns import INSERT_COLUMNS
from otel_audit.errors import RequestError, StoreDataError, StoreUnavailableError
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import PREPARED_COLUMNS, Prepared
from sealer.seal import SEALER_HALF
from sealer.state import LogState

from .conftest import Sealer
from .prepared import items, unencodable

ORIGIN = "isolation.example/audit"


def refused_by_engine(n: int) -> Prepared:
    """Records that encode, but that the engine refuses as data (CANNOT_PARSE_DATETIME)."""
    prepared = items(n, "bad")
    types = tuple("String" if name == "ObservedTimestamp" else t for name, t in zip(*_prepared_types()))
    columns = native.Columns(PREPARED_COLUMNS.names, types)
    rows = [["not a time"] * n] + [[_default(t)] * n for t in types[1:]]
    prepared.columns = columns.encode(rows)
    return prepared


def _prepared_types() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return PREPARED_COLUMNS.names, PREPARED_COLUMNS.types


def _default(type_name: str) -> object:
    return {"UInt8": 0, "DateTime64(9)": 0, "Map(String, String)": {}}.get(type_name, "")


def _verify(store: Store, pipeline: Pipeline, tmp_path, records: int) -> None:
    key = SignerKey.generate(ORIGIN)
    Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600).stop()
    report = verify_origin(store, key.verifier(), tmp_path / "anchors")
    assert report.ok and report.records == records, report.findings


@pytest.mark.parametrize("bad", [unencodable, refused_by_engine], ids=["unencodable", "refused_by_engine"])
def test_a_bad_batch_is_refused_alone_and_every_other_batch_commits(store, tmp_path, bad) -> None:
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    try:
        batches = []
        for round_ in range(5):  # submitted at once: the bad ones share groups with the good ones
            batches += [pipeline.submit(items(20, f"g{round_}-{b}-")) for b in range(4)]
            batches.append(pipeline.submit(bad(3)))
            batches += [pipeline.submit(items(20, f"h{round_}-{b}-")) for b in range(4)]
        outcomes = []
        for batch in batches:
            try:
                batch.wait()
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        assert pipeline.seal(items(5, "later")) == 800  # the log goes on after them, no gap
    finally:
        pipeline.stop()
    good = [o for b, o in zip(batches, outcomes) if b.prepared.count == 20]
    refused = [o for b, o in zip(batches, outcomes) if b.prepared.count == 3]
    assert good == [None] * 40  # no UNAVAILABLE, nothing refused: every good batch committed
    assert all(isinstance(o, RequestError) for o in refused), refused  # not retryable
    assert all("the store cannot hold them" in str(o) for o in refused)
    _verify(store, pipeline, tmp_path, 805)
    bodies = store.client.query("SELECT countIf(Body LIKE 'bad%'), count() FROM otel_audit.logs").result_rows
    assert bodies == [(0, 805)]


class _BreaksAfterARefusal(Store):
    """The real store, whose table goes away right after it refuses rows as bad data: an
    outage while the writer writes the refused group batch by batch."""

    def insert_blocks(self, columns, blocks, token) -> None:  # type: ignore[no-untyped-def]
        try:
            super().insert_blocks(columns, blocks, token)
        except StoreDataError:
            if not getattr(self, "broken", False):
                self.broken = True
                self.command("DETACH TABLE otel_audit.logs")
            raise


def test_an_outage_while_a_refused_group_is_rewritten_fails_the_rest_retryably(tmp_path) -> None:
    store = _BreaksAfterARefusal.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), insert_attempts=1)
    pipeline.start()
    try:
        batches = []
        for b in range(10):  # the good ones after the bad one can only be written after it
            if b == 5:
                batches.append(pipeline.submit(refused_by_engine(2)))
            batches.append(pipeline.submit(items(10, f"g{b}-")))
        outcomes = []
        for batch in batches:  # every caller is answered: none waits forever
            try:
                batch.wait()
                outcomes.append("committed")
            except RequestError:
                outcomes.append("refused")
            except StoreUnavailableError:
                outcomes.append("retry")
        assert "retry" in outcomes and outcomes.count("committed") <= 5
        store.command("ATTACH TABLE otel_audit.logs")
        committed = 10 * outcomes.count("committed")
        assert pipeline.seal(items(5, "after")) == committed  # no gap, nothing doubled
    finally:
        pipeline.stop()
    _verify(store, pipeline, tmp_path, committed + 5)
    store.close()


def test_insert_errors_are_classified_by_the_engines_code(store) -> None:
    good = items(1, "x")
    bad = refused_by_engine(1)
    seal = SEALER_HALF.encode([["o"], [0], [0], [0], [0], [""], [b""], [bytes(32)], [bytes(32)]])
    blocks = [native.block(1, len(INSERT_COLUMNS), p.columns, seal) for p in (bad, good)]
    with pytest.raises(StoreDataError, match="CANNOT_PARSE_DATETIME"):
        store.insert_blocks(INSERT_COLUMNS, blocks[:1], "t1")
    store.command("DETACH TABLE otel_audit.logs")  # an outage, not bad data: retryable
    try:
        with pytest.raises(StoreUnavailableError):
            store.insert_blocks(INSERT_COLUMNS, blocks[1:], "t2")
    finally:
        store.command("ATTACH TABLE otel_audit.logs")


# -- a real serve: one producer sends every out-of-range value, another good records ---------

# The fields of a bad record and the field its rejection message names.
BAD_RECORDS = [
    ({"time_unix_nano": 2**64 - 1}, "time_unix_nano: 18446744073709551615 ns is after 2106-02-07"),
    ({"time_unix_nano": 2**32 * 10**9}, "time_unix_nano: 4294967296000000000 ns is after"),
    ({"time_unix_nano": 2**63}, "time_unix_nano: 9223372036854775808 ns"),
    ({"observed_time_unix_nano": 2**32 * 10**9}, "observed_time_unix_nano: 4294967296000000000 ns"),
    ({"time_unix_nano": 1, "observed_time_unix_nano": 2**64 - 1}, "observed_time_unix_nano: 184467"),
    ({"severity_number": 256}, "severity_number: 256 is outside 0..255"),
    ({"severity_number": -3}, "severity_number: -3 is outside 0..255"),
    ({"trace_id": b"\xab\xcd"}, "trace_id: 2 bytes"),
    ({"span_id": bytes(10)}, "span_id: 10 bytes"),
    ({"event_name": "otel_audit.seq"}, "event_name: 'otel_audit.seq' uses the reserved"),
    ({"attributes": [KeyValue(key="otel_audit.producer")]}, "attributes: key 'otel_audit.producer'"),
]


def _request(record: dict, *, resource_key: str | None = None, body: str = "bad") -> ExportLogsServiceRequest:
    """A request of a good record (the neighbour) and a record with `record`'s fields."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "svc"
    if resource_key:
        resource_logs.resource.attributes.add(key=resource_key).value.string_value = "x"
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.log_records.add(body=AnyValue(string_value=f"{body}-neighbour"))
    scope_logs.log_records.add(body=AnyValue(string_value=body), **record)
    return request


def _otlp_json(request: ExportLogsServiceRequest) -> bytes:
    """OTLP JSON: protobuf's JSON mapping with integer enums and hex trace and span ids."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    for resource_logs in document["resourceLogs"]:
        for record in resource_logs["scopeLogs"][0]["logRecords"]:
            for key in ("traceId", "spanId"):
                if key in record:
                    record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(document).encode()


def _post(sealer: Sealer, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        sealer.http_endpoint, data=body, headers={"Content-Type": content_type}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


@pytest.mark.integration
def test_bad_records_are_refused_per_record_while_another_producer_commits(sealer: Sealer) -> None:
    good_calls: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def good_producer(transport: str) -> None:
        with grpc.insecure_channel(sealer.endpoint) as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            n = 0
            while not stop.is_set() or n < 20:
                req = ExportLogsServiceRequest()
                scope_logs = req.resource_logs.add().scope_logs.add()
                for i in range(10):
                    scope_logs.log_records.add(body=AnyValue(string_value=f"good-{transport}-{n}-{i}"))
                try:  # UNAVAILABLE, 503 or a rejection would be a failure of isolation
                    if transport == "grpc":
                        response = stub.Export(req, timeout=60)
                    else:
                        status, raw = _post(sealer, req.SerializeToString(), "application/x-protobuf")
                        assert status == 200
                        response = ExportLogsServiceResponse.FromString(raw)
                    assert not response.HasField("partial_success"), response
                    good_calls.append(transport)
                except Exception as exc:
                    failures.append(repr(exc))
                n += 1

    threads = [threading.Thread(target=good_producer, args=(t,)) for t in ("grpc", "http")]
    for thread in threads:
        thread.start()
    expected_bad = 0
    try:
        with grpc.insecure_channel(sealer.endpoint) as channel:
            stub = logs_service_pb2_grpc.LogsServiceStub(channel)
            for round_ in range(3):
                for record, message in BAD_RECORDS:
                    request = _request(record, body=f"bad-{round_}")
                    grpc_answer = stub.Export(request, timeout=60)
                    status, raw = _post(sealer, request.SerializeToString(), "application/x-protobuf")
                    status_json, raw_json = _post(sealer, _otlp_json(request), "application/json")
                    assert status == status_json == 200
                    answers = [grpc_answer, ExportLogsServiceResponse.FromString(raw)]
                    answers.append(json_format.Parse(raw_json, ExportLogsServiceResponse()))
                    for answer in answers:
                        assert answer.partial_success.rejected_log_records == 1
                        assert f"log_records[1].{message}" in answer.partial_success.error_message
                    expected_bad += 3  # each call's good neighbour
                # a record protobuf cannot decode (invalid UTF-8), in protobuf over both receivers
                raw = _request({"severity_text": "~~"}, body=f"bad-{round_}").SerializeToString()
                raw = raw.replace(b"~~", b"\xff\xfe")
                export = channel.unary_unary(
                    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                    request_serializer=None,
                    response_deserializer=ExportLogsServiceResponse.FromString,
                )
                status, http_raw = _post(sealer, raw, "application/x-protobuf")
                assert status == 200
                for answer in (export(raw, timeout=60), ExportLogsServiceResponse.FromString(http_raw)):
                    assert answer.partial_success.rejected_log_records == 1
                    assert "log_records[1]: cannot be decoded" in answer.partial_success.error_message
                    assert "UTF-8" in answer.partial_success.error_message
                expected_bad += 2
                # a reserved key in the resource: both its records refused, naming the resource
                request = _request({}, resource_key="otel_audit.origin", body=f"bad-{round_}")
                status, raw = _post(sealer, _otlp_json(request), "application/json")
                answer = json_format.Parse(raw, ExportLogsServiceResponse()).partial_success
                assert status == 200 and answer.rejected_log_records == 2
                assert "resource_logs[0].resource.attributes: key 'otel_audit.origin'" in answer.error_message
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert failures == [] and {"grpc", "http"} <= set(good_calls)
    assert sealer.stop() == 0, "".join(sealer.output)
    store = Store.open(sealer.store)
    try:
        counts = store.client.query(
            "SELECT countIf(Body LIKE 'good-%'), countIf(Body LIKE 'bad-%-neighbour'), "
            "countIf(Body LIKE 'bad-%' AND Body NOT LIKE '%neighbour') FROM otel_audit.logs"
        ).result_rows[0]
    finally:
        store.close()
    assert counts == (10 * len(good_calls), expected_bad, 0)  # every good record, no bad one
    assert sealer.verify().returncode == 0
