"""The journal: a durable copy of every acknowledged record, kept apart from the store.

The store can lose rows it acknowledged: under disk-full the embedded engine committed parts
whose files were zero bytes and set them aside at the next open. The journal is what such a
range is restored from (`otel-audit restore`, sealer/restore.py). The pipeline's writer
appends each group commit here after its INSERT succeeded and before its callers are
released, so every journal record was committed by the store once, and every acknowledged
record is in the journal. Put it on a different file system from the store.

What is kept of a record is its entry and its Seq: every column is derived from the entry
(otel_audit/entry.py), the leaf hash from the entry, the chain from the leaves.

Layout, one folder per origin (percent-encoded, like the anchors), mode 0700, files 0600:
    <dir>/<origin>/<first Seq, 20 digits>.journal   segments, appended to in Seq order
    <dir>/<origin>/spare                           the next segment, allocated ahead of need
A segment is a header (magic, first Seq, origin, CRC-32) and frames. A frame is one group
commit, Seq [first, first + count):
    "JRF1" | CRC-32 of the rest | first u64 | count u32 | payload length u64 |
    chain head before | chain head after | Ed25519 signature | payload
(little-endian), the payload the entries' lengths (u32 each), then the entries. The CRC finds
a write torn by a crash (or damage): nothing after it is read, and the journal goes on in a
new segment. The signature, by the log's key over the origin, the Seq range and the
two chain heads (which commit to every entry), lets `restore` refuse a forged journal even
for records no checkpoint signs yet. Segments are allocated whole (posix_fallocate) when
they start, and the next one is allocated ahead, so an append does not need new space at
the moment the disk fills.

A failed write (the disk, an fsync error) leaves the journal behind the store; the next
append first copies the missing rows from the store (`catch_up`), into a fresh segment: after
a failed fsync the old file's pages cannot be trusted. A fresh segment may so start inside
the one before; its frames win.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import sys
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from backend.store import Store
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.columns import StoredRow
from otel_audit.errors import ConfigError, JournalError
from otel_audit.merkle import hash_leaf
from otel_audit.note import Signer, VerifierKey

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"OTAJRNL1"
_SEGMENT_HEAD = struct.Struct("<8sQH")  # magic, first Seq, origin length; then origin, CRC-32
FRAME_MAGIC = b"JRF1"
_FRAME_HEAD = struct.Struct("<4sIQIQ32s32s64s")
_LENGTH = struct.Struct("<I")
_SUFFIX = ".journal"
SPARE = "spare"
SEGMENT_BYTES = 64 * 1024 * 1024  # the most a segment is allocated; the first get less:
FIRST_SEGMENT_BYTES = 4 * 1024 * 1024  # each is twice the one before, so a quiet log's is small


def journal_dir(directory: Path, origin: str) -> Path:
    return directory / quote(origin, safe="")


def signed_message(origin: str, first: int, count: int, chain_before: bytes, chain_after: bytes) -> bytes:
    """What a frame's signature covers: the chain heads commit to every entry in between."""
    return (
        b"otel-audit journal frame v1\n"
        + origin.encode()
        + b"\n"
        + struct.pack("<QI", first, count)
        + chain_before
        + chain_after
    )


@dataclass(frozen=True)
class Frame:
    """One group commit: the entries of Seq [first, first + len(entries))."""

    first: int
    entries: tuple[bytes, ...]
    chain_before: bytes
    chain_after: bytes
    signature: bytes

    @property
    def end(self) -> int:
        return self.first + len(self.entries)

    def encode(self) -> bytes:
        lengths = array("I", map(len, self.entries))
        if sys.byteorder == "big":
            lengths.byteswap()
        payload = lengths.tobytes() + b"".join(self.entries)
        rest = _FRAME_HEAD.pack(
            FRAME_MAGIC, 0, self.first, len(self.entries), len(payload),
            self.chain_before, self.chain_after, self.signature,
        )[8:] + payload  # fmt: skip
        return FRAME_MAGIC + _LENGTH.pack(zlib.crc32(rest)) + rest

    def check(self, origin: str, key: VerifierKey) -> tuple[list[bytes], list[bytes]]:
        """The leaf and chain hashes of the entries, once the chain reaches `chain_after`
        and the signature is the key's; JournalError otherwise."""
        leaves = [hash_leaf(e) for e in self.entries]
        chains = []
        chain = self.chain_before
        for leaf in leaves:
            chain = chain_next(chain, leaf)
            chains.append(chain)
        where = f"journal frame Seq {self.first}..{self.end - 1}"
        if chain != self.chain_after:
            raise JournalError(f"{where}: its entries do not chain to its chain head (altered)")
        message = signed_message(origin, self.first, len(self.entries), self.chain_before, self.chain_after)
        if not key.verify(message, self.signature):
            raise JournalError(f"{where}: not signed by {key.name}+{key.key_id:08x} (forged or altered)")
        return leaves, chains


