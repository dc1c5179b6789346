"""Stored Merkle tree nodes ("tiles"): proofs in O(log n) reads instead of a rehash of the log.

Every 16 leaves complete a perfect subtree of height 4, every 16 of those one of height 8,
and so on. The sealer stores those nodes (table otel_audit.tree_nodes) as the log grows: the
tiles of C2SP tlog-tiles, 16 hashes wide instead of 256 (tile level L, index N is the rows
Height = 4L, NodeIndex in [16N, 16N + 16); level 0 is the LeafHash column of otel_audit.logs).
Any other node is folded from at most 8 stored ones below it, so a proof in a log of any size
reads a few hundred hashes, and an export of 100k proofs recomputes few nodes: narrower tiles
store 1/15 as many hashes as the log has leaves and halve the hashing of a large export
compared with 256-wide ones (bench/bench_evidence.py).

The stored nodes are a cache derived from LeafHash and are never trusted: a missing one is
computed from the level below, and every proof built from them is checked against the signed
root before anyone is given it (backend/evidence.py). backend/tree_reader.py reads them for proofs.
"""

from __future__ import annotations

from collections.abc import Sequence

from otel_audit.errors import StoreError
from otel_audit.merkle import HASH_SIZE, CompactRange
from otel_audit.proof import subtree_root

from .store import Store

TILE_HEIGHT = 4
TILE_WIDTH = 1 << TILE_HEIGHT
_CHUNK = 1 << 18  # leaves read per query while extending
_BATCH = _CHUNK >> TILE_HEIGHT  # nodes of one height per insert


def extend_nodes(store: Store, origin: str, size: int) -> int:
    """Store every node at heights 4, 8, 12, ... that the first `size` leaves complete.

    Picks up wherever the stored nodes end, so it repairs itself after a crash. Returns how
    many nodes it wrote. The new leaves are read once: the compact range they are appended to
    tells `_NodeWriter` each node they complete, at every height (merkle's
    `compact.Range.Append(hash, visitor)`), so no node just computed is read back to make the
    level above it. Only nodes a crash left unwritten left of the first new leaf are made from
    the stored level below (`_StoredLevels.fill_below`).
    """
    heights = range(TILE_HEIGHT, size.bit_length(), TILE_HEIGHT)  # those with a node to store
    stored = {height: store.node_count(origin, height) for height in heights}
    if not stored:
        return 0
    end = size >> TILE_HEIGHT << TILE_HEIGHT  # the leaves after it complete no stored node yet
    start = min(stored[TILE_HEIGHT] << TILE_HEIGHT, end)
    levels = _StoredLevels(store, origin, stored)
    written = levels.fill_below(start)
    if start == end:
        return written
    writer = _NodeWriter(store, origin, {height: max(n, start >> height) for height, n in stored.items()})
    tree = levels.compact_range(start)
    for first in range(start, end, _CHUNK):
        tree.extend(_children(store, origin, 0, first, min(first + _CHUNK, end)), writer.visit)
        writer.flush(whole_batches_only=True)
    writer.flush()
    return written + writer.written


class _NodeWriter:
    """Collects the nodes of stored heights a compact range reports, and inserts them in
    batches of _BATCH per height, each height in NodeIndex order (Store.node_count relies on it)."""

    def __init__(self, store: Store, origin: str, stored: dict[int, int]) -> None:
        self._store = store
        self._origin = origin
        self._next = dict(stored)  # per stored height: the first NodeIndex not inserted
        self._pending: dict[int, list[bytes]] = {height: [] for height in stored}
        self.written = 0

    def visit(self, height: int, index: int, hashes: Sequence[bytes]) -> None:
        pending = self._pending.get(height)
        if pending is None:  # the leaves, or a height that is not stored
            return
        known = self._next[height] + len(pending) - index  # of these: stored or pending already
        if known < len(hashes):
            pending.extend(hashes[max(known, 0) :])

    def flush(self, whole_batches_only: bool = False) -> None:
        for height, pending in self._pending.items():  # ascending heights
            while len(pending) >= _BATCH or (pending and not whole_batches_only):
                batch = pending[:_BATCH]
                self._store.insert_nodes(self._origin, height, self._next[height], batch)
                del pending[:_BATCH]
                self._next[height] += len(batch)
                self.written += len(batch)


