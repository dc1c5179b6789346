"""Readers that feed stored data to the pure verifier in otel_audit.verify.

The fast path (default) lets the engine do the per-row work it does in C++ (hashing entries,
checking the chain, hashing columns) and keeps Python to the Merkle tree and the signatures;
it decodes entries only where something failed and for the records no checkpoint signs yet.
The deep path decodes every entry in Python. Both produce the same kinds of findings.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from otel_audit.anchors import read_anchors
from otel_audit.note import VerifierKey
from otel_audit.verify import LogVerifier, Report

from .store import Store
from .tiles import TreeReader

CHUNK_ROWS = 1 << 20


def verify_origin(store: Store, key: VerifierKey, anchor_dir: Path | None, deep: bool = False) -> Report:
    """Verify the log whose origin is the key's name, against the store and the anchors."""
    if deep:
        return _deep(store, _verifier(store, key, anchor_dir))
    anomalies = store.row_anomalies(key.name)
    if any(not _seq_follows(seq, prev) for seq, prev, _, _ in anomalies):
        # Holes or repeats in Seq: the row-by-row pass names each of them exactly.
        return _deep(store, _verifier(store, key, anchor_dir))
    return _fast(store, key, anchor_dir, anomalies)


def _fast(
    store: Store,
    key: VerifierKey,
    anchor_dir: Path | None,
    anomalies: list[tuple[int, int | None, bool, bool]],
) -> Report:
    verifier = _verifier(store, key, anchor_dir)
    origin = key.name
    count, _, _ = store.seq_range(origin)
    for seq, _, leaf_ok, chain_ok in anomalies:
        verifier.add_hash_anomaly(seq, leaf_ok, chain_ok)
    hashes = _ColumnHashes(store, origin, count)
    for first in range(0, count, CHUNK_ROWS):
        leaves = store.leaf_and_chain_hashes(origin, first, min(count, first + CHUNK_ROWS))
        hashes.start()  # the engine hashes columns while Python builds the tree
        verifier.feed_hashes(first, leaves)
    for seq, _, _, _ in anomalies:  # name the columns of rows whose entry or hashes changed
        verifier.check_columns(_rows(store, origin, seq, seq + 1))
    checked_to = 0
    for checkpoint in verifier.signed_checkpoints():
        if checkpoint.tree_size > count:
            continue  # reported as truncation by finish()
        if not verifier.columns_match(
            checkpoint, hashes.between(checkpoint.columns_from, checkpoint.tree_size)
        ):
            rows = _rows(store, origin, checkpoint.columns_from, checkpoint.tree_size)
            if verifier.check_columns(rows) == 0:
                verifier.columns_unexplained(checkpoint)
        checked_to = max(checked_to, checkpoint.tree_size)
    verifier.check_columns(_rows(store, origin, checked_to, count))  # not yet signed
    _anchor_consistency(store, verifier, verifier.records_seen)
    return verifier.finish()


def _anchor_consistency(store: Store, verifier: LogVerifier, count: int) -> None:
    """Prove with RFC 9162 consistency proofs that the newest checkpoint extends every anchor.

    The roots are already checked against the leaves; this checks the stored tree nodes that
    `proof`, `consistency` and `export` serve from. Skipped when the log itself failed.
    """
    signed = [c for c in verifier.signed_checkpoints() if c.tree_size <= count]
    if verifier.report.findings or not signed:
        return
    newest = signed[-1]
    reader = TreeReader(store, verifier.report.origin)
    for source, anchor in verifier.anchored():
        if anchor.tree_size <= newest.tree_size:
            verifier.add_consistency(
                source, anchor, newest, reader.consistency_proof(anchor.tree_size, newest.tree_size)
            )


def _seq_follows(seq: int, previous: int | None) -> bool:
    return seq == 0 if previous is None else seq == previous + 1


def _verifier(store: Store, key: VerifierKey, anchor_dir: Path | None) -> LogVerifier:
    verifier = LogVerifier(key.name, key)
    for cp in store.checkpoints(key.name):
        verifier.add_stored_checkpoint(cp.tree_size, cp.root_hash, cp.chain_head, cp.note, cp.compact_range)
    if anchor_dir is not None:
        anchors, problems = read_anchors(anchor_dir, key.name)
        for anchor in anchors:
            verifier.add_anchor(anchor)
        for problem in problems:
            verifier.add_anchor_problem(problem)
    return verifier


def _deep(store: Store, verifier: LogVerifier) -> Report:
    for block in store.stream_rows(verifier.report.origin):
        verifier.feed(block)
    _anchor_consistency(store, verifier, verifier.records_seen)
    return verifier.finish()


def _rows(store: Store, origin: str, first: int, end: int):  # type: ignore[no-untyped-def]
    for block in store.stream_rows(origin, first, end):
        yield from block


class _ColumnHashes:
    """Column hashes of consecutive Seq ranges, read from the store in chunks by a background
    thread (the engine works outside the GIL), at most two chunks ahead of their reader."""

    def __init__(self, store: Store, origin: str, count: int) -> None:
        self._store = store
        self._origin = origin
        self._count = count
        self._chunks: queue.Queue[tuple[int, bytes] | BaseException] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._produce, name="column-hashes", daemon=True)
        self._chunk_first = 0
        self._chunk = b""

    def start(self) -> None:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def _produce(self) -> None:
        try:
            for first in range(0, self._count, CHUNK_ROWS):
                end = min(self._count, first + CHUNK_ROWS)
                self._chunks.put((first, self._store.column_hashes(self._origin, first, end)))
        except BaseException as exc:  # handed to the reader, raised there
            self._chunks.put(exc)

    def _next_chunk(self) -> None:
        self.start()
        item = self._chunks.get()
        if isinstance(item, BaseException):
            raise item
        self._chunk_first, self._chunk = item

    def between(self, first: int, end: int) -> bytes:
        """The column hashes of Seq [first, end); requests must come in Seq order."""
        if first < self._chunk_first:  # out of order: ask the store directly
            return self._store.column_hashes(self._origin, first, end)
        parts = []
        position = first
        while position < end:
            chunk_end = self._chunk_first + len(self._chunk) // 32
            if position >= chunk_end:
                if chunk_end >= self._count:
                    break  # fewer rows than the checkpoint covers; its commitment will not match
                self._next_chunk()
                continue
            stop = min(end, chunk_end)
            offset = self._chunk_first
            parts.append(self._chunk[32 * (position - offset) : 32 * (stop - offset)])
            position = stop
        return b"".join(parts)
