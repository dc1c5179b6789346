"""Disk full and lost rows: the sealer refuses records while the store's disk is nearly full,
and halts (never acknowledging more, never signing) once the store lacks acknowledged rows.

Real chDB stores and a real serve; only the free-space reading is given by the test where a
test cannot fill a disk (tests/test_diskfull.py fills a real one)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub

from backend.read_commands import run
from backend.store import Store
from otel_audit.errors import (
    ConfigError,
    DiskFullError,
    SealerStoppedError,
    StoreError,
    StoreUnavailableError,
)
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.disk import ENGINE_MIN_FREE_BYTES, DiskGuard, parse_size
from sealer.metrics import SealerMetrics
from sealer.pipeline import Pipeline, PublishedLog
from sealer.read_api import call, socket_path
from sealer.state import LogState

from .conftest import http_get, service_in_process
from .test_pipeline import ORIGIN, _eventually, items

MIB = 1 << 20


class _Disk:
    """A file system's free bytes, as the test says."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.now = 0.0

    def guard(self, minimum: int = 100 * MIB) -> DiskGuard:
        self.episodes: list[bool] = []
        return DiskGuard(
            Path("/store"),
            minimum,
            free_bytes=lambda _: self.free,
            clock=lambda: self.now,
            recheck_seconds=0,
            on_change=self.episodes.append,
        )


@pytest.fixture
def store(tmp_path):  # type: ignore[no-untyped-def]
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    s.ensure_schema()
    yield s
    s.close()


def _delete(store: Store, where: str) -> None:
    store.command(f"ALTER TABLE otel_audit.logs DELETE WHERE {where} SETTINGS mutations_sync = 2")


# -- the free-space guard ----------------------------------------------------------------


def test_the_guard_refuses_below_the_minimum_says_so_once_and_recovers(caplog) -> None:  # type: ignore[no-untyped-def]
    disk = _Disk(500 * MIB)
    guard = disk.guard()
    caplog.set_level(logging.WARNING, "sealer.disk")
    assert guard.refusal() is None and guard.free_bytes == 500 * MIB
    disk.free = 99 * MIB
    why = guard.refusal()
    assert (
        why is not None and "disk is nearly full: 99 MiB free on /store" in why and "--min-free-disk" in why
    )
    for _ in range(5):
        assert guard.refusal() is not None
        guard.refused()
    assert len(caplog.records) == 1, "one line when the episode starts, not one per call"
    disk.now += 11  # refused calls are reported, at most every log_every_seconds
    guard.refused()
    assert "refused 6 Export call(s)" in caplog.records[-1].getMessage()
    disk.free = 101 * MIB
    assert guard.refusal() is None
    assert any("has room again" in r.getMessage() for r in caplog.records)
    assert disk.episodes == [True, False]  # merges paused once, resumed once


def test_an_unreadable_file_system_is_refused_too() -> None:
    def broken(_: Path) -> int:
        raise FileNotFoundError("no such directory")

    guard = DiskGuard(Path("/gone"), 100 * MIB, free_bytes=broken)
    assert "cannot read the free space" in (guard.refusal() or "") and guard.free_bytes == -1


@pytest.mark.parametrize(
    ("text", "size"), [("256MiB", 256 * MIB), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("100000000", 10**8)]
)
def test_min_free_disk_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [("lots", "give a size"), ("64MiB", "engine's own limit")])
def test_min_free_disk_refuses_what_is_unusable(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_size(text)
    assert parse_size(str(ENGINE_MIN_FREE_BYTES + 1)) > ENGINE_MIN_FREE_BYTES


def test_the_pipeline_refuses_records_while_the_disk_is_nearly_full(store) -> None:  # type: ignore[no-untyped-def]
    disk = _Disk(500 * MIB)
    metrics = SealerMetrics()
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), metrics=metrics, disk=disk.guard())
    pipeline.start()
    try:
        assert pipeline.seal(items(3)) == 0
        disk.free = 10 * MIB
        assert "nearly full" in (pipeline.problem() or "")
        with pytest.raises(DiskFullError, match="nearly full") as refused:
            pipeline.seal(items(3, "refused"))
        assert isinstance(refused.value, StoreUnavailableError)  # retryable: UNAVAILABLE / 503
        with pytest.raises(DiskFullError), pipeline.arriving():
            pass  # refused before a worker spends time on the request
        assert metrics.rejected.labels("disk_full")._value.get() == 2
        disk.free = 500 * MIB
        assert pipeline.problem() is None
        assert pipeline.seal(items(2, "after")) == 3  # nothing was sealed meanwhile: no gap
    finally:
        pipeline.stop()
    assert [row[0] for row in store.hashes_from(ORIGIN, 0)] == [0, 1, 2, 3, 4]


