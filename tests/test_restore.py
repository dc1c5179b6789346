"""Rows the store lost: recovery refuses to continue, `restore` puts them back from the journal."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import urllib.request

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from backend.log_verifier import verify_origin
from backend.store import Store
from otel_audit.anchors import latest_anchor
from otel_audit.chain import chain_next
from otel_audit.errors import JournalError, StoreError
from otel_audit.merkle import hash_leaf
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.journal import Frame, Journal, _segment_header, journal_dir, read_frames
from sealer.pipeline import Pipeline, PublishedLog
from sealer.recovery import recover
from sealer.restore import restore
from sealer.state import LogState

from .conftest import Sealer, metrics_url, run_cli, start_sealer
from .producers import send_audit_events
from .test_pipeline import items

KEY = SignerKey.generate("restore.example/audit")


def seal(store: Store, tmp_path, total: int, checkpoint_at: tuple[int, ...]) -> None:
    """Seal `total` records in batches of 50 through a pipeline with a journal, signing a
    checkpoint whenever the log reaches a size in `checkpoint_at`."""
    journal = Journal(tmp_path / "journal", KEY)
    published = PublishedLog(LogState.empty(KEY.name))
    checkpointer = Checkpointer(store, KEY, tmp_path / "anchors", published.current, 3600)
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes, journal=journal)
    pipeline.start()
    for start in range(0, total, 50):
        pipeline.seal(items(50, f"r{start}-"))
        if start + 50 in checkpoint_at:
            while pipeline.state.size < start + 50:  # published: the checkpointer signs it
                pass
            checkpointer.checkpoint_now()
    pipeline.stop()
    journal.close()


def delete(store: Store, where: str) -> None:
    store.command(f"ALTER TABLE otel_audit.logs DELETE WHERE {where} SETTINGS mutations_sync = 2")


def test_recovery_refuses_a_store_shorter_than_its_checkpoint_and_restore_fills_it(store, tmp_path):
    seal(store, tmp_path, 300, checkpoint_at=(100, 300))
    delete(store, "Seq >= 200")  # the checkpoints stay
    with pytest.raises(
        StoreError, match=r"lacks Seq 200\.\.299: its newest checkpoint signs 300.*otel-audit restore"
    ):
        recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors")
    restored = restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors")
    assert restored.ranges == ((200, 300),)
    report = verify_origin(store, KEY.verifier(), tmp_path / "anchors")
    assert report.ok and report.records == 300, report.findings
    assert recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors").size == 300
    assert restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors").ranges == ()


def test_recovery_refuses_a_hole_and_restore_fills_it(store, tmp_path):
    seal(store, tmp_path, 300, checkpoint_at=(300,))
    delete(store, "Seq >= 120 AND Seq < 170")
    with pytest.raises(StoreError, match=r"lacks 50 records inside Seq 0\.\.299 \(missing Seq 120\.\.169\)"):
        recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors")
    assert restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors").ranges == ((120, 170),)
    assert verify_origin(store, KEY.verifier(), tmp_path / "anchors", deep=True).ok
    assert recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors").size == 300


def test_recovery_refuses_a_store_behind_its_journal(store, tmp_path):
    seal(store, tmp_path, 150, checkpoint_at=(100,))
    delete(store, "Seq >= 100")  # acknowledged, journaled, not yet signed: lost all the same
    end = Journal(tmp_path / "journal", KEY).end
    with pytest.raises(StoreError, match=r"lacks Seq 100\.\.149: the journal holds them"):
        recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors", end)
    assert restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors").ranges == ((100, 150),)
    assert recover(store, KEY.name, KEY.verifier(), tmp_path / "anchors", end).size == 150


def _rewrite(tmp_path, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the journal's segments with `change` applied to every frame, CRCs made valid."""
    frames = list(read_frames(tmp_path / "journal", KEY.name))
    paths = sorted(journal_dir(tmp_path / "journal", KEY.name).glob("*.journal"))
    starts = [int(p.name.split(".")[0]) for p in paths] + [2**64]
    for path, first, end in zip(paths, starts, starts[1:]):
        held = [change(f).encode() for f in frames if first <= f.first < end]
        path.write_bytes(_segment_header(KEY.name, first) + b"".join(held))


def _altered(frame: Frame) -> Frame:
    if not frame.first <= 250 < frame.end:
        return frame
    entries = list(frame.entries)
    entries[250 - frame.first] = entries[250 - frame.first].replace(b"r250-", b"r999-")
    return Frame(frame.first, tuple(entries), frame.chain_before, frame.chain_after, frame.signature)


def _rechained(frame: Frame) -> Frame:  # the forger recomputes the chain but cannot sign it
    altered = _altered(frame)
    chain = altered.chain_before
    for entry in altered.entries:
        chain = chain_next(chain, hash_leaf(entry))
    return Frame(altered.first, altered.entries, altered.chain_before, chain, altered.signature)


@pytest.mark.parametrize(("change", "message"), [(_altered, "do not chain"), (_rechained, "not signed by")])
def test_restore_refuses_a_tampered_journal_and_writes_nothing(store, tmp_path, change, message):
    seal(store, tmp_path, 300, checkpoint_at=(300,))
    delete(store, "Seq >= 200")
    _rewrite(tmp_path, change)
    with pytest.raises(JournalError, match=message):
        restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors")
    assert store.seq_range(KEY.name) == (200, 0, 199)