def _decode_frames(data: bytes, offset: int) -> tuple[list[Frame], int]:
    """The frames from `offset` on, and where the valid ones end (a torn or empty rest)."""
    frames = []
    while offset + _FRAME_HEAD.size <= len(data):
        magic, crc, first, count, size, before, after, signature = _FRAME_HEAD.unpack_from(data, offset)
        end = offset + _FRAME_HEAD.size + size
        if magic != FRAME_MAGIC or end > len(data) or zlib.crc32(data[offset + 8 : end]) != crc:
            break
        position = offset + _FRAME_HEAD.size
        lengths = array("I", data[position : position + 4 * count])
        if sys.byteorder == "big":
            lengths.byteswap()
        position += 4 * count
        entries = []
        for length in lengths:
            entries.append(data[position : position + length])
            position += length
        if position != end:
            break  # cannot happen with a matching CRC unless written wrong; treat as torn
        frames.append(Frame(first, tuple(entries), before, after, signature))
        offset = end
    return frames, offset


def _segment_header(origin: str, first: int) -> bytes:
    head = _SEGMENT_HEAD.pack(SEGMENT_MAGIC, first, len(origin.encode())) + origin.encode()
    return head + _LENGTH.pack(zlib.crc32(head))


def _read_segment(path: Path, origin: str) -> tuple[int, list[Frame], int, bytes]:
    """(first Seq, frames, end of the valid frames, the file's bytes); JournalError if the
    header is not a segment of `origin`."""
    data = path.read_bytes()
    if len(data) < _SEGMENT_HEAD.size or data[:8] != SEGMENT_MAGIC:
        raise JournalError(f"{path} is not a journal segment")
    _, first, length = _SEGMENT_HEAD.unpack_from(data)
    head_end = _SEGMENT_HEAD.size + length
    (crc,) = _LENGTH.unpack_from(data, head_end)
    if zlib.crc32(data[:head_end]) != crc:
        raise JournalError(f"{path}: its header is damaged")
    if data[_SEGMENT_HEAD.size : head_end].decode() != origin:
        raise JournalError(f"{path} belongs to another log, not {origin!r}")
    frames, end = _decode_frames(data, head_end + 4)
    return first, frames, end, data


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{_SUFFIX}"))


def read_frames(directory: Path, origin: str) -> Iterator[Frame]:
    """Every frame of the journal of `origin`, in Seq order, contiguous; a later segment's
    frames win where it starts inside the one before (rewritten after a failed write)."""
    folder = journal_dir(directory, origin)
    if not folder.is_dir():
        raise ConfigError(f"no journal of {origin!r} in {directory} (looked for {folder})")
    held: list[Frame] = []
    for path in _segments(folder):
        first, frames, _, _ = _read_segment(path, origin)
        if frames and frames[0].first != first:
            raise JournalError(f"{path}: its first frame starts at Seq {frames[0].first}, not {first}")
        if held and first < held[-1].end:
            while held and held[-1].first >= first:
                held.pop()
            if held and held[-1].end != first:
                raise JournalError(f"{path} starts at Seq {first}, inside a frame of the segment before")
        yield from held
        held = frames
        # frames of one segment follow each other; a gap before the next segment (a journal
        # started afresh) is left for `restore` to find, which then lacks those records
        for a, b in itertools.pairwise(frames):
            if b.first != a.end or b.chain_before != a.chain_after:
                raise JournalError(f"{path}: frame at Seq {b.first} does not follow Seq {a.end - 1}")
    yield from held