def test_serve_refuses_exports_and_is_not_ready_while_the_disk_is_nearly_full(tmp_path: Path) -> None:
    """A sealer asked to keep more free than any disk has: Export is UNAVAILABLE with the
    reason, /readyz 503 with it, the metrics count it and show the free bytes, status says it."""
    with service_in_process(tmp_path, "disk.example/audit", min_free_disk_bytes=1 << 62) as service:
        assert service.grpc is not None and service.health is not None and service.read_api is not None
        request = ExportLogsServiceRequest()
        request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"
        with grpc.insecure_channel(service.grpc.address) as channel, pytest.raises(grpc.RpcError) as refused:
            LogsServiceStub(channel).Export(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "disk is nearly full" in (refused.value.details() or "")
        base = f"http://{service.health.address}"
        status, text = http_get(base + "/readyz")
        assert status == 503 and "disk is nearly full" in text
        _, metrics = http_get(base + "/metrics")
        assert 'otel_audit_records_rejected_total{reason="disk_full"} 1.0' in metrics
        assert 'reason="unavailable"' not in metrics  # counted once, as what it is
        free = [line for line in metrics.splitlines() if line.startswith("otel_audit_store_free_bytes ")]
        assert free and float(free[0].split()[1]) > 0
        status_params = {"keys": [], "origin": None, "json": True}
        path = socket_path(service.config.store)
        assert path is not None
        result = call(path, "status", status_params)
        assert result is not None
        sealer = json.loads(result.out)["sealer"]
        assert sealer["ready"] is False and "disk is nearly full" in sealer["problem"]
        assert sealer["min_free_disk_bytes"] == 1 << 62 and sealer["store_free_bytes"] > 0
        text_result = call(path, "status", {**status_params, "json": False})
        assert (
            text_result is not None
            and "sealer: NOT READY: the store's disk is nearly full" in text_result.out.decode()
        )


def test_status_without_a_running_sealer_says_it_read_the_store(store) -> None:  # type: ignore[no-untyped-def]
    out = run(store, "status", {"keys": [], "origin": ORIGIN}).out.decode()
    assert "sealer: not reached" in out


# -- rows the store lost -----------------------------------------------------------------


def _lose_after_commit(pipeline: Pipeline, store: Store, where: str) -> None:
    """The engine loses rows right after they were committed (as a part whose files are empty
    is dropped): delete them just before the publisher reads them back."""
    reader = pipeline._reader
    read = reader.column_hashes

    def lossy(origin: str, first: int, end: int) -> bytes:
        _delete(store, where)
        return read(origin, first, end)

    reader.column_hashes = lossy  # type: ignore[method-assign]


def test_the_publisher_halts_when_acknowledged_rows_are_gone(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", published.current, 3600)
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes, read_back_attempts=2)
    pipeline.start()
    try:
        _lose_after_commit(pipeline, store, "Seq >= 40 AND Seq < 60")
        assert pipeline.seal(items(100)) == 0  # committed: acknowledged before the read-back
        assert _eventually(lambda: pipeline.problem() is not None)
        problem = pipeline.problem() or ""
        assert "Seq 40..59 of log 'pipeline.example/audit' (20 record(s)) were acknowledged" in problem
        assert "otel-audit restore" in problem and "Restoring lost rows" in problem
        with pytest.raises(SealerStoppedError, match=r"Seq 40\.\.59"):
            pipeline.seal(items(1, "later"))  # acknowledges nothing more
        assert pipeline.state.size == 0  # never published, so never signed
        assert checkpointer.checkpoint_now() is None
        assert store.latest_checkpoint(ORIGIN) is None
    finally:
        pipeline.stop()


def test_a_store_that_cannot_read_back_is_refused_until_it_does(store) -> None:  # type: ignore[no-untyped-def]
    """A read error is tried again; while the store does not give back what was committed,
    records are refused (retryable) and nothing is published; then all goes on."""
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), read_back_attempts=2)
    reader = pipeline._reader
    read = reader.column_hashes
    failures = [StoreUnavailableError("query failed: the store went away a moment")]

    def flaky(origin: str, first: int, end: int) -> bytes:
        if failures:
            raise failures.pop()
        return read(origin, first, end)

    reader.column_hashes = flaky  # type: ignore[method-assign]
    pipeline.start()
    try:
        pipeline.seal(items(10))
        assert _eventually(lambda: pipeline.state.size == 10)  # the second try read it back
        assert pipeline.problem() is None
        down = True

        def unreadable(origin: str, first: int, end: int) -> bytes:
            if down:
                raise StoreUnavailableError("query failed: the store is gone")
            return read(origin, first, end)

        reader.column_hashes = unreadable  # type: ignore[method-assign]
        pipeline.seal(items(5, "unconfirmed"))
        assert _eventually(lambda: pipeline.problem() is not None)
        problem = pipeline.problem() or ""
        assert (
            "Seq 10..14 of log 'pipeline.example/audit' were acknowledged, but the store does not" in problem
        )
        with pytest.raises(StoreUnavailableError, match="refused \\(retryable\\) until it does"):
            pipeline.seal(items(1, "refused"))
        assert pipeline.state.size == 10
        down = False
        assert _eventually(lambda: pipeline.state.size == 15)
        assert pipeline.problem() is None and pipeline.seal(items(1, "again")) == 15
    finally:
        pipeline.stop()