class _StoredLevels:
    """The stored levels left of the first new leaf: what the store holds, and what
    `fill_below` computed for the gaps a crash left (kept, not read back)."""

    def __init__(self, store: Store, origin: str, stored: dict[int, int]) -> None:
        self._store = store
        self._origin = origin
        self._stored = stored  # per stored height: how many nodes the store holds, from 0
        self._filled: dict[int, tuple[int, list[bytes]]] = {}  # height -> (first index, nodes)
        self._read: dict[tuple[int, int], bytes] = {}  # (height, index) -> stored hash, prefetched

    def fill_below(self, start: int) -> int:
        """Store the missing nodes of each height that end at or before leaf `start`, from the
        level below; how many."""
        written = 0
        for height, first in self._stored.items():  # ascending: the level below is complete
            end = start >> height
            nodes: list[bytes] = []
            for at in range(first, end, _BATCH):
                stop = min(at + _BATCH, end)
                batch = _parents(self._hashes(height - TILE_HEIGHT, at << TILE_HEIGHT, stop << TILE_HEIGHT))
                self._store.insert_nodes(self._origin, height, at, batch)
                nodes += batch
            if nodes:
                self._filled[height] = (first, nodes)
                written += len(nodes)
        return written

    def compact_range(self, size: int) -> CompactRange:
        """The compact range of the first `size` leaves (a multiple of TILE_WIDTH): each of its
        subtrees is a stored node or folded from at most 8 stored ones below it."""
        subtrees: list[tuple[int, int, int]] = []  # (stored height, first, end) below each subtree
        begin = 0
        for height in reversed(range(TILE_HEIGHT, size.bit_length())):  # largest subtree first
            if size >> height & 1:
                base = height - height % TILE_HEIGHT
                subtrees.append((base, begin >> base, (begin >> base) + (1 << (height - base))))
                begin += 1 << height
        stored = [(h, first, self._split(h, first, end)) for h, first, end in subtrees]
        spans = [span for span in stored if span[1] < span[2]]
        if spans:  # one query for them all
            self._read.update(((h, i), digest) for h, i, digest in self._store.nodes_in(self._origin, spans))
        return CompactRange(size, [subtree_root(self._hashes(*span)) for span in subtrees])

    def _split(self, height: int, first: int, end: int) -> int:
        """Where nodes [first, end) of `height` stop being in the store and are filled ones."""
        return max(first, min(end, self._filled.get(height, (end, []))[0]))

    def _hashes(self, height: int, first: int, end: int) -> list[bytes]:
        """Nodes [first, end) of a stored height (0: the leaves): prefetched, read, or filled."""
        split = self._split(height, first, end)
        prefetched = [self._read.get((height, i)) for i in range(first, split)]
        hashes = [digest for digest in prefetched if digest is not None]
        if len(hashes) != split - first:  # not prefetched, or not all stored: read (and check) them
            hashes = _children(self._store, self._origin, height, first, split)
        filled_from, filled = self._filled.get(height, (end, []))
        return hashes + filled[split - filled_from : end - filled_from]


def split_hashes(blob: bytes) -> list[bytes]:
    """A blob of 32-byte hashes (as the store returns them) as a list."""
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def _parents(hashes: list[bytes]) -> list[bytes]:
    """The root of each full group of TILE_WIDTH consecutive hashes."""
    return [
        subtree_root(hashes[i : i + TILE_WIDTH]) for i in range(0, len(hashes) - TILE_WIDTH + 1, TILE_WIDTH)
    ]


def _children(store: Store, origin: str, height: int, first: int, end: int) -> list[bytes]:
    blob = (
        store.leaf_hashes(origin, first, end)
        if height == 0
        else store.node_hashes(origin, height, first, end)
    )
    hashes = split_hashes(blob)
    if len(hashes) != end - first:
        what = "records" if height == 0 else f"tree nodes of height {height}"
        raise StoreError(f"log {origin!r}: expected {end - first} {what} from {first}, found {len(hashes)}")
    return hashes
