"""`otel-audit restore`: put the rows a store lost back, from the journal, checked first.

The missing Seq ranges are the holes between the store's rows, a prefix that did not expire
(README "Retention"), and a tail: up to the newest signed checkpoint or anchor, or the
journal's last record. Each must be held whole by the journal. Before anything is written,
the journal's records for them are checked:
- each frame against its signature (the log's key) and its own chain heads (sealer/journal.py);
- the chain: the row before a range must end where the journal's range begins, and the row
  after it must follow from the journal's last record;
- the tree: from the newest signed checkpoint before the first range (its stored compact
  range checked against its signed root), the leaves of the store and of the journal must
  give every later signed root, of the store's checkpoints and of the anchors.
So a forged or altered journal cannot put a row into the log. The rows are then rebuilt from
the entries with the derivation the verifier checks (`decode_entry`) and encoded as the
sealer encodes them (sealer/seal.py), so their column hashes match the signed ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from backend import native
from backend.store import Store
from otel_audit.anchors import read_anchors
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.checkpoint import Checkpoint, open_checkpoint
from otel_audit.columns import DERIVED_COLUMNS, INSERT_COLUMNS
from otel_audit.entry import decode_entry
from otel_audit.errors import AuditError, JournalError
from otel_audit.merkle import CompactRange
from otel_audit.note import VerifierKey

from .journal import read_frames
from .prepare import PREPARED_COLUMNS
from .seal import SEALER_HALF

INSERT_ROWS = 8192
LEAF_CHUNK = 1 << 20


@dataclass(frozen=True)
class Restored:
    ranges: tuple[tuple[int, int], ...]  # (first, end) of each range put back

    @property
    def records(self) -> int:
        return sum(end - first for first, end in self.ranges)


@dataclass(frozen=True)
class _Record:
    entry: bytes
    leaf: bytes
    chain: bytes  # the chain hash at this record
    chain_before: bytes  # the chain hash of the record before


def restore(store: Store, journal_dir: Path, key: VerifierKey, anchor_dir: Path | None) -> Restored:
    """Find what the store lacks, check the journal's copy, and write it; JournalError (an
    integrity problem) if the journal does not hold it or does not check out."""
    origin = key.name
    signed = _signed_checkpoints(store, key, anchor_dir)
    known = missing_ranges(store, origin, max(signed, default=0))
    count, _, high = store.seq_range(origin)
    tail = high + 1 if count else 0
    frames, journal_end = [], 0
    for frame in read_frames(journal_dir, origin):  # a week of segments: keep only what may be needed
        journal_end = frame.end
        if frame.end > tail or _overlaps(frame.first, frame.end, known):
            frames.append(frame)
    missing = missing_ranges(store, origin, max([journal_end, *signed]))
    if not missing:
        return Restored(())
    records = _journal_records(frames, missing, origin, key)
    for first, end in missing:
        _check_chain(store, origin, first, end, records)
    _check_tree(store, origin, key, missing, records, signed)
    inserts = []  # every entry decoded and checked before the first row is written
    for first, end in missing:
        for at in range(first, end, INSERT_ROWS):
            stop = min(end, at + INSERT_ROWS)
            block = rows_block(origin, range(at, stop), [records[seq] for seq in range(at, stop)])
            inserts.append((block, f"restore:{origin}:{at}-{stop - 1}:{records[stop - 1].chain.hex()}"))
    for block, token in inserts:
        store.insert_blocks(INSERT_COLUMNS, [block], token)
    return Restored(tuple(missing))


def missing_ranges(store: Store, origin: str, signed_end: int) -> list[tuple[int, int]]:
    """(first, end) of the Seq ranges the store lacks below `signed_end` and between its rows."""
    count, low, high = store.seq_range(origin)
    if not count:
        return [(0, signed_end)] if signed_end else []
    ranges = []
    if low > 0 and store.checkpoint_at(origin, low) is None:  # not a retention boundary
        ranges.append((0, low))
    if count < high + 1 - low:
        ranges += [(a, b + 1) for a, b in store.seq_gaps(origin, low, high + 1)]
    if high + 1 < signed_end:
        ranges.append((high + 1, signed_end))
    return ranges


def _signed_checkpoints(store: Store, key: VerifierKey, anchor_dir: Path | None) -> dict[int, Checkpoint]:
    """The checkpoints of the store and the anchors that carry the key's signature, by size."""
    notes = [cp.note for cp in store.checkpoints(key.name)]
    if anchor_dir is not None:
        notes += [a.text for a in read_anchors(anchor_dir, key.name)[0]]
    signed: dict[int, Checkpoint] = {}
    for text in notes:
        try:
            checkpoint = open_checkpoint(text, key).checkpoint
        except AuditError:
            continue  # not ours: `verify` reports it; it proves nothing here
        earlier = signed.setdefault(checkpoint.tree_size, checkpoint)
        if earlier.root_hash != checkpoint.root_hash:
            raise JournalError(
                f"two checkpoints signed at tree size {checkpoint.tree_size} differ; run `otel-audit verify`"
            )
    return signed


