"""Start-up recovery: continue the log exactly where the store has it, and never a short one.

The newest checkpoint in the store gives a compact range (O(log n) hashes) whose root must
equal its signed root; the few rows sealed after it (at most one checkpoint interval's worth,
or more after a crash) are appended to it after checking that they are contiguous and chain
correctly. Nothing older is read, so a restart costs the same for a log of any size: the
rows before the checkpoint are only counted (one count over the origin, from the primary
index), which shows a hole without reading it.

The sealer refuses to start, naming the missing Seq range and pointing to `otel-audit
restore` (README "Restoring lost rows"), when the store holds fewer rows than its newest
checkpoint or anchor signs, when rows are missing inside the retained range (an expired
prefix, which starts at a boundary checkpoint, is not missing: README "Retention"), or when
the journal holds records beyond the store's tail (acknowledged, then lost by the store). It
refuses, pointing to `otel-audit verify`, when what the store holds does not add up.
"""

from __future__ import annotations

from pathlib import Path

from backend.store import Store
from otel_audit.anchors import latest_anchor
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.checkpoint import open_checkpoint
from otel_audit.errors import AuditError, StoreError
from otel_audit.merkle import CompactRange
from otel_audit.note import VerifierKey

from .state import LogState

_VERIFY_HINT = "Run `otel-audit verify` to locate the problem before sealing more records."
_RESTORE_HINT = (
    "Restore them from the journal with `otel-audit restore --journal DIR --store DSN --key VKEY` "
    '(README "Restoring lost rows"), then start the sealer again; `otel-audit verify` shows what is lost.'
)


def recover(
    store: Store,
    origin: str,
    key: VerifierKey,
    anchor_dir: Path,
    journal_end: int | None = None,
    previous: VerifierKey | None = None,
) -> LogState:
    """The state the log continues from; StoreError if the store's log is short, has holes,
    or does not add up. `journal_end`: the Seq after the journal's last record, if any.
    `previous`: the key the log was signed with before `key` (serve --previous-key)."""
    state = _from_checkpoint(store, origin, key, previous)
    _check_complete(store, origin, state.size, anchor_dir, journal_end)
    rows = store.hashes_from(origin, state.size)
    tree = state.tree.copy()
    chain = state.chain_head
    for seq, leaf_hash, chain_hash in rows:
        if seq != tree.size:
            raise StoreError(
                f"log {origin!r}: expected Seq {tree.size} after the last checkpoint, found "
                f"Seq {seq}. {_VERIFY_HINT}"
            )
        chain = chain_next(chain, leaf_hash)
        if chain != chain_hash:
            raise StoreError(f"log {origin!r}: chain hash of Seq {seq} is wrong. {_VERIFY_HINT}")
        tree.append(leaf_hash)
    sealed_at = state.sealed_at_ns
    tail = store.tail(origin)
    if tail is not None:
        sealed_at = max(sealed_at, tail.sealed_at_ns)
    return LogState(origin, tree, chain, sealed_at)


def _missing(origin: str, first: int, last: int, why: str) -> StoreError:
    return StoreError(f"log {origin!r}: the store lacks Seq {first}..{last}: {why}. {_RESTORE_HINT}")


def _check_complete(
    store: Store, origin: str, checkpointed: int, anchor_dir: Path, journal_end: int | None
) -> None:
    """Refuse a log shorter than what was signed or journaled, or with rows missing."""
    count, low, high = store.seq_range(origin)
    end = high + 1 if count else 0
    if end < checkpointed:
        raise _missing(origin, end, checkpointed - 1, f"its newest checkpoint signs {checkpointed} records")
    anchor = latest_anchor(anchor_dir, origin)
    if anchor is not None and anchor.checkpoint.tree_size > end:
        raise _missing(
            origin,
            end,
            anchor.checkpoint.tree_size - 1,
            f"the anchor {anchor.path} signs {anchor.checkpoint.tree_size} records (the database "
            "lost rows, or was truncated or rolled back)",
        )
    if journal_end is not None and journal_end > end:
        raise _missing(origin, end, journal_end - 1, "the journal holds them, so they were acknowledged")
    if not count:
        return
    if low > 0 and store.checkpoint_at(origin, low) is None:  # no boundary checkpoint: not expired
        raise _missing(origin, 0, low - 1, f"its rows start at Seq {low}, not at a retention boundary")
    if count < end - low:
        gaps = store.seq_gaps(origin, low, end)
        named = ", ".join(f"{a}..{b}" for a, b in gaps[:10]) + (" and more" if len(gaps) > 10 else "")
        raise StoreError(
            f"log {origin!r}: the store lacks {end - low - count} records inside Seq {low}..{end - 1} "
            f"(missing Seq {named}). {_RESTORE_HINT}"
        )
    if count > end - low:
        raise StoreError(f"log {origin!r}: the store holds Seq values twice. {_VERIFY_HINT}")


def _from_checkpoint(store: Store, origin: str, key: VerifierKey, previous: VerifierKey | None) -> LogState:
    stored = store.latest_checkpoint(origin)
    if stored is None:
        return LogState(origin, CompactRange(), CHAIN_START, 0)
    try:
        checkpoint = open_checkpoint(stored.note, key, *([previous] if previous else [])).checkpoint
        tree = CompactRange.from_bytes(stored.tree_size, stored.compact_range)
    except AuditError as exc:
        raise StoreError(
            f"log {origin!r}: the stored checkpoint at tree size {stored.tree_size} is not "
            f"valid under {key.name}+{key.key_id:08x}: {exc}. Is this the right key (after a key change, "
            f"give the old one with --previous-key)? {_VERIFY_HINT}"
        ) from None
    if (checkpoint.tree_size, checkpoint.root_hash) != (tree.size, tree.root()):
        raise StoreError(
            f"log {origin!r}: the compact range stored with checkpoint {stored.tree_size} does "
            f"not match its signed root. {_VERIFY_HINT}"
        )
    return LogState(origin, tree, checkpoint.chain_head, checkpoint.sealed_at_ns)
