"""Stored Merkle tree nodes ("tiles"): proofs in O(log n) reads instead of a rehash of the log.

Every 256 leaves complete a perfect subtree of height 8, every 256 of those one of height 16,
and so on. The sealer stores those nodes (table otel_audit.tree_nodes) as the log grows; the
C2SP tlog-tiles tile at level L, index N is the rows Height = 8L, NodeIndex in [256N, 256N + 256),
and level 0 is the LeafHash column of otel_audit.logs. Any other node is folded from at most
128 stored ones below it, so a proof in a log of any size reads a few hundred hashes.

The stored nodes are a cache derived from LeafHash and are never trusted: a missing one is
computed from the level below, and every proof built from them is checked against the signed
root before anyone is given it (backend/evidence.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from otel_audit.errors import StoreError
from otel_audit.merkle import EMPTY_ROOT, HASH_SIZE, hash_children
from otel_audit.proof import (
    Node,
    consistency_ranges,
    inclusion_ranges,
    perfect_subtrees,
    range_hash,
    subtree_root,
)

from .store import Store

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_CHUNK = 1024 * TILE_WIDTH  # leaves read per query while extending


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def _parents(hashes: list[bytes]) -> list[bytes]:
    """The root of each full group of TILE_WIDTH consecutive hashes."""
    return [
        subtree_root(hashes[i : i + TILE_WIDTH]) for i in range(0, len(hashes) - TILE_WIDTH + 1, TILE_WIDTH)
    ]


def extend_nodes(store: Store, origin: str, size: int) -> int:
    """Store every node at heights 8, 16, ... that the first `size` leaves complete.

    Picks up wherever the stored nodes end, so it repairs itself after a crash. Returns how
    many nodes it wrote.
    """
    written = 0
    height = TILE_HEIGHT
    while size >> height:
        have, want = store.node_count(origin, height), size >> height
        step = _CHUNK >> TILE_HEIGHT
        for first in range(have, want, step):
            end = min(first + step, want)
            below = _children(store, origin, height - TILE_HEIGHT, first << TILE_HEIGHT, end << TILE_HEIGHT)
            store.insert_nodes(origin, height, first, _parents(below))
            written += end - first
        height += TILE_HEIGHT
    return written


def _children(store: Store, origin: str, height: int, first: int, end: int) -> list[bytes]:
    blob = (
        store.leaf_hashes(origin, first, end)
        if height == 0
        else store.node_hashes(origin, height, first, end)
    )
    hashes = _split(blob)
    if len(hashes) != end - first:
        what = "records" if height == 0 else f"tree nodes of height {height}"
        raise StoreError(f"log {origin!r}: expected {end - first} {what} from {first}, found {len(hashes)}")
    return hashes


class TreeReader:
    """Node hashes of one origin's tree, from the stored tiles, for building proofs."""

    def __init__(self, store: Store, origin: str) -> None:
        self._store = store
        self._origin = origin
        self._known: dict[Node, bytes] = {}  # fetched (heights 0, 8, 16, ...) and computed nodes
        self._ranges: dict[tuple[int, int], bytes] = {}  # imperfect ranges already hashed

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._range_hashes(inclusion_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self._range_hashes(consistency_ranges(old_size, new_size))

    def leaf_hash(self, index: int) -> bytes:
        known = self._known.get((0, index))
        return known if known is not None else self.node_hashes([(0, index)])[(0, index)]

    def root(self, size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else self._range_hashes([(0, size)])[0]

    def prefetch_for(self, indexes: Iterable[int], size: int) -> None:
        """Fetch every tile the inclusion proofs of `indexes` in a tree of `size` read (the
        tile holding each record at every level, and the tree's right edge), in two queries:
        the proofs of one record or of many then run from memory."""
        indexes = set(indexes)
        spans: dict[int, set[tuple[int, int]]] = {}
        height = 0
        while size >> height:
            width = TILE_WIDTH << height  # leaves under one tile of this level
            tiles = {i // width for i in indexes} | {(size - 1) // width}
            level_end = size >> height
            spans[height] = {(t << TILE_HEIGHT, min((t + 1) << TILE_HEIGHT, level_end)) for t in tiles}
            height += TILE_HEIGHT
        self._fetch(spans)

    def hashes_of(self, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
        """MTH of each range, from what is already fetched (fetching only what is missing)."""
        out = []
        for begin, end in ranges:
            width = end - begin
            if width & (width - 1) == 0 and begin % width == 0:  # a perfect subtree: one node
                out.append(self._node(width.bit_length() - 1, begin // width))
                continue
            known = self._ranges.get((begin, end))  # the tree's right edge, shared by many proofs
            if known is None:
                known = self._ranges[(begin, end)] = range_hash(begin, end, lambda node: self._node(*node))
            out.append(known)
        return out

    def _range_hashes(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        self.node_hashes(node for begin, end in ranges for node in perfect_subtrees(begin, end))
        return self.hashes_of(ranges)

    def node_hashes(self, nodes: Iterable[Node]) -> dict[Node, bytes]:
        """The hash of each perfect subtree, folded from the stored level at or below it.

        Fetches what is missing in one query per contiguous stretch, then computes, keeping
        every node it computes: the proofs of neighbouring records share most of them.
        """
        wanted = list(nodes)
        spans: dict[int, set[tuple[int, int]]] = {}
        for height, index in wanted:
            if (height, index) in self._known:
                continue
            base = height - height % TILE_HEIGHT
            shift = height - base
            spans.setdefault(base, set()).add((index << shift, (index + 1) << shift))
        self._fetch(spans)
        return {node: self._node(*node) for node in wanted}

    def _fetch(self, spans: dict[int, set[tuple[int, int]]]) -> None:
        """Load these stretches of stored levels: one query for leaves, one for nodes."""
        missing: dict[int, list[tuple[int, int]]] = {}
        for height, ranges in spans.items():
            for first, end in _merge(ranges):
                while first < end and (height, first) in self._known:
                    first += 1
                while end > first and (height, end - 1) in self._known:
                    end -= 1
                if first < end:
                    missing.setdefault(height, []).append((first, end))
        if 0 in missing:
            for seq, digest in self._store.leaf_hashes_in(self._origin, missing.pop(0)):
                self._known[(0, seq)] = digest
        nodes = [(h, first, end) for h, ranges in missing.items() for first, end in ranges]
        for height, index, digest in self._store.nodes_in(self._origin, nodes):
            self._known[(height, index)] = digest
        for height, first, end in nodes:  # not stored (yet, or lost): fold from below
            self._load(height, first, end)

    def _node(self, height: int, index: int) -> bytes:
        known = self._known.get((height, index))
        if known is None and height % TILE_HEIGHT == 0:  # a stored level not fetched yet
            self._load(height, index, index + 1)
            known = self._known[(height, index)]
        elif known is None:
            known = hash_children(self._node(height - 1, 2 * index), self._node(height - 1, 2 * index + 1))
            self._known[(height, index)] = known
        return known

    def _load(self, height: int, first: int, end: int) -> None:
        while first < end and (height, first) in self._known:
            first += 1
        while end > first and (height, end - 1) in self._known:
            end -= 1
        if first == end:
            return
        if height == 0:
            hashes = _split(self._store.leaf_hashes(self._origin, first, end))
            if len(hashes) != end - first:
                raise StoreError(
                    f"log {self._origin!r}: records {first}..{end - 1} are not all in the store; "
                    "run `otel-audit verify`"
                )
        else:
            hashes = _split(self._store.node_hashes(self._origin, height, first, end))
            if len(hashes) < end - first:  # not stored yet (or lost): fold them from below
                start = first + len(hashes)
                self._load(height - TILE_HEIGHT, start << TILE_HEIGHT, end << TILE_HEIGHT)
                hashes += [self._fold(height, i) for i in range(start, end)]
        for offset, digest in enumerate(hashes):
            self._known[(height, first + offset)] = digest

    def _fold(self, height: int, index: int) -> bytes:
        """A stored-level node from the stored level below it (already loaded)."""
        base = height - TILE_HEIGHT
        return subtree_root([self._known[(base, (index << TILE_HEIGHT) + j)] for j in range(TILE_WIDTH)])


def _merge(ranges: set[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, end in sorted(ranges):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((first, end))
    return merged
