"""Signs a checkpoint of the committed log every interval (when it grew) and at shutdown.

Each checkpoint goes to the store's checkpoints table (with the compact range that lets a
restart continue the tree) and then to the anchor directory outside the database.

Before signing it stores the tree nodes the new leaves complete (backend/tree_nodes.py), so that
proofs against the checkpoint read a few stored hashes. It also signs the columns commitment
of the records since the previous checkpoint, from the column hashes the pipeline read back
at each commit (`record_column_hashes`); any range whose hashes could not be read then is
computed from the store here.

It never signs over rows the store does not have: before each signature it checks, with one
query over the rows it signs for the first time (selected by the primary key), that the store
holds each of their Seq, readable; if not, it signs nothing, names the missing ranges and
halts the pipeline (`on_lost`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backend.store import Store, StoredCheckpoint
from backend.tree_nodes import extend_nodes
from otel_audit.anchors import latest_anchor, write_anchor
from otel_audit.checkpoint import Checkpoint, open_checkpoint
from otel_audit.columns import columns_commitment
from otel_audit.errors import AuditError, SignatureError, StoreDamagedError, StoreError
from otel_audit.note import SignedNote, Signer
from otel_audit.rotation import handover_extension

from .losses import lost_rows
from .metrics import SealerMetrics
from .state import LogState

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(
        self,
        store: Store,
        key: Signer,
        anchor_dir: Path,
        committed: Callable[[], LogState],
        interval_seconds: float,
        clock: Callable[[], int] = time.time_ns,
        metrics: SealerMetrics | None = None,
        on_lost: Callable[[str], None] = lambda _: None,
        previous_key: Signer | None = None,
    ) -> None:
        """`committed` gives the log's published state (PublishedLog.current); `on_lost` is
        called with the reason when the store lacks rows this would sign (PublishedLog.halt).
        `previous_key`: the key the log was signed with before `key` (serve --previous-key);
        until `key` has signed a stored checkpoint, the next one is the handover
        (otel_audit/rotation.py): signed by both and announcing `key`."""
        self._store = store
        self._key = key
        self._anchor_dir = anchor_dir
        self._committed = committed
        self._interval = interval_seconds
        self._clock = clock
        self._metrics = metrics
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._parts_lock = threading.Lock()
        state = committed()
        latest = store.latest_checkpoint(state.origin)
        self._last_size = -1 if latest is None else latest.tree_size
        self._handover_from = (
            previous_key if previous_key is not None and not _signed_by(latest, key) else None
        )
        self._columns_from = 0 if latest is None else latest.tree_size
        # (first Seq, end Seq, column hashes or None) of the commits since _columns_from.
        self._column_parts: list[tuple[int, int, bytes | None]] = []
        if state.size > self._columns_from:  # sealed after the last checkpoint, before a restart
            self._column_parts.append((self._columns_from, state.size, None))
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def anchor_newest(self) -> None:
        """Write the anchor of the newest stored checkpoint if a crash left it without one.

        A checkpoint is stored before its anchor is written, so a crash between the two leaves
        the newest one unanchored; a second such crash before the next anchor would leave two,
        which `verify` reports as `unanchored`. Only that case is repaired: the newest stored
        checkpoint is the only one above the newest anchor (or the only one, with no anchors).
        Anything else is left for `verify` to report. Called at start, after recovery checked
        the stored checkpoint's signature and root, so what is written is what was signed.
        """
        origin = self._committed().origin
        latest = self._store.latest_checkpoint(origin)
        if latest is None:
            return
        anchor = latest_anchor(self._anchor_dir, origin)
        anchored = -1 if anchor is None else anchor.checkpoint.tree_size
        if self._store.checkpoint_sizes_above(origin, anchored, limit=2) == [latest.tree_size]:
            write_anchor(self._anchor_dir, origin, latest.tree_size, latest.note)
            log.warning(
                "wrote the anchor of checkpoint %s size %d, which a crash left unwritten",
                origin,
                latest.tree_size,
            )

    def stop(self) -> None:
        """Stop the timer and write the final checkpoint (call after the pipeline stopped)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.checkpoint_now()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.checkpoint_now()
            except AuditError as exc:
                log.error("checkpoint failed, will retry next interval: %s", exc)

    def record_column_hashes(self, first: int, end: int, hashes: bytes | None) -> None:
        """Pipeline callback: the column hashes of Seq [first, end), just committed."""
        with self._parts_lock:
            self._column_parts.append((first, end, hashes))

    def _columns_commitment(self, origin: str, size: int) -> bytes:
        """The commitment over the column hashes of Seq [_columns_from, size)."""
        with self._parts_lock:
            parts = [p for p in self._column_parts if p[0] < size]
        position = self._columns_from
        blobs = []
        for first, end, hashes in parts:
            if first != position or end > size:  # cannot happen; fall back to the store
                log.warning("column hash ranges do not tile %d..%d; reading them", position, size)
                return columns_commitment(self._store.column_hashes(origin, self._columns_from, size))
            blobs.append(hashes if hashes is not None else self._store.column_hashes(origin, first, end))
            position = end
        if position != size:
            blobs.append(self._store.column_hashes(origin, position, size))
        return columns_commitment(b"".join(blobs))

    def _check_rows(self, state: LogState) -> None:
        """StoreError (and on_lost) unless the store holds, readable, every row this checkpoint
        signs for the first time: Seq [_columns_from, state.size). Reading their Seq column
        (not a bare count(), which the engine answers from the parts' metadata) also finds a
        part whose files a full disk left empty (StoreDamagedError)."""
        first, end = self._columns_from, state.size
        try:
            count, low, high = self._store.seq_range_between(state.origin, first, end)
            if (count, low, high) == (end - first, first, end - 1):
                return
            otherwise = (
                f"the store holds {count} rows of log {state.origin!r} for Seq {low}..{high}: more than one "
                "row for some Seq; the sealer stopped and signs no checkpoint. Run `otel-audit verify`"
            )
        except StoreDamagedError as exc:
            log.error("checking Seq %d..%d before signing: %s", first, end - 1, exc)
            otherwise = f"the store cannot read rows of Seq {first}..{end - 1}: {exc}"
        reason = lost_rows(self._store, state.origin, first, end) or otherwise
        self._on_lost(reason)
        raise StoreError(f"no checkpoint signed at tree size {state.size}: {reason}")

    def checkpoint_now(self) -> Checkpoint | None:
        """Sign and store a checkpoint if the log grew since the last one."""
        with self._lock:
            state = self._committed()
            if state.size == self._last_size or (state.size == 0 and self._last_size == -1):
                return None
            self._check_rows(state)
            try:  # the proof cache; a failure here must not hold back the signature
                extend_nodes(self._store, state.origin, state.size)
            except AuditError as exc:
                log.warning(
                    "could not store tree nodes up to %d (proofs will compute them): %s", state.size, exc
                )
            checkpoint = Checkpoint(
                origin=state.origin,
                tree_size=state.size,
                root_hash=state.tree.root(),
                chain_head=state.chain_head,
                sealed_at_ns=state.sealed_at_ns,
                columns_from=self._columns_from,
                columns_hash=self._columns_commitment(state.origin, state.size),
                other_extensions=()
                if self._handover_from is None
                else (handover_extension(self._key.verifier()),),
            )
            signers = (self._key,) if self._handover_from is None else (self._handover_from, self._key)
            note = SignedNote.sign(checkpoint.serialize(), *signers).serialize()
            stored = StoredCheckpoint(
                state.origin,
                state.size,
                checkpoint.root_hash,
                state.chain_head,
                note,
                state.tree.to_bytes(),
            )
            self._store.insert_checkpoint(stored, state.sealed_at_ns, self._clock(), self._key.key_id)
            write_anchor(self._anchor_dir, state.origin, state.size, note)
            self._last_size = state.size
            self._columns_from = state.size
            if self._handover_from is not None:
                log.warning(
                    "key handover at tree size %d: %s+%08x (previous) signed %s+%08x in",
                    state.size,
                    self._handover_from.name,
                    self._handover_from.key_id,
                    self._key.name,
                    self._key.key_id,
                )
                self._handover_from = None
            with self._parts_lock:
                self._column_parts = [p for p in self._column_parts if p[0] >= state.size]
            log.info("checkpoint %s size %d", state.origin, state.size)
            if self._metrics is not None:
                self._metrics.checkpointed(state.size)
            return checkpoint


def _signed_by(stored: StoredCheckpoint | None, key: Signer) -> bool:
    """Whether `key` signed the stored checkpoint (recovery has already opened it)."""
    if stored is None:
        return False
    try:
        open_checkpoint(stored.note, key.verifier())
    except SignatureError:
        return False
    return True
