"""Sealing, as pure functions: give prepared records their place in the log.

Given the log's state and the batches to seal on top of it, and the seal time (passed in:
nothing here reads a clock), `seal` returns each record's Seq, entry, leaf hash (RFC 6962
section 2.1: SHA-256(0x00 || entry)) and chain hash (chain[i] = SHA-256(chain[i-1] ||
leaf[i])), each batch's rows as one Native block, and the state the log is in after them.
No I/O, no threads: the pipeline (sealer/pipeline.py) decides when and on what to call it,
and the same input gives the same bytes, which tests compare with otel_audit.verify.

A batch whose rows cannot be encoded for the store's column types (StoreDataError) is
refused alone, as a value: Seq and chain go on without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from backend import native
from backend.partitions import partition_of
from otel_audit.chain import chain_next
from otel_audit.columns import INSERT_COLUMNS, SEALER_COLUMNS
from otel_audit.derivation import timestamp_columns
from otel_audit.entry import SealEncoder
from otel_audit.errors import StoreDataError
from otel_audit.merkle import hash_leaf

from .prepare import Prepared
from .state import LogState

# The sealer's half of each Native block (backend/native.py): the columns it encodes itself,
# with the types they are sent as (otel_audit/columns.py); the other half comes prepared
# (sealer/prepare.py: PREPARED_COLUMNS).
SEALER_HALF = native.Columns.of(SEALER_COLUMNS)


@dataclass(frozen=True)
class ToSeal:
    """One caller's prepared records, with who sent them (as authenticated: sealed into every
    entry) and the identity of the masking rules applied to them."""

    prepared: Prepared
    producer: str = ""
    masking: str = ""


@dataclass(frozen=True)
class Placed:
    """A batch at its place in the log: its records start at `first_seq`."""

    prepared: Prepared
    producer: str
    first_seq: int


@dataclass(frozen=True)
class SealedBatch:
    """A batch sealed: its first Seq, its entries (the leaves' bytes, for the journal) and
    its rows as one Native block."""

    first_seq: int
    entries: list[bytes]
    block: bytes


@dataclass(frozen=True)
class RefusedBatch:
    """A batch whose rows the store's column types cannot hold; left out of the log."""

    error: StoreDataError


@dataclass(frozen=True)
class Sealed:
    """The outcome of `seal`: per input batch, in order, a SealedBatch or a RefusedBatch;
    the log goes from `before` to `after` through the sealed ones."""

    before: LogState
    after: LogState
    batches: tuple[SealedBatch | RefusedBatch, ...]
    entry_bytes: int

    @property
    def records(self) -> int:
        return self.after.size - self.before.size


def seal(before: LogState, batches: Sequence[ToSeal], sealed_at: int) -> Sealed:
    """Seal batches on top of `before` at `sealed_at` (ns since the epoch; all of them share
    it). Pure: the same arguments give the same bytes, and `before` is left untouched (its
    tree is copied)."""
    tree = before.tree.copy()
    chain = before.chain_head
    seq = before.size
    outcomes: list[SealedBatch | RefusedBatch] = []
    entry_bytes = 0
    for batch in batches:
        encoder = SealEncoder(before.origin, sealed_at, batch.producer, batch.masking)
        entries: list[bytes] = []
        for frame, befores, afters in batch.prepared.groups:
            for i, (record_before, record_after) in enumerate(zip(befores, afters), len(entries)):
                entries.append(frame.entry(record_before, encoder(seq + i), record_after))
        leaves = list(map(hash_leaf, entries))
        chains = []
        link = chain
        for leaf in leaves:
            link = chain_next(link, leaf)
            chains.append(link)
        placed = Placed(batch.prepared, batch.producer, seq)
        try:
            block = _block(placed, before.origin, sealed_at, entries, leaves, chains)
        except StoreDataError as exc:  # this batch alone: Seq and chain go on without it
            outcomes.append(RefusedBatch(exc))
            continue
        outcomes.append(SealedBatch(seq, entries, block))
        seq += len(entries)
        chain = link
        tree.extend(leaves)
        entry_bytes += sum(map(len, entries))
    after = LogState(before.origin, tree, chain, sealed_at)
    return Sealed(before, after, tuple(outcomes), entry_bytes)


def crosses_partition(tip: LogState, sealed_at: int, timezone: ZoneInfo) -> bool:
    """Whether records sealed at `sealed_at` start a new partition after `tip` (retention
    drops whole partitions, so a checkpoint is signed exactly at the boundary)."""
    return bool(tip.size) and partition_of(sealed_at, timezone) != partition_of(tip.sealed_at_ns, timezone)


def _block(
    batch: Placed, origin: str, sealed_at: int, entries: list[bytes], leaves: list[bytes], chains: list[bytes]
) -> bytes:
    """A sealed batch's rows as one Native block: its prepared columns, then the sealer's."""
    count, first = len(entries), batch.first_seq
    timestamps, seconds = zip(*(timestamp_columns(t, sealed_at) for t in batch.prepared.timestamps))
    sealer_columns = SEALER_HALF.encode_by_name(
        {
            "Origin": [origin] * count,
            "Seq": range(first, first + count),
            "SealedAt": [sealed_at] * count,
            "Timestamp": timestamps,
            "TimestampTime": seconds,
            "Producer": [batch.producer] * count,
            "Entry": entries,
            "LeafHash": leaves,
            "ChainHash": chains,
        }
    )
    return native.block(count, len(INSERT_COLUMNS), batch.prepared.columns, sealer_columns)
