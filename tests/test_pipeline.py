"""The sealing pipeline against a real embedded ClickHouse, including store failures."""

from __future__ import annotations

import time

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from backend.error_codes import code_of
from backend.log_verifier import verify_origin
from backend.store import Store
from otel_audit.columns import COLUMN_HASH_SQL, DERIVED_COLUMNS
from otel_audit.errors import BackpressureError, SealerStoppedError, StoreError, StoreUnavailableError
from otel_audit.note import SignerKey
from sealer.checkpointer import Checkpointer
from sealer.pipeline import Pipeline, PublishedLog
from sealer.prepare import Prepared, Rules, prepare_request
from sealer.recovery import recover
from sealer.state import LogState

ORIGIN = "pipeline.example/audit"
TABLE_ALREADY_EXISTS = 57  # the engine's error code


def items(n: int, tag: str = "r") -> Prepared:
    """n records of one request, prepared as a sealing worker prepares them."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "svc"
    scope_logs = resource_logs.scope_logs.add()
    for i in range(n):
        scope_logs.log_records.add(body=AnyValue(string_value=f"{tag}{i}"))
    return prepare_request(request.SerializeToString(), Rules())


def _eventually(condition, seconds: float = 30) -> bool:  # type: ignore[no-untyped-def]
    """Whether `condition` comes true within `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _attach_logs(store: Store, attempts: int = 100) -> None:
    """ATTACH the table a test detached. Right after a DETACH the engine may still hold the
    table's name a moment (TABLE_ALREADY_EXISTS, code 57): wait for it, a bounded number of
    times, then let the last attempt's error through."""
    for _ in range(attempts - 1):
        try:
            store.command("ATTACH TABLE otel_audit.logs")
            return
        except StoreError as exc:
            if code_of(exc.__cause__) != TABLE_ALREADY_EXISTS:
                raise
        time.sleep(0.05)
    store.command("ATTACH TABLE otel_audit.logs")


def test_concurrent_batches_get_contiguous_seq_and_one_chain(store, tmp_path):
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    batches = [pipeline.submit(items(50, f"b{b}-")) for b in range(20)]
    for batch in batches:
        batch.wait()
    pipeline.stop()
    assert sorted(b.first_seq for b in batches) == list(range(0, 1000, 50))
    seqs = [row[0] for row in store.hashes_from(ORIGIN, 0)]
    assert seqs == list(range(1000))
    assert pipeline.state.size == 1000


def test_store_failure_returns_retryable_error_and_leaves_no_gap(store, tmp_path):
    key = SignerKey.generate(ORIGIN)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), insert_attempts=2)
    pipeline.start()
    assert pipeline.seal(items(10)) == 0
    store.command("DETACH TABLE otel_audit.logs")  # the store breaks under the sealer
    with pytest.raises(StoreUnavailableError, match="failed"):
        pipeline.seal(items(5, "lost"))
    assert pipeline.state.size <= 10  # nothing more was committed, nothing advanced
    store.command("ATTACH TABLE otel_audit.logs")
    assert _eventually(lambda: pipeline.state.size == 10)  # published once read back
    assert pipeline.seal(items(5, "after")) == 10  # no gap: the failed batch left no trace
    pipeline.stop()
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600)
    checkpointer.stop()  # signs the final checkpoint
    report = verify_origin(store, key.verifier(), tmp_path / "anchors")
    assert report.ok and report.records == 15, report.findings


def test_recovery_continues_from_the_stored_checkpoint(store, tmp_path):
    key = SignerKey.generate(ORIGIN)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    pipeline.seal(items(37))
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600)
    checkpointer.checkpoint_now()
    pipeline.seal(items(5))  # sealed after the checkpoint: recovery must replay these
    pipeline.stop()
    state = recover(store, ORIGIN, key.verifier(), tmp_path / "anchors")
    assert (state.size, state.tree.root(), state.chain_head) == (
        pipeline.state.size,
        pipeline.state.tree.root(),
        pipeline.state.chain_head,
    )


def test_recovery_refuses_a_store_behind_its_anchor(store, tmp_path):
    key = SignerKey.generate(ORIGIN)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    pipeline.seal(items(20))
    pipeline.stop()
    Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600).checkpoint_now()
    store.command("ALTER TABLE otel_audit.logs DELETE WHERE Seq >= 15 SETTINGS mutations_sync = 2")
    store.command("TRUNCATE TABLE otel_audit.checkpoints")
    with pytest.raises(Exception, match="truncated or rolled back"):
        recover(store, ORIGIN, key.verifier(), tmp_path / "anchors")


def test_batches_queued_while_the_store_breaks_are_either_written_or_refused(store, tmp_path):
    """Many batches queued while the store breaks and comes back: whatever was acknowledged
    is in the log, whatever was refused is not, and Seq stays contiguous."""
    key = SignerKey.generate(ORIGIN)
    published = PublishedLog(LogState.empty(ORIGIN))
    checkpointer = Checkpointer(store, key, tmp_path / "anchors", published.current, 3600)
    pipeline = Pipeline(
        store, published, on_commit=checkpointer.record_column_hashes, insert_attempts=1, max_batch_records=20
    )
    pipeline.start()
    pipeline.seal(items(3, "warm"))
    first = [pipeline.submit(items(10, f"a{i}-")) for i in range(10)]
    store.command("DETACH TABLE otel_audit.logs")
    second = [pipeline.submit(items(10, f"b{i}-")) for i in range(10)]
    outcomes = []
    for batch in first + second:
        batch.done.wait()
        outcomes.append(batch.error is None)
    store.command("ATTACH TABLE otel_audit.logs")
    pipeline.seal(items(4, "after"))
    pipeline.stop()
    checkpointer.stop()
    assert not all(outcomes[10:]), "nothing should be written while the table is detached"
    bodies = {row[0] for row in store.client.query("SELECT Body FROM otel_audit.logs").result_rows}
    tags = [f"a{i}-" for i in range(10)] + [f"b{i}-" for i in range(10)]
    for tag, ok in zip(tags, outcomes):
        written = {f"{tag}{j}" for j in range(10)} <= bodies
        assert written == ok, f"batch acknowledged={ok} but its records written={written}"
    seqs = [row[0] for row in store.hashes_from(ORIGIN, 0)]
    assert seqs == list(range(len(seqs)))
    report = verify_origin(store, key.verifier(), tmp_path / "anchors")
    assert report.ok, report.findings


def test_column_hash_of_rows_without_producer_is_the_first_releases(store):
    """Producer was added after checkpoints had signed column hashes: rows without one must
    hash exactly as before, or every older checkpoint's columns commitment would break."""
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    pipeline.seal(items(3))
    pipeline.seal(items(2, "p"), producer="CN=orders,O=Acme")
    pipeline.stop()
    first_release = ", ".join(c for c in DERIVED_COLUMNS if c != "Producer")
    rows = store.select(
        f"SELECT Producer, {COLUMN_HASH_SQL} = SHA256(formatRowNoNewline('RowBinary', {first_release})) "
        "FROM otel_audit.logs ORDER BY Seq"
    )
    assert rows == [("", True)] * 3 + [("CN=orders,O=Acme", False)] * 2


def test_records_sealed_on_top_of_a_failed_write_are_refused_and_sealing_resumes(store, tmp_path):
    """The sealer works ahead of the writer: when a write fails, whatever was sealed on top
    of it is refused too (retryable), and sealing continues from what was committed."""
    import threading

    key = SignerKey.generate(ORIGIN)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), insert_attempts=1)
    pipeline.start()
    assert pipeline.seal(items(3, "warm")) == 0
    gate, real_insert = threading.Event(), store.insert_blocks

    def held_insert(columns, blocks, token):  # the write in flight while the next group is sealed
        gate.wait()
        real_insert(columns, blocks, token)

    store.insert_blocks = held_insert  # type: ignore[method-assign]
    store.command("DETACH TABLE otel_audit.logs")

    writer = pipeline._writer
    failing = pipeline.submit(items(10, "a"))
    assert _eventually(lambda: writer._pending is None and writer._writing)  # the writer holds `failing`
    on_top = pipeline.submit(items(10, "b"))
    assert _eventually(lambda: writer._pending is not None)  # `on_top` is sealed, waiting for the writer
    gate.set()
    for batch in (failing, on_top):
        assert batch.done.wait(30)
        assert isinstance(batch.error, StoreUnavailableError)
    assert "earlier write" in str(on_top.error)
    _attach_logs(store)
    assert pipeline.seal(items(4, "after")) == 3  # no gap, no fork: sealed on the committed tip
    pipeline.stop()
    Checkpointer(store, key, tmp_path / "anchors", lambda: pipeline.state, 3600).stop()
    assert [row[0] for row in store.hashes_from(ORIGIN, 0)] == list(range(7))
    report = verify_origin(store, key.verifier(), tmp_path / "anchors")
    assert report.ok and report.records == 7, report.findings


def test_a_failure_after_a_write_halts_sealing_rather_than_reusing_its_seq(store):
    """Rows written but their state not published (a bug in what follows the INSERT): the
    checkpoints could not move past them. The pipeline stops sealing, without ever reusing
    a Seq, and a restart continues from the store."""
    calls = []

    def failing_on_second_commit(first, end, hashes):
        calls.append(first)
        if len(calls) == 2:
            raise RuntimeError("a bug")

    pipeline = Pipeline(  # each commit on its own
        store, PublishedLog(LogState.empty(ORIGIN)), publish_records=1, on_commit=failing_on_second_commit
    )
    pipeline.start()
    assert pipeline.seal(items(3)) == 0
    assert pipeline.seal(items(4, "x")) == 3  # written, so acknowledged
    # the publisher runs beside the writer: wait for it
    assert _eventually(lambda: "Restart it" in (pipeline.problem() or "")), "the pipeline did not halt"
    assert pipeline.state.size == 3  # the failed publication did not move the state
    with pytest.raises(SealerStoppedError, match="Restart it"):
        pipeline.seal(items(2, "y"))
    pipeline.stop()
    assert "Restart it" in (pipeline.problem() or "")
    assert [row[0] for row in store.hashes_from(ORIGIN, 0)] == list(range(7))


def test_the_writer_waits_for_records_on_their_way_but_never_for_a_lone_caller(store):
    """Every INSERT costs the engine a fixed amount of work, so records already on their way
    share the INSERT of what is pending; a caller with nobody else arriving is not delayed."""
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), gather_seconds=60)
    inserts: list[int] = []
    real_insert = store.insert_blocks

    def counted(columns, blocks, token):  # type: ignore[no-untyped-def]
        inserts.append(len(blocks))
        real_insert(columns, blocks, token)

    store.insert_blocks = counted  # type: ignore[method-assign]
    pipeline.start()
    alone = pipeline.submit(items(3, "alone"))
    assert alone.done.wait(30), "a lone caller waited for the gathering time"
    with pipeline.arriving():  # another request is being prepared
        first = pipeline.submit(items(5, "a"))
        assert not first.done.wait(0.5)  # held for what is on its way
        second = pipeline.submit(items(5, "b"))
    assert first.done.wait(30) and second.done.wait(30)
    pipeline.stop()
    assert inserts == [1, 2]  # the lone batch alone, then both batches in one INSERT
    assert [row[0] for row in store.hashes_from(ORIGIN, 0)] == list(range(13))


def test_records_are_refused_before_any_work_when_the_queue_is_full(store):
    import threading

    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), max_queued_records=5)
    gate, real_insert = threading.Event(), store.insert_blocks

    def held_insert(columns, blocks, token):  # type: ignore[no-untyped-def]
        gate.wait()
        real_insert(columns, blocks, token)

    store.insert_blocks = held_insert  # type: ignore[method-assign]
    pipeline.start()
    held = pipeline.submit(items(5))  # written only once the gate opens: the queue is full
    with pytest.raises(BackpressureError, match="queue is full"), pipeline.arriving():
        raise AssertionError("a full pipeline let a request be prepared")
    gate.set()
    held.wait()
    with pipeline.arriving():  # room again
        pipeline.seal(items(2))
    pipeline.stop()
    with pytest.raises(SealerStoppedError, match="shutting down"), pipeline.arriving():
        raise AssertionError("a stopped pipeline let a request be prepared")


@pytest.mark.parametrize("publish_records", [5, 1000])
def test_a_busy_writer_lets_commits_pile_up_before_reading_them_back(store, publish_records):
    """Reading column hashes back costs the engine per query, so commits made while the writer
    is busy are read back together, once enough of them piled up (publish_records) or the
    writer is idle. Callers are released at commit either way."""
    import threading

    reported: list[tuple[int, int]] = []
    pipeline = Pipeline(
        store,
        PublishedLog(LogState.empty(ORIGIN)),
        publish_records=publish_records,
        publish_seconds=60,
        on_commit=lambda first, end, hashes: reported.append((first, end)),
    )
    gates = {1: threading.Event(), 2: threading.Event()}  # held INSERTs, by their number
    inserts: list[int] = []
    real_insert = store.insert_blocks

    def held_insert(columns, blocks, token):  # type: ignore[no-untyped-def]
        inserts.append(len(blocks))
        if len(inserts) - 1 in gates:
            gates[len(inserts) - 1].wait()
        real_insert(columns, blocks, token)

    store.insert_blocks = held_insert  # type: ignore[method-assign]
    pipeline.start()
    pipeline.submit(items(3, "alone")).wait()
    assert _eventually(lambda: pipeline.state.size == 3), "an idle writer's commit was not published"
    second = pipeline.submit(items(5, "b"))  # INSERT 1, held
    assert _eventually(lambda: len(inserts) == 2)
    third = pipeline.submit(items(5, "c"))  # pending behind it: INSERT 2, held
    gates[1].set()
    second.wait()  # released at commit, while the writer is busy with the third
    assert _eventually(lambda: len(inserts) == 3)
    if publish_records == 5:  # enough piled up: read back now
        assert _eventually(lambda: pipeline.state.size == 8)
    else:  # too few: kept for the next commit
        assert not _eventually(lambda: pipeline.state.size > 3, seconds=0.5)
    gates[2].set()
    third.wait()
    assert _eventually(lambda: pipeline.state.size == 13), "an idle writer's commits were not published"
    pipeline.stop()
    assert reported == ([(0, 3), (3, 8), (8, 13)] if publish_records == 5 else [(0, 3), (3, 13)])
    assert store.column_hashes(ORIGIN, 0, 13) == b"".join(
        store.column_hashes(ORIGIN, first, end) for first, end in reported
    )


def test_force_flush_waits_until_every_submitted_record_is_committed_and_published(store):
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)), publish_seconds=60)
    pipeline.start()
    try:
        batches = [pipeline.submit(items(10, f"f{b}-")) for b in range(5)]
        assert pipeline.force_flush(60)
        assert [(b.done.is_set(), b.error) for b in batches] == [(True, None)] * 5
        assert pipeline.state.size == 50
    finally:
        pipeline.stop()


def test_the_published_log_keeps_the_first_halt() -> None:
    published = PublishedLog(LogState.empty(ORIGIN))
    assert published.halted is None
    published.halt("rows are gone")
    published.halt("another reason")
    assert published.halted == "rows are gone"
