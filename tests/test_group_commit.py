"""The pipeline's pieces on their own: sealing a group (sealer/groups.py, pure), the writer's
hand-over (sealer/group_commit.py) and the publisher (sealer/publisher.py), the last two with
a real embedded store; the whole pipeline is tests/test_pipeline.py's."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from otel_audit.columns import INSERT_COLUMNS
from otel_audit.errors import AuditError, SealerStoppedError, StoreDataError
from otel_audit.note import SignerKey
from sealer.group_commit import GroupCommit, HandOver, Tip
from sealer.groups import Batch, Group, seal_group
from sealer.journal import Journal, read_frames
from sealer.journaling import Journaling
from sealer.publisher import PublishedLog, Publisher
from sealer.state import LogState

from .test_pipeline import _eventually, items
from .test_seal import unencodable

ORIGIN = "group.example/audit"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z


class Released:
    """A `finish` that records each batch's outcome."""

    def __init__(self) -> None:
        self.outcomes: dict[int, AuditError | None] = {}

    def __call__(self, batches: Sequence[Batch], error: AuditError | None) -> None:
        for batch in batches:
            self.outcomes[id(batch)] = error
            batch.error = error
            batch.done.set()


def _group(before: LogState, *sizes: int) -> Group:
    group, refused = seal_group([Batch(items(n, f"g{i}-")) for i, n in enumerate(sizes)], before, T0)
    assert not refused
    return group


# -- sealing a group (pure) ------------------------------------------------------------------


def test_a_group_leaves_out_the_batch_the_store_cannot_hold_and_says_why() -> None:
    good, bad, later = Batch(items(3)), Batch(unencodable(2)), Batch(items(4))
    group, refused = seal_group([good, bad, later], LogState.empty(ORIGIN), T0)
    assert group.batches == [good, later] and len(group.blocks) == 2
    assert [(b, type(e)) for b, e in refused] == [(bad, StoreDataError)]
    assert (good.first_seq, later.first_seq, group.records) == (0, 3, 7)
    assert len(good.entries) == 3 and bad.entries == []


def test_a_group_extended_by_a_later_one_writes_both_under_one_token() -> None:
    first = _group(LogState.empty(ORIGIN), 2)
    second = _group(first.after, 3)
    first.extend(second)
    assert (first.before.size, first.after, first.records, len(first.blocks)) == (0, second.after, 5, 2)
    assert first.token == f"{ORIGIN}:0-4:{second.after.chain_head.hex()}"


# -- the writer's hand-over ------------------------------------------------------------------


def _writer(store, published: PublishedLog, finish: Released) -> tuple[GroupCommit, Publisher]:  # type: ignore[no-untyped-def]
    holder: list[GroupCommit] = []
    publisher = Publisher(
        store,
        published,
        writer_busy=lambda: holder[0].busy(),
        on_commit=lambda *_: None,
        publish_records=32_768,
        publish_seconds=0.5,
        read_back_attempts=2,
        metrics=None,
    )
    writer = GroupCommit(
        store,
        published,
        publisher,
        Journaling(None, store, finish),
        finish,
        queued=lambda: False,
        max_batch_records=10,
        gather_seconds=0.0,
        insert_attempts=1,
        metrics=None,
    )
    holder.append(writer)
    return writer, publisher


def test_the_hand_over_says_what_became_of_a_sealed_group(store) -> None:  # type: ignore[no-untyped-def]
    """Accepted on the tip it was sealed on; refused when the writer moved the tip back (an
    earlier write failed); sealed again when the writer re-ran a refused group meanwhile."""
    empty = LogState.empty(ORIGIN)
    writer, _ = _writer(store, PublishedLog(empty), Released())
    tip = writer.room()
    assert (tip.state, tip.reruns, writer.busy()) == (empty, 0, False)
    group = _group(empty, 4)
    assert writer.hand_over(group, tip) is HandOver.ACCEPTED
    assert writer.busy() and writer.room().state is group.after
    assert writer.hand_over(_group(empty, 1), tip) is HandOver.EARLIER_FAILED  # sealed on a stale tip
    on_top = writer.room()
    assert writer.hand_over(_group(on_top.state, 1), Tip(on_top.state, 1)) is HandOver.RESEAL
    assert writer.hand_over(_group(on_top.state, 2), on_top) is HandOver.ACCEPTED
    assert writer.room().state.size == 6  # both accepted groups, pending as one


