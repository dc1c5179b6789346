"""End to end: the real `otel-audit serve` process, fed by the OTel SDK's OTLP/gRPC exporter."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import time

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

from backend.store import Store
from otel_audit.anchors import read_anchors
from otel_audit.checkpoint import open_checkpoint
from otel_audit.note import VerifierKey

from .conftest import CLI, run_cli, start_sealer, startup_text
from .producers import send_audit_events

pytestmark = pytest.mark.integration


def verify_json(sealer, *extra: str) -> tuple[int, dict]:
    result = run_cli(
        "verify",
        "--store",
        sealer.store,
        "--key",
        sealer.verifier_key,
        "--anchor-dir",
        str(sealer.anchor_dir),
        "--json",
        *extra,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_keygen_writes_a_private_key_file_and_prints_the_verifier_key(tmp_path):
    out = tmp_path / "audit.key"
    result = run_cli("keygen", "--origin", "acme.example/audit", "--out", str(out))
    assert result.returncode == 0, result.stderr
    vkey = VerifierKey.parse(result.stdout.strip())
    assert vkey.name == "acme.example/audit"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_text().startswith("PRIVATE+KEY+acme.example/audit+")
    again = run_cli("keygen", "--origin", "acme.example/audit", "--out", str(out))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_records_are_sealed_checkpointed_and_verify(sealer, compression):
    send_audit_events(sealer.endpoint, 1200, compression=compression)
    assert sealer.stop() == 0, "".join(sealer.output)
    anchors, problems = read_anchors(sealer.anchor_dir, sealer.key.name)
    assert not problems and anchors[-1].checkpoint.tree_size == 1200  # the final checkpoint
    code, report = verify_json(sealer)
    assert code == 0, report
    assert report["records"] == 1200 and report["signed_size"] == 1200 and report["findings"] == []

    store = Store.open(sealer.store)
    try:
        rows = store.client.query(
            "SELECT min(Seq), max(Seq), count(), uniqExact(Seq), any(ServiceName), "
            "countIf(LogAttributes['user.id'] = 'trader-3'), any(EventName), any(ScopeName) "
            "FROM otel_audit.logs"
        ).result_rows[0]
        cps = store.checkpoints(sealer.key.name)
    finally:
        store.close()
    assert rows[:4] == (0, 1199, 1200, 1200)
    assert rows[4] == "orders" and rows[5] == len([i for i in range(1200) if i % 7 == 3])
    assert rows[6] == "audit.order.place" and rows[7] == "otel_audit.tests"
    open_checkpoint(cps[-1].note, sealer.key.verifier())  # raises unless the key signed it


def test_restart_continues_the_log_and_every_checkpoint_extends_the_last(tmp_path, signer_key):
    first = start_sealer(tmp_path, signer_key)
    send_audit_events(first.endpoint, 300)
    assert first.stop() == 0
    second = start_sealer(tmp_path, signer_key)
    second.wait_for_output(r"continues at Seq 300")
    send_audit_events(second.endpoint, 200, start=300)
    assert second.stop() == 0
    anchors, _ = read_anchors(second.anchor_dir, signer_key.name)
    sizes = sorted({a.checkpoint.tree_size for a in anchors})
    assert sizes[-1] == 500 and 300 in sizes
    code, report = verify_json(second)
    assert code == 0 and report["records"] == 500, report


def test_kill_9_loses_nothing_acknowledged_and_restart_resumes(tmp_path, signer_key):
    first = start_sealer(tmp_path, signer_key, interval="3600")  # no checkpoint before the kill
    send_audit_events(first.endpoint, 400)  # returns once every Export was acknowledged
    first.stop(signal.SIGKILL)
    second = start_sealer(tmp_path, signer_key)
    second.wait_for_output(r"continues at Seq 400")
    send_audit_events(second.endpoint, 100, start=400)
    assert second.stop() == 0
    code, report = verify_json(second)
    assert code == 0 and report["records"] == 500 and report["signed_size"] == 500, report


def _anchored_checkpoints(tmp_path, signer_key, count: int) -> None:
    """A log of 10 * count records with checkpoints (and anchors) at sizes 10, 20, ..."""
    for start in range(0, 10 * count, 10):
        running = start_sealer(tmp_path, signer_key, interval="3600")  # only the stop signs
        send_audit_events(running.endpoint, 10, start=start)
        assert running.stop() == 0


def _anchor_sizes(tmp_path, signer_key) -> list[int]:
    return sorted({a.checkpoint.tree_size for a in read_anchors(tmp_path / "anchors", signer_key.name)[0]})


def _drop_anchors(tmp_path, signer_key, *sizes: int) -> None:
    for anchor in read_anchors(tmp_path / "anchors", signer_key.name)[0]:
        if anchor.checkpoint.tree_size in sizes:
            anchor.path.unlink()


def test_a_restart_writes_the_anchor_a_crash_left_unwritten(tmp_path, signer_key):
    # A kill between storing checkpoint 20 and writing its anchor (latest.checkpoint and
    # 20.checkpoint both gone); two such crashes in a row would leave two unanchored ones.
    _anchored_checkpoints(tmp_path, signer_key, 2)
    _drop_anchors(tmp_path, signer_key, 20)
    assert _anchor_sizes(tmp_path, signer_key) == [10]
    restarted = start_sealer(tmp_path, signer_key, interval="3600")
    assert _anchor_sizes(tmp_path, signer_key) == [10, 20]  # before any new record
    assert restarted.stop() == 0
    code, report = verify_json(restarted)
    assert code == 0 and not report["findings"] and not report["notes"], report


def test_a_restart_does_not_rewrite_anchors_that_were_deleted(tmp_path, signer_key):
    # Two stored checkpoints above every anchor is no crash: verify must go on reporting it.
    _anchored_checkpoints(tmp_path, signer_key, 3)
    _drop_anchors(tmp_path, signer_key, 20, 30)
    restarted = start_sealer(tmp_path, signer_key, interval="3600")
    assert _anchor_sizes(tmp_path, signer_key) == [10]
    assert restarted.stop() == 0
    code, report = verify_json(restarted)
    assert code == 1 and [f["kind"] for f in report["findings"]] == ["unanchored"], report


def _record(body: str, **attrs: str) -> LogRecord:
    record = LogRecord(time_unix_nano=time.time_ns(), body=AnyValue(string_value=body))
    for key, value in attrs.items():
        record.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return record


def test_bad_input_gets_a_clear_status_and_does_not_break_the_log(sealer):
    channel = grpc.insecure_channel(sealer.endpoint)
    raw_export = channel.unary_unary(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as info:
        raw_export(b"\xff\xff\xff\xff not protobuf", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP ExportLogsServiceRequest" in info.value.details()

    stub = logs_service_pb2_grpc.LogsServiceStub(channel)
    request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(log_records=[_record("good"), _record("forged", **{"otel_audit.seq": "7"})])
                ]
            )
        ]
    )
    response = stub.Export(request, timeout=10)
    assert response.partial_success.rejected_log_records == 1
    assert "reserved otel_audit. prefix" in response.partial_success.error_message
    empty = stub.Export(logs_service_pb2.ExportLogsServiceRequest(), timeout=10)
    assert not empty.HasField("partial_success")
    channel.close()

    send_audit_events(sealer.endpoint, 10)
    assert sealer.stop() == 0
    code, report = verify_json(sealer)
    assert code == 0 and report["records"] == 11, report


def test_verify_usage_errors_exit_2(tmp_path):
    empty = run_cli(
        "verify",
        "--store",
        f"chdb://{tmp_path / 'nothing'}",
        "--key",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    )
    assert empty.returncode == 2 and "holds no otel-audit log" in empty.stderr
    bad_key = run_cli("verify", "--store", f"chdb://{tmp_path / 's'}", "--key", "not-a-key")
    assert bad_key.returncode == 2 and "not of the form origin+keyid+base64" in bad_key.stderr
    bad_store = run_cli(
        "verify",
        "--store",
        "ftp://x",
        "--key",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    )
    assert bad_store.returncode == 2 and "use chdb:///absolute/path" in bad_store.stderr


def _running(pid: str) -> bool:
    """Whether a process exists and has not exited (a zombie waits only to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_defaults_and_environment_a_new_user_gets(tmp_path):
    """`serve` with no flags: key created under ./otel-audit-data, embedded store there too;
    settings from OTEL_AUDIT_* variables; `verify` with only the printed key finds it all."""
    env = {
        **os.environ,
        "OTEL_AUDIT_GRPC": "127.0.0.1:0",
        "OTEL_AUDIT_HTTP": "127.0.0.1:0",
        "OTEL_AUDIT_METRICS": "127.0.0.1:0",
        "OTEL_AUDIT_CHECKPOINT_INTERVAL": "0.5",
        "OTEL_AUDIT_ORIGIN": "newcomer.example/audit",
    }
    proc = subprocess.Popen(
        [*CLI, "serve"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    text = startup_text(proc)
    assert f"created signer key {tmp_path / 'otel-audit-data' / 'signer.key'}" in text, text
    vkey = re.search(r"verifier key: (\S+)", text).group(1)  # type: ignore[union-attr]
    port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    send_audit_events(f"127.0.0.1:{port}", 50)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "serve runs its sealing workers as child processes"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole group, sealing workers included
    assert proc.wait(timeout=60) == 0
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in children):
        assert time.monotonic() < deadline, "sealing workers outlived serve"
        time.sleep(0.1)
    assert (tmp_path / "otel-audit-data" / "store").is_dir()
    assert VerifierKey.parse(vkey).name == "newcomer.example/audit"
    result = run_cli("verify", "--key", vkey, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: log newcomer.example/audit (fast): 50 records" in result.stdout


def test_serve_refuses_a_negative_number_of_workers(tmp_path):
    result = run_cli("serve", "--workers", "-1", "--store", f"chdb://{tmp_path / 'store'}", cwd=tmp_path)
    assert result.returncode == 2 and "--workers must be 0" in result.stderr, result.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "otel-audit-data").exists()  # nothing made