@dataclass(frozen=True)
class Keep:
    """How long segments covered by a signed checkpoint are kept (`serve --journal-keep`).

    `seconds`: a segment goes once its newest record is older than this: long enough for a
    loss the store hides until its next open or the next `verify` to be noticed. `max_bytes`:
    covered segments go oldest first while the journal is larger, so the journal's own file
    system does not fill (records no checkpoint signs are never deleted).
    """

    seconds: float = 7 * 86400
    max_bytes: int | None = 20 << 30

    @classmethod
    def parse(cls, text: str) -> Keep:
        """`7d`, `12h`, `30m`, `3600s`, `20GiB`, `500MB` or both, comma-separated."""
        seconds, max_bytes = float("inf"), None  # what is not given does not apply
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        sizes = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
                 "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}  # fmt: skip
        for part in filter(None, (p.strip().lower() for p in text.split(","))):
            number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
            unit = part[len(number) :]
            try:
                value = float(number)
            except ValueError:
                value = -1
            if value < 0 or (unit not in units and unit not in sizes):
                raise ConfigError(
                    f"--journal-keep {text!r}: give a duration (7d, 12h, 30m, 3600s) and/or a size "
                    "(20GiB, 500MB), comma-separated"
                )
            if unit in units:
                seconds = value * units[unit]
            else:
                max_bytes = int(value * sizes[unit])
        return cls(seconds, max_bytes)