def _journal_records(
    frames: Sequence, missing: list[tuple[int, int]], origin: str, key: VerifierKey
) -> dict[int, _Record]:
    """The journal's records of the missing ranges, from frames whose signature and chain
    check out; JournalError naming what it lacks."""
    records: dict[int, _Record] = {}
    for frame in frames:
        if not _overlaps(frame.first, frame.end, missing):
            continue
        leaves, chains = frame.check(origin, key)
        for offset, seq in enumerate(range(frame.first, frame.end)):
            before = chains[offset - 1] if offset else frame.chain_before
            records[seq] = _Record(frame.entries[offset], leaves[offset], chains[offset], before)
    for first, end in missing:
        lacking = [seq for seq in range(first, end) if seq not in records]
        if lacking:
            raise JournalError(
                f"the store lacks Seq {first}..{end - 1} and the journal does not hold "
                f"{len(lacking)} of them (from Seq {lacking[0]}); nothing was restored"
            )
    return records


def _overlaps(first: int, end: int, ranges: list[tuple[int, int]]) -> bool:
    """Whether [first, end) meets one of these sorted, disjoint ranges."""
    i = bisect.bisect_right([a for a, _ in ranges], end - 1) - 1  # the last one starting before end
    return i >= 0 and ranges[i][1] > first


def _check_chain(store: Store, origin: str, first: int, end: int, records: dict[int, _Record]) -> None:
    """The journal's range must chain on from the store's row before it, and into the one after."""
    before = CHAIN_START
    if first > 0:  # the ranges are maximal: the store holds the row before
        hashes = store.leaf_and_chain_hashes(origin, first - 1, first)
        if len(hashes) != 64:
            raise JournalError(f"the store lacks Seq {first - 1} too; run `otel-audit verify`")
        before = hashes[32:]
    if records[first].chain_before != before:
        raise JournalError(f"the journal's Seq {first} does not chain on from the store's Seq {first - 1}")
    after = store.leaf_and_chain_hashes(origin, end, end + 1)
    if len(after) == 64 and chain_next(records[end - 1].chain, after[:32]) != after[32:]:
        raise JournalError(f"the store's Seq {end} does not follow the journal's Seq {end - 1}")


def _check_tree(
    store: Store,
    origin: str,
    key: VerifierKey,
    missing: list[tuple[int, int]],
    records: dict[int, _Record],
    signed: dict[int, Checkpoint],
) -> None:
    """Every signed root after the first missing Seq, recomputed with the journal's leaves."""
    first_missing = missing[0][0]
    later = sorted(size for size in signed if size > first_missing)
    if not later:
        return  # nothing signed covers them: the frames' signatures and the chain vouch
    tree = _base_tree(store, origin, first_missing, signed)
    position = tree.size
    for size in later:
        tree.extend(_leaves(store, origin, position, size, missing, records))
        position = size
        if tree.root() != signed[size].root_hash:
            raise JournalError(
                f"with the journal's records the tree of size {size} does not have the root its "
                "signed checkpoint gives: the journal does not hold the records that were signed"
            )


def _base_tree(store: Store, origin: str, first_missing: int, signed: dict[int, Checkpoint]) -> CompactRange:
    """The compact range of the newest signed checkpoint at or before `first_missing`."""
    for size in sorted((s for s in signed if s <= first_missing), reverse=True):
        stored = store.checkpoint_at(origin, size)
        if stored is None:
            continue
        tree = CompactRange.from_bytes(size, stored.compact_range)
        if tree.root() == signed[size].root_hash:
            return tree
    return CompactRange()


def _leaves(
    store: Store,
    origin: str,
    first: int,
    end: int,
    missing: list[tuple[int, int]],
    records: dict[int, _Record],
) -> Iterator[bytes]:
    """The leaf hashes of Seq [first, end): the journal's where the store lacks them."""
    starts = [a for a, _ in missing]
    position = first
    while position < end:
        i = bisect.bisect_right(starts, position) - 1
        if i >= 0 and position < missing[i][1]:  # inside a missing range
            stop = min(end, missing[i][1])
            yield from (records[seq].leaf for seq in range(position, stop))
        else:
            stop = min(end, missing[i + 1][0] if i + 1 < len(missing) else end, position + LEAF_CHUNK)
            blob = store.leaf_hashes(origin, position, stop)
            if len(blob) != 32 * (stop - position):
                raise JournalError(
                    f"the store lacks rows inside Seq {position}..{stop - 1}; run `otel-audit verify`"
                )
            yield from (blob[i : i + 32] for i in range(0, len(blob), 32))
        position = stop


def rows_block(origin: str, seqs: range, records: Sequence[_Record]) -> bytes:
    """The rows of these records as one Native block of INSERT_COLUMNS: every column derived
    from the entry (decode_entry), encoded as the sealer encodes them."""
    rows = []
    for seq, record in zip(seqs, records):
        seal, row = decode_entry(record.entry)
        if (seal.origin, seal.seq) != (origin, seq):
            raise JournalError(
                f"the journal's record at Seq {seq} is sealed as {seal.origin!r} Seq {seal.seq}"
            )
        rows.append(row)
    columns = dict(zip(DERIVED_COLUMNS, map(list, zip(*rows))))
    columns |= {"Entry": [r.entry for r in records], "LeafHash": [r.leaf for r in records]}
    columns["ChainHash"] = [r.chain for r in records]
    prepared = PREPARED_COLUMNS.encode_by_name(columns)
    return native.block(len(rows), len(INSERT_COLUMNS), prepared, SEALER_HALF.encode_by_name(columns))