def test_the_writer_commits_a_pending_group_and_releases_its_callers(store) -> None:  # type: ignore[no-untyped-def]
    empty = LogState.empty(ORIGIN)
    published, released = PublishedLog(empty), Released()
    writer, publisher = _writer(store, published, released)
    publisher.start()
    writer.start()
    group = _group(empty, 3, 2)
    assert writer.hand_over(group, writer.room()) is HandOver.ACCEPTED
    assert all(b.done.wait(30) for b in group.batches)
    assert [released.outcomes[id(b)] for b in group.batches] == [None, None]
    writer.drain()
    assert not writer.busy()
    assert publisher.wait_published(30, hurry=True)
    writer.stop()
    publisher.stop()
    assert published.current() is group.after and published.halted is None
    assert [seq for seq, _, _ in store.hashes_from(ORIGIN, 0)] == list(range(5))


# -- the journaler ----------------------------------------------------------------------------


def test_the_journaler_appends_a_committed_group_before_it_releases_the_callers(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    journal, released = Journal(tmp_path / "journal", SignerKey.generate(ORIGIN)), Released()
    journal_end_at_release: list[int | None] = []

    def finish(batches: Sequence[Batch], error: AuditError | None) -> None:
        journal_end_at_release.append(journal.end)
        released(batches, error)

    journaling = Journaling(journal, store, finish)
    journaling.start()
    group = _group(LogState.empty(ORIGIN), 2, 3)
    journaling.hand_over(group)
    journaling.shutdown()  # journals what was handed over first
    assert [released.outcomes[id(b)] for b in group.batches] == [None, None]
    assert journal_end_at_release == [5]
    frames = list(read_frames(tmp_path / "journal", ORIGIN))
    assert [entry for f in frames for entry in f.entries] == [e for b in group.batches for e in b.entries]
    late = _group(group.after, 1)
    journaling.hand_over(late)  # the stage is shut: refused, never left waiting
    assert isinstance(late.batches[0].error, SealerStoppedError)
    journal.close()


# -- the publisher -----------------------------------------------------------------------------


def _stored(store, before: LogState, n: int) -> LogState:  # type: ignore[no-untyped-def]
    group = _group(before, n)
    store.insert_blocks(INSERT_COLUMNS, group.blocks, group.token)
    return group.after


def test_while_the_writer_is_busy_commits_are_read_back_as_one_range(store) -> None:  # type: ignore[no-untyped-def]
    one = _stored(store, LogState.empty(ORIGIN), 3)
    two = _stored(store, one, 4)
    busy = threading.Event()
    busy.set()
    reported: list[tuple[int, int, bytes | None]] = []
    published = PublishedLog(LogState.empty(ORIGIN))
    publisher = Publisher(
        store,
        published,
        writer_busy=busy.is_set,
        on_commit=lambda first, end, hashes: reported.append((first, end, hashes)),
        publish_records=32_768,
        publish_seconds=3600,  # only the writer going idle ends the gathering
        read_back_attempts=2,
        metrics=None,
    )
    publisher.start()
    publisher.committed(one)
    publisher.committed(two)
    assert not publisher.wait_published(0.2)  # still gathering: the writer is busy
    busy.clear()
    publisher.nudge()
    assert publisher.wait_published(30)
    publisher.stop()
    assert published.current() is two
    assert [(first, end, hashes) for first, end, hashes in reported] == [
        (0, 7, store.column_hashes(ORIGIN, 0, 7))
    ]


def test_the_publisher_halts_naming_committed_rows_the_store_lacks(store) -> None:  # type: ignore[no-untyped-def]
    stored = _stored(store, LogState.empty(ORIGIN), 3)
    claimed = _group(stored, 2).after  # "committed", but never written
    published = PublishedLog(LogState.empty(ORIGIN))
    publisher = Publisher(
        store,
        published,
        writer_busy=lambda: False,
        on_commit=lambda *_: None,
        publish_records=32_768,
        publish_seconds=0.5,
        read_back_attempts=1,
        metrics=None,
    )
    publisher.start()
    publisher.committed(claimed)
    assert _eventually(lambda: published.halted is not None)
    publisher.stop()
    assert "Seq 3..4" in str(published.halted)
    assert published.current().size == 0  # nothing past the halt is published
