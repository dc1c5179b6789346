"""The otel_audit SDK against a real `serve`: events, the action context manager and
decorator, no drop under a stalled sealer, what it reports undelivered; and what the sealer
and `verify` say about producers: lost and repeated events per instance, incomplete events.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

from otel_audit import sdk
from otel_audit.note import SignerKey

from .conftest import Sealer, run_cli, start_sealer
from .test_http import SPEC_LOGS_JSON, post


def _rows(sealer: Sealer, columns: str, where: str = "1") -> list[list[str]]:
    done = run_cli(
        "query", "--store", sealer.store, f"SELECT {columns} FROM otel_audit.logs WHERE {where} ORDER BY Seq",
        "--format", "TSV",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def _verify(sealer: Sealer) -> dict:
    done = sealer.verify("--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def test_events_context_manager_and_decorator(sealer: Sealer) -> None:
    audit = sdk.setup(service="orders", endpoint=sealer.endpoint)
    audit.event(action="order.place", actor="trader-7", resource="order/42", quantity=100,
                attributes={"client.address": "10.0.0.7"})  # fmt: skip
    with audit.action("order.amend", actor="trader-7", resource="order/42") as details:
        details["price"] = "101.5"
    with pytest.raises(KeyError), audit.action("order.cancel", actor="trader-8", resource="order/43"):
        raise KeyError("no such order")

    @audit.audited(
        "report.read", actor=lambda user, report: user, resource=lambda user, report: f"report/{report}"
    )
    def read_report(user: str, report: int) -> str:
        return f"report {report}"

    assert read_report("auditor-1", 9) == "report 9"
    assert audit.shutdown() == []
    rows = _rows(
        sealer,
        ", ".join(
            ["EventName"]
            + [
                f"LogAttributes['{k}']"
                for k in ("user.id", "audit.action", "audit.outcome", "audit.resource")
            ]
            + [f"LogAttributes['{k}']" for k in ("audit.producer.seq", "audit.quantity", "audit.price")]
            + [f"LogAttributes['{k}']" for k in ("error.type", "client.address")]
            + ["SeverityText"]
        ),
    )
    assert rows == [
        [
            "audit.order.place",
            "trader-7",
            "order.place",
            "success",
            "order/42",
            "0",
            "100",
            "",
            "",
            "10.0.0.7",
            "INFO",
        ],
        [
            "audit.order.amend",
            "trader-7",
            "order.amend",
            "success",
            "order/42",
            "1",
            "",
            "101.5",
            "",
            "",
            "INFO",
        ],
        [
            "audit.order.cancel",
            "trader-8",
            "order.cancel",
            "failure",
            "order/43",
            "2",
            "",
            "",
            "KeyError",
            "",
            "WARN",
        ],
        ["audit.report.read", "auditor-1", "report.read", "success", "report/9", "3", "", "", "", "", "INFO"],
    ]
    instances = {r[0] for r in _rows(sealer, "LogAttributes['audit.producer.instance']")}
    assert len(instances) == 1
    with pytest.raises(ValueError, match="actor"):
        sdk.Audit(LoggerProvider()).event(action="x", actor="")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_event_is_dropped_while_the_sealer_is_down(tmp_path: Path) -> None:
    """A small queue, a sealer that is not there yet: emitting blocks instead of dropping, and
    everything arrives, in order, once the sealer is up."""
    port = _free_port()
    audit = sdk.setup(service="orders", endpoint=f"127.0.0.1:{port}", max_queue_size=20, max_batch_size=10)
    emitted = []

    def produce() -> None:
        for i in range(100):
            audit.event(action="order.place", actor=f"trader-{i}")
            emitted.append(i)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    time.sleep(2)
    assert thread.is_alive() and len(emitted) < 100  # blocked on the full queue: back-pressure
    sealer = start_sealer(tmp_path, SignerKey.generate("sdk.example/audit"), "--grpc", f"127.0.0.1:{port}")
    try:
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert audit.flush(120)
        assert audit.shutdown() == []
        rows = _rows(sealer, "LogAttributes['audit.producer.seq'], LogAttributes['user.id']")
        assert rows == [[str(i), f"trader-{i}"] for i in range(100)]
        assert sealer.stop() == 0
        assert _verify(sealer)["producers"]["instances"][0]["missing"] == 0
    finally:
        sealer.kill()


def test_undelivered_events_are_reported_at_shutdown() -> None:
    audit = sdk.setup(service="orders", endpoint=f"127.0.0.1:{_free_port()}", export_timeout_seconds=1)
    for i in range(5):
        audit.event(action="order.place", actor=f"trader-{i}")
    undelivered = audit.shutdown(timeout_seconds=2)
    assert [r.log_record.attributes["user.id"] for r in undelivered] == [f"trader-{i}" for i in range(5)]


def _emit_numbered(sealer: Sealer, numbers: list[int]) -> None:
    provider = LoggerProvider()
    provider.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=sealer.endpoint, insecure=True))
    )
    logger = provider.get_logger("numbered")
    for n in numbers:
        logger.emit(
            LogRecord(
                event_name="audit.order.place",
                attributes={"user.id": "t", "audit.action": "order.place", "audit.outcome": "success",
                            "audit.producer.instance": "instance-1", "audit.producer.seq": n},
            )
        )  # fmt: skip
    provider.shutdown()


def test_lost_and_repeated_events_are_reported(sealer: Sealer) -> None:
    _emit_numbered(sealer, [0, 1, 2, 5, 5, 6, 9])
    sealer.wait_for_output(r"instance-1: events 7\.\.8 missing")
    assert any("event 5 received again" in line for line in sealer.output)
    assert sealer.stop() == 0
    report = _verify(sealer)
    assert report["ok"] is True  # the log itself is intact
    (instance,) = report["producers"]["instances"]
    assert instance["instance"] == "instance-1"
    assert (instance["events"], instance["missing"], instance["duplicates"]) == (7, 4, 1)
    assert instance["missing_ranges"] == [[3, 4], [7, 8]]
    assert instance["duplicate_seqs"] == [[5, [3, 4]]]  # both copies sealed, at Seq 3 and 4
    text = run_cli("verify", "--store", sealer.store, "--key", sealer.verifier_key).stdout
    assert "warning: producer instance instance-1" in text and "numbers 3..4, 7..8" in text


def test_incomplete_audit_events_are_rejected_by_default(sealer: Sealer) -> None:
    document = json.loads(SPEC_LOGS_JSON)
    records = document["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records[0]["eventName"] = "audit.order.place"
    records[0]["attributes"] = [{"key": "audit.action", "value": {"stringValue": "order.place"}}]
    status, _, payload = post(sealer.http_endpoint, json.dumps(document).encode(), "application/json")
    partial = json.loads(payload)["partialSuccess"]
    assert status == 200 and partial["rejectedLogRecords"] == "1"
    assert "without user.id, audit.outcome" in partial["errorMessage"]
    assert _rows(sealer, "Seq") == []


def test_incomplete_audit_events_sealed_on_request_are_reported(tmp_path: Path) -> None:
    sealer = start_sealer(tmp_path, SignerKey.generate("flag.example/audit"), "--incomplete-events", "seal")
    try:
        document = json.loads(SPEC_LOGS_JSON)
        document["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["attributes"] = [
            {"key": "audit.action", "value": {"stringValue": "order.place"}}
        ]
        assert post(sealer.http_endpoint, json.dumps(document).encode(), "application/json")[0] == 200
        assert sealer.stop() == 0
        producers = _verify(sealer)["producers"]
        assert (producers["incomplete_events"], producers["incomplete_first_seqs"]) == (1, [0])
    finally:
        sealer.kill()


def test_status_while_serving_and_after(sealer: Sealer) -> None:
    _emit_numbered(sealer, [0, 1, 3])
    sealer.wait_for_output(r"checkpoint \S+ size 3\b")
    done = run_cli("status", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), "--json")
    assert done.returncode == 0, done.stderr
    (log,) = json.loads(done.stdout)["logs"]
    assert (log["records"], log["checkpoint_tree_size"], log["anchored_tree_size"]) == (3, 3, 3)
    assert log["producers"] == {"": 3} and log["producer_instances"] == 1
    assert log["checkpoint_age_seconds"] < 60 and "lost before the sealer (numbers 2)" in log["warnings"][0]
    assert sealer.stop() == 0
    text = run_cli("status", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir)).stdout
    assert (
        text.startswith(f"log {sealer.key.name}: 3 records; checkpoint at 3") and "anchored up to 3" in text
    )
    assert "(anonymous) 3" in text and "warning: producer instance instance-1" in text
