"""Start-up recovery: continue the log exactly where the store has it.

The newest checkpoint in the store gives a compact range (O(log n) hashes) whose root must
equal its signed root; the few rows sealed after it (at most one checkpoint interval's worth,
or more after a crash) are appended to it after checking that they are contiguous and chain
correctly. Nothing older is read, so a restart costs the same for a log of any size.

The sealer refuses to start, with a message saying to run `otel-audit verify`, when the store
is behind the newest anchored checkpoint (the database was rolled back) or when what it holds
does not add up.
"""

from __future__ import annotations

from pathlib import Path

from backend.store import Store
from otel_audit.anchors import latest_anchor
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.checkpoint import Checkpoint
from otel_audit.errors import AuditError, StoreError
from otel_audit.merkle import CompactRange
from otel_audit.note import SignedNote, VerifierKey

from .state import LogState

_VERIFY_HINT = "Run `otel-audit verify` to locate the problem before sealing more records."


def recover(store: Store, origin: str, key: VerifierKey, anchor_dir: Path) -> LogState:
    state = _from_checkpoint(store, origin, key)
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
    anchor = latest_anchor(anchor_dir, origin)
    if anchor is not None and anchor.checkpoint.tree_size > tree.size:
        raise StoreError(
            f"log {origin!r}: the store holds {tree.size} records but the anchor "
            f"{anchor.path} signs {anchor.checkpoint.tree_size}: the database was truncated "
            f"or rolled back. {_VERIFY_HINT}"
        )
    return LogState(origin, tree, chain, sealed_at)


def _from_checkpoint(store: Store, origin: str, key: VerifierKey) -> LogState:
    stored = store.latest_checkpoint(origin)
    if stored is None:
        return LogState(origin, CompactRange(), CHAIN_START, 0)
    try:
        note = SignedNote.parse(stored.note)
        note.verify(key)
        checkpoint = Checkpoint.parse(note.text)
        tree = CompactRange.from_bytes(stored.tree_size, stored.compact_range)
    except AuditError as exc:
        raise StoreError(
            f"log {origin!r}: the stored checkpoint at tree size {stored.tree_size} is not "
            f"valid under {key.name}+{key.key_id:08x}: {exc}. Is this the right key? {_VERIFY_HINT}"
        ) from None
    if (checkpoint.tree_size, checkpoint.root_hash) != (tree.size, tree.root()):
        raise StoreError(
            f"log {origin!r}: the compact range stored with checkpoint {stored.tree_size} does "
            f"not match its signed root. {_VERIFY_HINT}"
        )
    return LogState(origin, tree, checkpoint.chain_head, checkpoint.sealed_at_ns)