@pytest.mark.parametrize(
    ("where", "missing"),
    [
        ("Seq >= 100 AND Seq < 150", "Seq 100..149"),  # a hole
        ("Seq >= 200", "Seq 200..299"),  # the newest rows
        ("Seq < 300", "Seq 0..299"),  # all of them
        ("Seq = 7 OR Seq = 250", "Seq 7, Seq 250"),
    ],
)
def test_the_checkpointer_never_signs_over_rows_the_store_lacks(  # type: ignore[no-untyped-def]
    store, tmp_path: Path, where: str, missing: str
) -> None:
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(
        store, key, tmp_path / "anchors", published.current, 3600, on_lost=published.halt
    )
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    try:
        pipeline.seal(items(300))
        assert _eventually(lambda: pipeline.state.size == 300)
        _delete(store, where)
        with pytest.raises(
            StoreError, match=f"no checkpoint signed at tree size 300: {re.escape(missing)} of log"
        ):
            checkpointer.checkpoint_now()
        assert store.latest_checkpoint(ORIGIN) is None and not (tmp_path / "anchors").exists()
        assert missing in (pipeline.problem() or "")  # halted, naming the range
        with pytest.raises(SealerStoppedError):
            pipeline.seal(items(1, "later"))
    finally:
        pipeline.stop()


