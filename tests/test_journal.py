"""The journal (sealer/journal.py): round trip, torn tails, pruning, and the pipeline's copy."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess

import pytest

from backend.store import Store
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.columns import StoredRow
from otel_audit.errors import ConfigError, JournalError, StoreUnavailableError
from otel_audit.merkle import hash_leaf
from otel_audit.note import SignerKey
from sealer.journal import SPARE, Frame, Journal, Keep, catch_up, journal_dir, prune_segments, read_frames
from sealer.pipeline import Pipeline, PublishedLog
from sealer.state import LogState

from .test_pipeline import items

KEY = SignerKey.generate("journal.example/audit")


def chained(entries: list[bytes], before: bytes) -> bytes:
    for entry in entries:
        before = chain_next(before, hash_leaf(entry))
    return before


def append(journal: Journal, first: int, entries: list[bytes]) -> None:
    before = journal.chain_head
    journal.append(first, entries, before, chained(entries, before))


def test_frames_round_trip_and_check_out(tmp_path):
    journal = Journal(tmp_path, KEY)
    append(journal, 0, [b"a", b"bb"])
    append(journal, 2, [b"c" * 1000])
    journal.close()
    frames = list(read_frames(tmp_path, KEY.name))
    assert [(f.first, f.entries) for f in frames] == [(0, (b"a", b"bb")), (2, (b"c" * 1000,))]
    leaves, chains = frames[1].check(KEY.name, KEY.verifier())
    assert leaves == [hash_leaf(b"c" * 1000)] and chains[-1] == frames[1].chain_after
    folder = journal_dir(tmp_path, KEY.name)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    assert Journal(tmp_path, KEY).end == 3  # reopened: continues after the last frame


def test_an_appended_frame_must_continue_the_journal(tmp_path):
    journal = Journal(tmp_path, KEY)
    append(journal, 0, [b"a"])
    with pytest.raises(JournalError, match="ends at Seq 1; cannot append Seq 5"):
        append(journal, 5, [b"b"])


def test_a_torn_tail_is_cut_at_open_and_never_read(tmp_path):
    journal = Journal(tmp_path, KEY)
    append(journal, 0, [b"one", b"two"])
    append(journal, 2, [b"three"])
    offset = journal._offset
    journal.close()
    segment = next(journal_dir(tmp_path, KEY.name).glob("*.journal"))
    torn = Frame(3, (b"four" * 50,), bytes(32), bytes(32), bytes(64)).encode()
    with open(segment, "r+b") as f:  # a crash in the middle of the next append
        f.seek(offset)
        f.write(torn[: len(torn) // 2])
    reopened = Journal(tmp_path, KEY)
    assert reopened.end == 3
    append(reopened, 3, [b"f"])  # in a new segment: nothing is ever written after a torn frame
    reopened.close()
    assert [f.end for f in read_frames(tmp_path, KEY.name)] == [2, 3, 4]
    assert len(list(journal_dir(tmp_path, KEY.name).glob("*.journal"))) == 2
    with open(segment, "rb") as f:
        f.seek(offset)
        assert f.read(len(torn) // 2) == torn[: len(torn) // 2]  # left as found, never read


def test_a_damaged_frame_inside_the_last_segment_keeps_the_frames_before_it(tmp_path):
    journal = Journal(tmp_path, KEY)
    append(journal, 0, [b"zero"])
    at = journal._offset
    append(journal, 1, [b"one"])
    append(journal, 2, [b"two"])
    journal.close()
    segment = next(journal_dir(tmp_path, KEY.name).glob("*.journal"))
    data = bytearray(segment.read_bytes())
    data[at + 100] ^= 0xFF  # a flipped byte in frame 1: frames 1 and 2 are lost, not frame 0
    segment.write_bytes(bytes(data))
    assert Journal(tmp_path, KEY).end == 1
    assert [f.first for f in read_frames(tmp_path, KEY.name)] == [0]


def test_an_altered_entry_or_a_forged_signature_is_refused(tmp_path):
    journal = Journal(tmp_path, KEY)
    append(journal, 0, [b"real"])
    journal.close()
    frame = next(read_frames(tmp_path, KEY.name))
    altered = Frame(0, (b"fake",), frame.chain_before, frame.chain_after, frame.signature)
    with pytest.raises(JournalError, match="do not chain"):
        altered.check(KEY.name, KEY.verifier())
    other = SignerKey.generate(KEY.name)  # same origin, someone else's key
    forged = Frame(0, (b"fake",), CHAIN_START, chained([b"fake"], CHAIN_START), other.sign(b"x"))
    with pytest.raises(JournalError, match="not signed by"):
        forged.check(KEY.name, KEY.verifier())


def test_segments_roll_ahead_and_covered_old_ones_are_pruned(tmp_path):
    now = [1000.0]
    journal = Journal(tmp_path, KEY, Keep(seconds=60), lambda: 6, segment_bytes=4096, clock=lambda: now[0])
    folder = journal_dir(tmp_path, KEY.name)
    for seq in range(8):
        append(journal, seq, [bytes(3000)])  # one frame fills a segment
    assert (folder / SPARE).stat().st_size >= 4096  # the next segment is allocated ahead
    names = sorted(p.name for p in folder.glob("*.journal"))
    assert len(names) == 8  # all younger than a minute
    old = now[0] - 120
    for path in folder.glob("*.journal"):
        os.utime(path, (old, old))
    deleted = prune_segments(folder, 6, Keep(seconds=60), now[0])
    assert [p.name for p in deleted] == names[:6]  # Seq 0..5: signed and old; 6, 7 are not signed
    assert [f.first for f in read_frames(tmp_path, KEY.name)] == [6, 7]
    assert prune_segments(folder, 8, Keep(seconds=3600, max_bytes=1), now[0])  # the size cap
    assert len(list(folder.glob("*.journal"))) == 1  # the newest segment always stays


@pytest.mark.parametrize(
    ("text", "keep"),
    [
        ("7d", Keep(7 * 86400, None)),  # what is given is what applies
        ("12h,20GiB", Keep(12 * 3600, 20 << 30)),
        ("500MB", Keep(float("inf"), 500 * 10**6)),
    ],
)
def test_keep_parses_durations_and_sizes(text, keep):
    assert Keep.parse(text) == keep


def test_keep_refuses_what_it_cannot_read():
    with pytest.raises(ConfigError, match="--journal-keep"):
        Keep.parse("seven days")


def test_a_journal_of_another_log_is_refused(tmp_path):
    append(Journal(tmp_path, KEY), 0, [b"a"])
    segment = next(journal_dir(tmp_path, KEY.name).glob("*.journal"))
    other = SignerKey.generate("other.example/audit")
    journal_dir(tmp_path, other.name).mkdir()
    os.link(segment, journal_dir(tmp_path, other.name) / segment.name)
    with pytest.raises(JournalError, match="another log"):
        list(read_frames(tmp_path, other.name))


def stored_entries(store: Store, origin: str) -> list[bytes]:
    return [StoredRow.of(row).Entry for block in store.stream_rows(origin) for row in block]


def test_the_pipeline_journals_every_acknowledged_record(store, tmp_path):
    journal = Journal(tmp_path / "journal", KEY)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(KEY.name)), journal=journal)
    pipeline.start()
    batches = [pipeline.submit(items(30, f"b{b}-")) for b in range(10)]
    for batch in batches:
        batch.wait()
    pipeline.stop()
    frames = list(read_frames(tmp_path / "journal", KEY.name))
    assert [e for f in frames for e in f.entries] == stored_entries(store, KEY.name)
    assert frames[-1].end == 300 and frames[-1].chain_after == pipeline.state.chain_head
    for frame in frames:
        frame.check(KEY.name, KEY.verifier())


def test_a_journal_that_cannot_be_written_fails_the_callers_retryably_and_catches_up(store, tmp_path):
    journal = Journal(tmp_path / "journal", KEY, segment_bytes=512)  # every append rolls
    pipeline = Pipeline(store, PublishedLog(LogState.empty(KEY.name)), journal=journal)
    pipeline.start()
    assert pipeline.seal(items(3, "a")) == 0
    spare = journal.folder / SPARE
    spare.unlink()
    spare.mkdir()  # the next segment cannot be allocated: the journal fails
    with pytest.raises(StoreUnavailableError, match="could not be copied to the journal"):
        pipeline.seal(items(4, "b"))
    with pytest.raises(StoreUnavailableError, match="journal"):  # refused before the INSERT
        pipeline.seal(items(2, "c"))
    spare.rmdir()
    assert pipeline.seal(items(5, "d")) == 7  # b's rows are in the store (a retry duplicates them)
    pipeline.stop()
    frames = list(read_frames(tmp_path / "journal", KEY.name))
    assert [e for f in frames for e in f.entries] == stored_entries(store, KEY.name)
    assert frames[-1].end == 12


def test_rows_committed_before_a_crash_and_not_journaled_are_copied_from_the_store(store, tmp_path):
    journal = Journal(tmp_path / "journal", KEY)
    pipeline = Pipeline(store, PublishedLog(LogState.empty(KEY.name)), journal=journal)
    pipeline.start()
    pipeline.seal(items(20, "j"))
    pipeline.stop()
    unjournaled = Pipeline(
        store, PublishedLog(pipeline.state)
    )  # as if the sealer died between INSERT and append
    unjournaled.start()
    unjournaled.seal(items(7, "u"))
    unjournaled.stop()
    catch_up(journal, store, 27)
    frames = list(read_frames(tmp_path / "journal", KEY.name))
    assert [e for f in frames for e in f.entries] == stored_entries(store, KEY.name)
    for frame in frames:
        frame.check(KEY.name, KEY.verifier())


def test_a_segment_started_just_before_a_crash_continues_the_journal(tmp_path):
    journal = Journal(tmp_path, KEY, segment_bytes=512)
    append(journal, 0, [bytes(300)])
    journal._roll(1, 10)  # the crash: a fresh segment, no frame in it yet
    journal.close()
    reopened = Journal(tmp_path, KEY, segment_bytes=512)
    assert reopened.end == 1
    append(reopened, 1, [b"x"])
    assert [f.first for f in read_frames(tmp_path, KEY.name)] == [0, 1]


@pytest.fixture
def small_fs(tmp_path):  # type: ignore[no-untyped-def]
    """A 1 MiB tmpfs of the test's own, to fill."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def _fill(directory) -> None:  # type: ignore[no-untyped-def]
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):  # until No space left on device
            while True:
                os.write(fd, bytes(4096))
    finally:
        os.close(fd)


def test_appends_go_on_into_space_allocated_ahead_when_the_disk_fills(small_fs):
    journal = Journal(small_fs / "journal", KEY, segment_bytes=256 * 1024)
    append(journal, 0, [b"first"])  # a segment and the spare after it are allocated
    _fill(small_fs)
    seq = 1
    while seq < 300:  # 300 x 1.2 KiB: through the rest of this segment and the whole spare
        append(journal, seq, [bytes(1024)])
        seq += 1
    with pytest.raises(JournalError, match="No space left"):  # nothing allocated ahead now
        while True:
            append(journal, seq, [bytes(1024)])
            seq += 1
    (small_fs / "filler").unlink()
    append(journal, seq, [b"after"])  # usable again once there is room
    journal.close()
    frames = list(read_frames(small_fs / "journal", KEY.name))
    assert [f.first for f in frames] == list(range(seq + 1))