def test_restore_refuses_a_journal_signed_by_another_key_even_beyond_every_checkpoint(store, tmp_path):
    seal(store, tmp_path, 100, checkpoint_at=(100,))
    forger = SignerKey.generate(KEY.name)  # the same origin, another key
    journal = Journal(tmp_path / "journal", forger)
    entry = read_frames(tmp_path / "journal", KEY.name).__next__().entries[0]
    before = journal.chain_head
    journal.append(100, [entry], before, chain_next(before, hash_leaf(entry)))
    with pytest.raises(JournalError, match="not signed by"):
        restore(store, tmp_path / "journal", KEY.verifier(), tmp_path / "anchors")
    assert store.seq_range(KEY.name) == (100, 0, 99)


@pytest.mark.integration
def test_serve_refuses_a_short_log_and_continues_after_restore(tmp_path, signer_key):
    first = start_sealer(tmp_path, signer_key)
    send_audit_events(first.endpoint, 300)
    assert first.stop() == 0  # the final checkpoint signs 300
    store = Store.open(first.store)
    delete(store, "Seq >= 200")
    store.close()
    args = ("--store", first.store, "--anchor-dir", str(first.anchor_dir))
    refused = run_cli("serve", "--key", str(tmp_path / "signer.key"), *args, "--grpc", "127.0.0.1:0",
                      "--http", "off", "--metrics", "off", cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 2
    assert re.search(r"lacks Seq 200\.\.299.*otel-audit restore", refused.stderr), refused.stderr
    journal = str(tmp_path / "otel-audit-data" / "journal")  # serve's default, under its cwd
    restored = run_cli("restore", "--journal", journal, "--key", first.verifier_key, *args)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    assert "restored Seq 200..299 (100 records)" in restored.stdout and "verify: OK" in restored.stdout
    second = start_sealer(tmp_path, signer_key)
    second.wait_for_output(r"continues at Seq 300")
    send_audit_events(second.endpoint, 50, start=300)
    assert second.stop() == 0
    assert first.verify().returncode == 0


@pytest.mark.integration
def test_restore_exits_1_on_a_tampered_journal(tmp_path, signer_key):
    first = start_sealer(tmp_path, signer_key)
    send_audit_events(first.endpoint, 300)
    assert first.stop() == 0
    store = Store.open(first.store)
    delete(store, "Seq >= 200")
    store.close()
    journal = tmp_path / "otel-audit-data" / "journal"
    entry = next(f for f in read_frames(journal, signer_key.name) if f.first <= 250 < f.end).entries[-1]
    for path in journal_dir(journal, signer_key.name).glob("*.journal"):
        data = bytearray(path.read_bytes())
        at = data.find(entry)
        if at >= 0:  # a bit of a lost record flipped: its frame's CRC no longer matches
            data[at + len(entry) // 2] ^= 1
            path.write_bytes(bytes(data))
    result = run_cli("restore", "--journal", str(journal), "--key", first.verifier_key,
                     "--store", first.store, "--anchor-dir", str(first.anchor_dir))  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "does not hold" in result.stderr  # the torn (damaged) frame is not counted as held


def _sealed(sealer: Sealer) -> float:
    with urllib.request.urlopen(metrics_url(sealer) + "/metrics", timeout=30) as response:
        text = response.read().decode()
    found = re.search(r"^otel_audit_records_sealed_total ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _keep_sending(endpoint: str, stop: threading.Event) -> None:
    """Export 200-record requests over a raw OTLP/gRPC stub until `stop` (the sealer is killed
    under it: those calls fail, and are not retried)."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    scope_logs = request.resource_logs.add().scope_logs.add()
    for i in range(200):
        record = scope_logs.log_records.add(event_name="audit", body=AnyValue(string_value=f"e{i}"))
        for key, value in (("user.id", "u"), ("audit.action", "a"), ("audit.outcome", "success")):
            record.attributes.add(key=key, value=AnyValue(string_value=value))
    with grpc.insecure_channel(endpoint) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        while not stop.is_set():
            with contextlib.suppress(grpc.RpcError):
                stub.Export(request, timeout=10)


@pytest.mark.integration
def test_a_restart_after_kill_9_under_load_signs_the_recovered_log_before_it_listens(tmp_path, signer_key):
    first = start_sealer(tmp_path, signer_key, interval="3600")  # no checkpoint before the kill
    stop = threading.Event()
    sender = threading.Thread(target=_keep_sending, args=(first.endpoint, stop), daemon=True)
    sender.start()
    deadline = time.monotonic() + 120
    while _sealed(first) < 2000 and time.monotonic() < deadline:  # under load
        time.sleep(0.05)
    first.stop(signal.SIGKILL)
    stop.set()
    sender.join()
    assert latest_anchor(first.anchor_dir, signer_key.name) is None
    second = start_sealer(tmp_path, signer_key, interval="3600")  # returns once it listens
    recovered = int(re.search(r"continues at Seq (\d+)", "".join(second.output)).group(1))  # type: ignore[union-attr]
    assert recovered >= 2000
    anchor = latest_anchor(second.anchor_dir, signer_key.name)
    assert anchor is not None and anchor.checkpoint.tree_size == recovered  # before any new record
    journal = str(tmp_path / "otel-audit-data" / "journal")
    busy = run_cli("restore", "--journal", journal, "--key", second.verifier_key, "--store", second.store)
    assert busy.returncode == 2 and "stop `otel-audit serve`" in busy.stderr  # one owner of a store
    second.stop(signal.SIGKILL)
    assert second.verify().returncode == 0
