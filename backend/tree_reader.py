"""Proofs from the stored tree nodes: `TreeReader` reads the tiles (backend/tree_nodes.py says
what is stored) and folds what is not stored, for inclusion and consistency proofs.

The stored nodes are never trusted: every proof built from them is checked against the signed
root before anyone is given it (backend/evidence.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from otel_audit.errors import FormatError, StoreError
from otel_audit.merkle import EMPTY_ROOT, HASH_SIZE, CompactRange, hash_children
from otel_audit.proof import (
    Node,
    consistency_ranges,
    inclusion_ranges,
    perfect_subtrees,
    range_hash,
    subtree_root,
)

from .store import Store
from .tree_nodes import TILE_HEIGHT, TILE_WIDTH, split_hashes

_GAP = 8192  # read rows this close together in one window: the engine's granule size


class TreeReader:
    """Node hashes of one origin's tree, from the stored tiles, for building proofs."""

    def __init__(self, store: Store, origin: str) -> None:
        self._store = store
        self._origin = origin
        self._known: dict[Node, bytes] = {}  # fetched (heights 0, 4, 8, ...) and computed nodes
        self._ranges: dict[tuple[int, int], bytes] = {}  # imperfect ranges already hashed
        self._leaf_tiles: dict[int, bytes] = {}  # tile -> its 16 leaf hashes, fetched whole
        self._retained_from: int | None = None  # the first leaf not expired, once learnt

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self._range_hashes(inclusion_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self._range_hashes(consistency_ranges(old_size, new_size))

    def leaf_hash(self, index: int) -> bytes:
        known = self._cached(0, index)
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
                while first < end and self._cached(height, first) is not None:
                    first += 1
                while end > first and self._cached(height, end - 1) is not None:
                    end -= 1
                if first < end:
                    missing.setdefault(height, []).append((first, end))
        if 0 in missing:
            self._fetch_leaves(missing.pop(0))
        nodes = [(h, first, end) for h, ranges in missing.items() for first, end in _merge(ranges, _GAP)]
        for height, index, digest in self._store.nodes_in(self._origin, nodes):
            self._known[(height, index)] = digest
        for height, first, end in nodes:  # not stored (yet, or lost): fold from below
            self._load(height, first, end)

    def _fetch_leaves(self, spans: list[tuple[int, int]]) -> None:
        """Leaf hashes of these Seq spans, read as a few contiguous windows.

        The engine reads whole granules (8192 rows) anyway, so spans closer than that are read
        as one window: a plain primary-key range, far cheaper than a long OR of small ranges.
        Only the spans asked for are kept. Leaves that expired under retention are skipped.
        """
        if self._retained_from:
            spans = [
                (max(first, self._retained_from), end) for first, end in spans if end > self._retained_from
            ]
        windows = _merge(spans, _GAP)
        if not windows:
            return
        blob = self._store.leaf_hash_windows(self._origin, windows)
        if len(blob) != HASH_SIZE * sum(end - first for first, end in windows):
            if self._retained_from is None and self._retained() > windows[0][0]:
                self._fetch_leaves(spans)
                return
            raise StoreError(
                f"log {self._origin!r}: records between Seq {windows[0][0]} and {windows[-1][1] - 1} are "
                "missing or repeated in the store; run `otel-audit verify`"
            )
        offset, w = 0, 0
        for first, end in spans:  # both sorted; every span lies inside one window
            while not windows[w][0] <= first < windows[w][1]:
                offset += HASH_SIZE * (windows[w][1] - windows[w][0])
                w += 1
            base = offset + HASH_SIZE * (first - windows[w][0])
            index = first
            while index < end:  # whole tiles are kept as one slice each: far fewer objects
                at = base + HASH_SIZE * (index - first)
                if index % TILE_WIDTH == 0 and index + TILE_WIDTH <= end:
                    self._leaf_tiles[index >> TILE_HEIGHT] = blob[at : at + HASH_SIZE * TILE_WIDTH]
                    index += TILE_WIDTH
                else:
                    self._known[(0, index)] = blob[at : at + HASH_SIZE]
                    index += 1

    def node(self, height: int, index: int) -> bytes:
        """The hash of one perfect subtree (fetching what it needs if not prefetched)."""
        return self._node(height, index)

    def _node(self, height: int, index: int) -> bytes:
        known = self._cached(height, index)
        if known is not None:
            return known
        if height % TILE_HEIGHT == 0:  # a stored level not fetched yet
            self._load(height, index, index + 1)
            known = self._cached(height, index)
            if known is None:
                raise StoreError(
                    f"log {self._origin!r}: the tree node at height {height}, index {index} needs "
                    "records that expired under retention"
                )
            return known
        known = hash_children(self._node(height - 1, 2 * index), self._node(height - 1, 2 * index + 1))
        self._known[(height, index)] = known
        return known

    def _retained(self) -> int:
        """Where the retained log begins: the leaves before it were dropped under retention.

        Learnt (one query) the first time a read of leaves comes back short. The subtrees
        left of it then come from the signed checkpoint of that size, which the sealer writes
        at every partition boundary (the unit retention drops): its compact range holds the
        maximal subtrees left of the boundary, which are exactly the nodes from the expired
        part that a proof of a retained record needs. Like every node here they are not
        trusted: each proof is checked against the signed root (backend/evidence.py).
        """
        if self._retained_from is None:
            self._retained_from = 0
            low = self._store.seq_range(self._origin)[1]
            stored = self._store.checkpoint_at(self._origin, low) if low else None
            if stored is not None:
                try:
                    hashes = CompactRange.from_bytes(low, stored.compact_range).hashes
                except FormatError:
                    return 0  # a damaged checkpoint: the short read is reported as such
                start, subtrees = 0, iter(hashes)  # largest first: the set bits of `low`
                for height in reversed(range(low.bit_length())):
                    if low >> height & 1:
                        self._known[(height, start >> height)] = next(subtrees)
                        start += 1 << height
                self._retained_from = low
        return self._retained_from

    def _cached(self, height: int, index: int) -> bytes | None:
        known = self._known.get((height, index))
        if known is None and height == 0:
            tile = self._leaf_tiles.get(index >> TILE_HEIGHT)
            if tile is not None:
                offset = HASH_SIZE * (index & (TILE_WIDTH - 1))
                return tile[offset : offset + HASH_SIZE]
        return known

    def _load(self, height: int, first: int, end: int) -> None:
        while first < end and self._cached(height, first) is not None:
            first += 1
        while end > first and self._cached(height, end - 1) is not None:
            end -= 1
        if first == end:
            return
        if height == 0:
            hashes = split_hashes(self._store.leaf_hashes(self._origin, first, end))
            if len(hashes) != end - first:
                learnt_now = self._retained_from is None
                kept = self._retained()
                if learnt_now and kept > first:  # the read was short by what retention dropped
                    if kept < end:
                        self._load(0, kept, end)
                    return
                if first < kept:
                    raise StoreError(
                        f"log {self._origin!r}: this proof needs records {first}..{end - 1}, which "
                        f"expired under retention (the log now begins at Seq {kept})"
                    )
                raise StoreError(
                    f"log {self._origin!r}: records {first}..{end - 1} are not all in the store; "
                    "run `otel-audit verify`"
                )
        else:
            hashes = split_hashes(self._store.node_hashes(self._origin, height, first, end))
            if len(hashes) < end - first:  # not stored yet (or lost): fold them from below
                start = first + len(hashes)
                self._load(height - TILE_HEIGHT, start << TILE_HEIGHT, end << TILE_HEIGHT)
                hashes += [self._fold(height, i) for i in range(start, end)]
        for offset, digest in enumerate(hashes):
            self._known[(height, first + offset)] = digest

    def _fold(self, height: int, index: int) -> bytes:
        """A stored-level node from the stored level below it (already loaded)."""
        base = height - TILE_HEIGHT
        return subtree_root([self._node(base, (index << TILE_HEIGHT) + j) for j in range(TILE_WIDTH)])


def _merge(ranges: Iterable[tuple[int, int]], gap: int = 0) -> list[tuple[int, int]]:
    """Sorted ranges, overlapping ones (or ones less than `gap` apart) joined."""
    merged: list[tuple[int, int]] = []
    for first, end in sorted(ranges):
        if merged and first <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((first, end))
    return merged