def test_the_checkpointer_signs_when_every_row_is_there(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", published.current, 3600)
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    try:
        pipeline.seal(items(30))
        assert _eventually(lambda: pipeline.state.size == 30)
        assert checkpointer.checkpoint_now() is not None
        pipeline.seal(items(20, "more"))
        assert _eventually(lambda: pipeline.state.size == 50)
        assert checkpointer.checkpoint_now() is not None and store.latest_checkpoint(ORIGIN) is not None
    finally:
        pipeline.stop()


def _empty_newest_part(store: Store) -> str:
    """Leave the newest part of the log with empty data files, as a full disk left them."""
    name, path = store.select(
        "SELECT name, path FROM system.parts WHERE database = 'otel_audit' AND table = 'logs' AND active "
        "ORDER BY modification_time DESC, name DESC LIMIT 1"
    )[0]
    for file in Path(path).iterdir():
        if file.suffix == ".bin":
            file.write_bytes(b"")
    return str(name)


def test_the_checkpointer_never_signs_over_a_part_the_engine_cannot_read(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine still counts a part whose files a full disk left empty (count() comes from
    the part's metadata), and drops it only at its next start: the check reads Seq itself."""
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(
        store, key, tmp_path / "anchors", published.current, 3600, on_lost=published.halt
    )
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    try:
        pipeline.seal(items(100))
        pipeline.seal(items(50, "b"))
        assert _eventually(lambda: pipeline.state.size == 150)
        part = _empty_newest_part(store)
        assert store.select(f"SELECT count() FROM otel_audit.logs WHERE Origin = '{ORIGIN}'")[0][0] == 150
        with pytest.raises(StoreError, match=rf"Seq 100\.\.149 of log .* cannot read its part\(s\) {part}"):
            checkpointer.checkpoint_now()
        assert store.latest_checkpoint(ORIGIN) is None
        assert "Seq 100..149" in (pipeline.problem() or "")
    finally:
        pipeline.stop()


def test_the_publisher_halts_on_a_part_the_engine_cannot_read(store) -> None:  # type: ignore[no-untyped-def]
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), read_back_attempts=2)
    pipeline.start()
    try:
        pipeline.seal(items(10))
        assert _eventually(lambda: pipeline.state.size == 10)
        reader = pipeline._reader
        read = reader.column_hashes

        def damaged(origin: str, first: int, end: int) -> bytes:
            _empty_newest_part(store)
            return read(origin, first, end)

        reader.column_hashes = damaged  # type: ignore[method-assign]
        pipeline.seal(items(7, "damaged"))
        assert _eventually(lambda: pipeline.problem() is not None)
        assert "Seq 10..16 of log 'pipeline.example/audit' (7 record(s)) were acknowledged" in (
            pipeline.problem() or ""
        )
        assert pipeline.state.size == 10
    finally:
        pipeline.stop()


def test_a_damaged_merged_part_is_named_whole_signed_rows_too(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A merge the full disk broke holds rows signed before as well as new ones: the sealer
    names every row of it, not only those of the checkpoint it refuses."""
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(
        store, key, tmp_path / "anchors", published.current, 3600, on_lost=published.halt
    )
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    try:
        pipeline.seal(items(100))
        assert _eventually(lambda: pipeline.state.size == 100) and checkpointer.checkpoint_now() is not None
        pipeline.seal(items(50, "b"))
        assert _eventually(lambda: pipeline.state.size == 150)
        store.command("OPTIMIZE TABLE otel_audit.logs FINAL")  # one part: Seq 0..149
        _empty_newest_part(store)
        with pytest.raises(
            StoreError, match=r"signed at tree size 150: Seq 0\.\.149 of log .* \(150 record\(s\)\)"
        ):
            checkpointer.checkpoint_now()
    finally:
        pipeline.stop()


def test_merges_can_be_paused_while_the_disk_is_nearly_full(store) -> None:  # type: ignore[no-untyped-def]
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    try:
        pipeline.seal(items(5))
        pipeline.seal(items(5, "b"))
    finally:
        pipeline.stop()
    store.pause_merges(True)
    with pytest.raises(StoreUnavailableError, match=r"[Cc]ancel"):
        store.command("OPTIMIZE TABLE otel_audit.logs FINAL")
    store.pause_merges(False)
    store.command("OPTIMIZE TABLE otel_audit.logs FINAL")
    parts = "SELECT count() FROM system.parts WHERE database = 'otel_audit' AND table = 'logs' AND active"
    assert store.select(parts)[0][0] == 1