class Journal:
    """The writer's side: appends frames, rolls and prunes segments. One thread uses it."""

    def __init__(
        self,
        directory: Path,
        key: Signer,
        keep: Keep = Keep(),
        signed_size: Callable[[], int] = lambda: 0,
        segment_bytes: int = SEGMENT_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.origin = key.name
        self.folder = journal_dir(directory, self.origin)
        self._key = key
        self._keep = keep
        self._signed_size = signed_size  # the newest signed checkpoint's size: what may go
        self._segment_bytes = segment_bytes
        self._next_bytes = min(segment_bytes, FIRST_SEGMENT_BYTES)  # the next segment's size
        self._clock = clock
        self._fd: int | None = None
        self._offset = 0
        self._capacity = 0
        self.end: int | None = None  # the Seq after the last record held; None: empty
        self.chain_head = CHAIN_START
        self.broken = False  # the last write failed: the next append starts a fresh segment
        self._fresh = False  # the next append starts a fresh segment
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.folder, 0o700)
            self._open_last()
        except OSError as exc:
            raise ConfigError(f"cannot open the journal in {self.folder}: {exc}") from None

    def _open_last(self) -> None:
        segments = _segments(self.folder)
        if not segments:
            return
        path = segments[-1]
        first, frames, end, data = _read_segment(path, self.origin)
        if frames:
            self.end, self.chain_head = frames[-1].end, frames[-1].chain_after
        else:  # a segment started just before a crash: the one before ends the journal
            older = _read_segment(segments[-2], self.origin)[1] if len(segments) > 1 else []
            if not older or older[-1].end != first:
                os.replace(path, self.folder / SPARE)  # nothing to continue from: start afresh
                return
            self.end, self.chain_head = older[-1].end, older[-1].chain_after
        self._fd = os.open(path, os.O_RDWR)
        self._offset, self._capacity = end, len(data)
        self._next_bytes = min(self._segment_bytes, max(self._next_bytes, 2 * len(data)))
        if any(data[end : end + _FRAME_HEAD.size]):  # torn by a crash, or damaged: never read on
            log.warning(
                "journal %s: a torn or damaged frame at byte %d; going on in a new segment", path, end
            )
            self._fresh = True  # nothing is written after it, so nothing after it is ever read

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def append(self, first: int, entries: list[bytes], chain_before: bytes, chain_after: bytes) -> None:
        """Write and fsync one group commit; JournalError (and `broken`) if it did not."""
        if self.end is not None and first != self.end:
            raise JournalError(
                f"journal of {self.origin!r} ends at Seq {self.end}; cannot append Seq {first}"
            )
        signature = self._key.sign(
            signed_message(self.origin, first, len(entries), chain_before, chain_after)
        )
        data = Frame(first, tuple(entries), chain_before, chain_after, signature).encode()
        try:
            if self._fd is None or self.broken or self._fresh or self._offset + len(data) > self._capacity:
                self._roll(first, len(data))
            assert self._fd is not None
            os.pwrite(self._fd, data, self._offset)
            os.fdatasync(self._fd)
        except OSError as exc:
            self.broken = True
            raise JournalError(f"cannot write the journal in {self.folder}: {exc}") from None
        self.broken = self._fresh = False
        self._offset += len(data)
        self.end, self.chain_head = first + len(entries), chain_after

    def _roll(self, first: int, need: int) -> None:
        """Start the segment of Seq `first` on the spare (or a new file), allocate the next."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.folder / f"{first:020d}{_SUFFIX}"
        spare = self.folder / SPARE
        header = _segment_header(self.origin, first)
        size = max(self._next_bytes, len(header) + need)
        if path.exists():  # rewriting from a frame boundary after a failed write: keep the old
            path.rename(path.with_name(path.name + f".failed-{time.time_ns()}"))
        if not spare.exists() or spare.stat().st_size < size:
            self._allocate(spare, size)
        fd = os.open(spare, os.O_RDWR)
        try:
            os.pwrite(fd, header, 0)
            os.fdatasync(fd)
            os.rename(spare, path)
            _fsync_dir(self.folder)
        except OSError:
            os.close(fd)
            raise
        self._fd, self._offset, self._capacity = fd, len(header), os.fstat(fd).st_size
        self._prune()
        try:
            self._next_bytes = min(self._segment_bytes, 2 * self._next_bytes)
            self._allocate(spare, self._next_bytes)
        except OSError as exc:  # the current segment still has room; try again at the next roll
            log.warning("journal: cannot allocate the next segment ahead: %s", exc)

    def _allocate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.folder)

    def _prune(self) -> None:
        """Delete old segments whose records a signed checkpoint covers (see Keep)."""
        try:
            signed = self._signed_size()
        except Exception as exc:  # the store may be down: keep everything for now
            log.warning("journal: not pruning, the newest checkpoint is unknown: %s", exc)
            return
        prune_segments(self.folder, signed, self._keep, self._clock())


def prune_segments(folder: Path, signed_size: int, keep: Keep, now: float) -> list[Path]:
    """Delete the segments before the newest that hold only Seq < `signed_size` and are older
    than `keep.seconds`, or beyond `keep.max_bytes`; the deleted ones."""
    segments = _segments(folder)
    starts = [int(p.name[: -len(_SUFFIX)]) for p in segments]
    covered = [p for p, next_start in zip(segments, starts[1:]) if next_start <= signed_size]
    sizes = {p: p.stat().st_size for p in segments}
    total = sum(sizes.values())
    deleted = []
    for path in covered:  # oldest first
        old = now - path.stat().st_mtime > keep.seconds
        if old or (keep.max_bytes is not None and total > keep.max_bytes):
            path.unlink()
            total -= sizes[path]
            deleted.append(path)
        else:
            break
    for stale in folder.glob(f"*{_SUFFIX}.failed-*"):  # set aside after a failed write
        if now - stale.stat().st_mtime > keep.seconds:
            stale.unlink()
    if deleted:
        _fsync_dir(folder)
        log.info("journal: deleted %d segments up to %s", len(deleted), deleted[-1].name)
    return deleted


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


CATCH_UP_ROWS = 8192


def catch_up(journal: Journal, store: Store, end: int) -> None:
    """Copy the store's rows [journal.end, end) into the journal: rows committed while the
    journal was behind (a failed write, a crash between INSERT and append). JournalError if
    the store's rows do not chain on from the journal's."""
    if journal.end is None or journal.end >= end:
        return
    log.warning("journal: copying Seq %d..%d from the store", journal.end, end - 1)
    for block in store.stream_rows(journal.origin, journal.end, end, block_rows=CATCH_UP_ROWS):
        first = journal.end
        rows = [StoredRow.of(values) for values in block]
        entries = [row.Entry for row in rows]
        chain = journal.chain_head
        for seq, row in zip(range(first, first + len(rows)), rows):
            chain = chain_next(chain, hash_leaf(row.Entry))
            if chain != row.ChainHash or row.derived.Seq != seq:
                raise JournalError(f"the store's Seq {seq} does not follow the journal's Seq {first - 1}")
        journal.append(first, entries, journal.chain_head, chain)
    if journal.end != end:
        raise JournalError(f"the store lacks Seq {journal.end}..{end - 1}, which the journal should copy")
