"""The sealing workers: real processes, started fresh, that prepare requests for the sealer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from backend.log_verifier import verify_origin
from backend.store import Store
from otel_audit.errors import RequestError, WorkerError
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import Rules, prepare_request
from sealer.state import LogState
from sealer.workers import Workers

ORIGIN = "workers.example/audit"


def _request(n: int, timed: bool = True) -> bytes:
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "svc"
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = "audit"
    for i in range(n):
        record = scope_logs.log_records.add(body=AnyValue(string_value=f"r{i}"))
        if timed:
            record.time_unix_nano = 1_700_000_000_000_000_000 + i
        record.attributes.add(key="user.id").value.string_value = f"u{i}"
        record.attributes.add(key="audit.action").value.string_value = "order.place"
        record.attributes.add(key="audit.outcome").value.string_value = "success"
    reserved = scope_logs.log_records.add()
    reserved.attributes.add(key="otel_audit.seq").value.int_value = 1
    return request.SerializeToString()


def _pids(workers: Workers) -> list[int]:
    assert workers._pool is not None
    return list(workers._pool._processes)  # type: ignore[attr-defined]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workers():  # type: ignore[no-untyped-def]
    pool = Workers(Rules(), workers=2)
    pool.start()
    yield pool
    pool.stop()


def test_a_worker_prepares_what_the_receiver_would(workers: Workers) -> None:
    raw = _request(20)
    remote, local = workers.prepare(raw), prepare_request(raw, Rules())
    assert remote == local
    assert remote.count == 20 and [r.reason for r in remote.rejected] == ["reserved_attribute"]
    assert len(_pids(workers)) == 2 and os.getpid() not in _pids(workers)


def test_a_malformed_request_is_refused_across_the_process_boundary(workers: Workers) -> None:
    with pytest.raises(RequestError, match="not a valid OTLP ExportLogsServiceRequest"):
        workers.prepare(b"\xff\xff\xff")
    assert workers.prepare(_request(1)).count == 1  # the worker is still there


def test_a_lost_worker_fails_its_request_retryably_and_the_workers_start_again(workers: Workers) -> None:
    before = _pids(workers)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match="retry"):
        for _ in range(50):  # until the pool notices
            workers.prepare(_request(1))
            time.sleep(0.05)
    assert workers.prepare(_request(3)).count == 3
    assert not set(_pids(workers)) & set(before)


def test_workers_ignore_ctrl_c_and_stop_refuses_more_work(workers: Workers) -> None:
    for pid in _pids(workers):
        os.kill(pid, signal.SIGINT)  # what a Ctrl-C sends the whole process group
    time.sleep(0.2)
    assert workers.prepare(_request(2)).count == 2
    pids = _pids(workers)
    workers.stop()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(WorkerError, match="stopped"):
        workers.prepare(_request(1))


_ORPHAN = """
import sys, time
sys.path.insert(0, {root!r})
from sealer.prepare import Rules
from sealer.workers import Workers
if __name__ == "__main__":
    workers = Workers(Rules(), workers=2)
    workers.start()
    print(*workers._pool._processes, flush=True)
    time.sleep(600)
"""


def test_workers_exit_when_the_sealer_is_killed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "sealer.py"
    script.write_text(_ORPHAN.format(root=os.getcwd()))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    parent.kill()  # kill -9: nothing in the sealer runs any more
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "sealing workers outlived the sealer"
        time.sleep(0.1)


def test_prepared_requests_seal_and_verify_deeply_timed_or_not(tmp_path, workers: Workers) -> None:  # type: ignore[no-untyped-def]
    """Records without a time take the seal time as Timestamp, as the verifier derives it."""
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", published.current, 3600)
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    assert pipeline.seal(workers.prepare(_request(5))) == 0
    assert pipeline.seal(workers.prepare(_request(4, timed=False)), producer="CN=orders") == 5
    pipeline.stop()
    checkpointer.stop()
    rows = store.select(
        "SELECT Seq, toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(SealedAt), Producer "
        "FROM otel_audit.logs ORDER BY Seq"
    )
    assert [r[0] for r in rows] == list(range(9))
    assert all(r[1] == 1_700_000_000_000_000_000 + r[0] and r[3] == "" for r in rows[:5])
    assert all(r[1] == r[2] and r[3] == "CN=orders" for r in rows[5:])
    for deep in (False, True):
        report = verify_origin(store, key.verifier(), tmp_path / "anchors", deep=deep)
        assert report.ok and report.records == 9, report.findings
    store.close()
