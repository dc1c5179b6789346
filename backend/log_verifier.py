"""The verify driver over the store: reads a log and feeds it to the pure verifier (otel_audit.verify).

The fast path (default) lets the engine do the per-row work it does in C++ (hashing entries,
checking the chain, hashing columns) and keeps Python to the Merkle tree and the signatures;
it decodes entries only where something failed and for the records no checkpoint signs yet.
The deep path decodes every entry in Python. Both produce the same kinds of findings.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from otel_audit.anchors import read_anchors, read_timestamps
from otel_audit.chain import CHAIN_START
from otel_audit.checkpoint import Checkpoint, open_checkpoint
from otel_audit.errors import AuditError
from otel_audit.merkle import CompactRange
from otel_audit.note import VerifierKey
from otel_audit.rotation import follow_keys
from otel_audit.verify import LogVerifier, Report

from .partitions import DEFAULT_RETENTION_YEARS
from .store import Store
from .tree_reader import TreeReader

CHUNK_ROWS = 1 << 20


YEAR_NS = int(365.25 * 86400 * 10**9)


def verify_origin(
    store: Store,
    key: VerifierKey,
    anchor_dir: Path | None,
    deep: bool = False,
    retention_years: float = DEFAULT_RETENTION_YEARS,
    now_ns: int | None = None,
    more_keys: Sequence[VerifierKey] = (),
    tsa_roots: Sequence[x509.Certificate] | None = None,
) -> Report:
    """Verify the log whose origin is the key's name, against the store and the anchors.

    `more_keys`: other keys of the same log (`verify --key` repeated, `--trust`); with them,
    or with a key the log itself hands over to (otel_audit/rotation.py), the report says which
    key signed which Seq range, and a checkpoint signed by an old key after its successor
    took over is a `signature` finding.

    A log whose oldest months were removed is verified from the signed checkpoint at the
    boundary if, and only if, those months are older than `retention_years` (the verifier's
    own policy, not the table's TTL, which a database administrator could change); otherwise
    the missing rows are reported like any other deletion.

    With `tsa_roots`, every RFC 3161 token (stored and beside the anchors) is checked against
    them; without, tokens found are only counted in a warning.
    """
    count, low, high = store.seq_range(key.name)
    start = _after_expiry(store, key, low, retention_years, now_ns, more_keys) if count and low > 0 else None
    start_seq, start_chain = (start[0].tree_size, start[0].chain_head) if start else (0, CHAIN_START)

    def verifier() -> LogVerifier:
        made = _verifier(store, key, anchor_dir, more_keys)
        _add_timestamps(store, made, anchor_dir, tsa_roots)
        if start is not None and not made.start_after_expiry(*start):
            raise AssertionError("unreachable: the boundary checkpoint was checked already")
        return made

    if deep:
        return _deep(store, verifier())
    anomalies = store.row_anomalies(key.name, start_seq, start_chain)
    if any(not _seq_follows(seq, prev, start_seq) for seq, prev, _, _ in anomalies):
        # Holes or repeats in Seq: the row-by-row pass names each of them exactly.
        return _deep(store, verifier())
    end = high + 1 if count else start_seq
    return _fast(store, verifier(), key.name, anomalies, start_seq, end)


def _after_expiry(
    store: Store,
    key: VerifierKey,
    first_seq: int,
    retention_years: float,
    now_ns: int | None,
    more_keys: Sequence[VerifierKey] = (),
) -> tuple[Checkpoint, bytes] | None:
    """The signed checkpoint at Seq `first_seq` if the rows before it expired under retention."""
    stored = store.checkpoint_at(key.name, first_seq)
    if stored is None:
        return None
    try:
        checkpoint = open_checkpoint(stored.note, key, *more_keys).checkpoint
        tree = CompactRange.from_bytes(stored.tree_size, stored.compact_range)
    except AuditError:
        return None
    if (tree.size, tree.root()) != (checkpoint.tree_size, checkpoint.root_hash):
        return None
    age = (now_ns if now_ns is not None else time.time_ns()) - checkpoint.sealed_at_ns
    if age < retention_years * YEAR_NS:
        return None  # removed before their time: reported as missing rows
    return checkpoint, stored.compact_range


def _fast(
    store: Store,
    verifier: LogVerifier,
    origin: str,
    anomalies: list[tuple[int, int | None, bool, bool]],
    start: int,
    end: int,
) -> Report:
    for seq, _, leaf_ok, chain_ok in anomalies:
        verifier.add_hash_anomaly(seq, leaf_ok, chain_ok)
    hashes = _ColumnHashes(store, origin, start, end)
    for first in range(start, end, CHUNK_ROWS):
        leaves = store.leaf_and_chain_hashes(origin, first, min(end, first + CHUNK_ROWS))
        hashes.start()  # the engine hashes columns while Python builds the tree
        verifier.feed_hashes(first, leaves)
    for seq, _, _, _ in anomalies:  # name the columns of rows whose entry or hashes changed
        verifier.check_columns(_rows(store, origin, seq, seq + 1))
    checked_to = start
    for checkpoint in verifier.signed_checkpoints():
        if checkpoint.tree_size > end or checkpoint.tree_size <= start:
            continue  # beyond the store: truncation (finish()); before it: expired
        if not verifier.columns_match(
            checkpoint, hashes.between(checkpoint.columns_from, checkpoint.tree_size)
        ):
            rows = _rows(store, origin, checkpoint.columns_from, checkpoint.tree_size)
            if verifier.check_columns(rows) == 0:
                verifier.columns_unexplained(checkpoint)
        checked_to = max(checked_to, checkpoint.tree_size)
    verifier.check_columns(_rows(store, origin, checked_to, end))  # not yet signed
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


def _seq_follows(seq: int, previous: int | None, first: int = 0) -> bool:
    return seq == first if previous is None else seq == previous + 1


def _verifier(
    store: Store, key: VerifierKey, anchor_dir: Path | None, more_keys: Sequence[VerifierKey] = ()
) -> LogVerifier:
    stored = store.checkpoints(key.name)
    anchors, problems = (
        ([], []) if anchor_dir is None or not anchor_dir.is_dir() else read_anchors(anchor_dir, key.name)
    )
    history = follow_keys([cp.note for cp in stored] + [a.text for a in anchors], [key, *more_keys])
    verifier = LogVerifier(key.name, *history.keys)
    if len(history.keys) > 1:  # one key: the report stays as it always was
        verifier.add_key_history(history)
    for cp in stored:
        verifier.add_stored_checkpoint(cp.tree_size, cp.root_hash, cp.chain_head, cp.note, cp.compact_range)
    if anchor_dir is None:
        verifier.anchors_absent("no anchor directory was given")
    elif not anchor_dir.is_dir():
        verifier.anchors_absent(f"the anchor directory {anchor_dir} does not exist")
    else:
        if not anchors:
            verifier.anchors_absent(f"the anchor directory {anchor_dir} holds no anchor of {key.name}")
        for anchor in anchors:
            verifier.add_anchor(anchor)
        for problem in problems:
            verifier.add_anchor_problem(problem)
    return verifier


def _add_timestamps(
    store: Store, verifier: LogVerifier, anchor_dir: Path | None, roots: Sequence[x509.Certificate] | None
) -> None:
    """The time-stamp tokens of the log, from the store and the anchor directory."""
    origin = verifier.report.origin
    tokens = [(f"stored token of {t.tsa}", t.tree_size, t.token) for t in store.timestamps(origin)]
    if anchor_dir is not None and anchor_dir.is_dir():
        files, problems = read_timestamps(anchor_dir, origin)
        tokens += [(f"token {f.path}", f.tree_size, f.token) for f in files]
        for problem in problems:
            verifier.add_anchor_problem(problem)
    if not roots:
        if tokens:
            verifier.report.warnings.append(
                f"{len(tokens)} RFC 3161 time-stamp tokens were not checked: pass --tsa-roots "
                "(the certificates of the TSAs you trust)"
            )
        return
    if not tokens:
        verifier.report.warnings.append("--tsa-roots given, but the log holds no time-stamp token")
    for source, tree_size, token in tokens:
        verifier.add_timestamp(source, tree_size, token, roots)


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

    def __init__(self, store: Store, origin: str, first: int, end: int) -> None:
        self._store = store
        self._origin = origin
        self._first = first
        self._count = end
        self._chunks: queue.Queue[tuple[int, bytes] | BaseException] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._produce, name="column-hashes", daemon=True)
        self._chunk_first = first
        self._chunk = b""

    def start(self) -> None:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def _produce(self) -> None:
        try:
            for first in range(self._first, self._count, CHUNK_ROWS):
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
