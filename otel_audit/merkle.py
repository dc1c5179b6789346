"""RFC 6962 / RFC 9162 Merkle tree hashing and the compact range.

Pure functions only. Names follow the RFC: a leaf hash is HASH(0x00 || entry), an interior
node HASH(0x01 || left || right) (RFC 9162 section 2.1.1). The compact range is the list of
roots of the perfect subtrees that make up a tree of size n, largest first: O(log n) hashes
are all a sealer must keep to append leaves and compute the root (the same idea as
transparency-dev/merkle's `compact.Range` starting at index 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .errors import FormatError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
LEAF_PREFIX = b"\x00"  # RFC 9162 section 2.1.1: domain separation of leaves ...
NODE_PREFIX = b"\x01"  # ... from interior nodes (RFC 6962 section 2.1, second preimages)


def hash_leaf(entry: bytes) -> bytes:
    """RFC 9162 section 2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def hash_leaf_sql(entry: str) -> str:
    """`hash_leaf` as a ClickHouse expression over the String expression `entry`.

    The same rule, not a second one: the engine checks every stored row's LeafHash in one
    scan (backend/store.py `row_anomalies`), so the prefix is taken from LEAF_PREFIX here,
    and tests/test_hash_sql.py checks both give the same bytes on the RFC 6962 vectors.
    """
    return f"SHA256(concat(char({LEAF_PREFIX[0]}), {entry}))"


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 section 2.1.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root_from_leaf_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of the leaves, straight from the RFC's recursive definition.

    Slow (it recurses over the whole list) and kept as the reference the compact range is
    tested against.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)  # largest power of two smaller than n
    return hash_children(root_from_leaf_hashes(leaf_hashes[:k]), root_from_leaf_hashes(leaf_hashes[k:]))


_MAX_CHUNK_HEIGHT = 12  # extend hashes at most 4,096 leaves a level at a time

Visitor = Callable[[int, int, Sequence[bytes]], None]
"""Told `(height, index, hashes)`: the perfect subtrees `(height, index)`, `(height, index + 1)`,
... that a range gained, left to right (leaves are height 0), as merkle's `compact.VisitFn`."""


def _perfect_root(leaf_hashes: Sequence[bytes], first: int = 0, visitor: Visitor | None = None) -> bytes:
    """MTH of 2**k leaves, one level at a time (RFC 9162: both halves are perfect); each level
    is told to `visitor`, the leaves starting at index `first`."""
    level = list(leaf_hashes)
    sha256 = hashlib.sha256
    height = 0
    while len(level) > 1:
        level = [sha256(NODE_PREFIX + left + right).digest() for left, right in zip(level[::2], level[1::2])]
        height += 1
        if visitor is not None:
            visitor(height, first >> height, level)
    return level[0]


@dataclass
class CompactRange:
    """The perfect-subtree roots covering leaves [0, size), largest subtree first.

    Subtree i has 2**h leaves where h is the i-th highest set bit of `size`, so
    len(hashes) == popcount(size).
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != bin(self.size).count("1"):
            raise FormatError(
                f"compact range of size {self.size} needs {bin(self.size).count('1')} "
                f"hashes, got {len(self.hashes)}"
            )
        if any(len(h) != HASH_SIZE for h in self.hashes):
            raise FormatError("compact range hashes must be 32 bytes each")

    def append(self, leaf_hash: bytes, visitor: Visitor | None = None) -> None:
        """Add one leaf: merge equal-sized subtrees from the right, like binary carry.

        `visitor` is told the leaf and every node the merges complete (merkle's
        `compact.Range.Append`): whoever stores nodes needs no second pass over the leaves.
        """
        if visitor is not None:
            visitor(0, self.size, (leaf_hash,))
        self._push(leaf_hash, 0, visitor)

    def extend(self, leaf_hashes: Iterable[bytes], visitor: Visitor | None = None) -> None:
        """Add leaves in order. Where whole perfect subtrees fit (aligned to the size so far),
        their roots are hashed a level at a time: the same nodes as appending one leaf after
        another, with far less Python work per node (the verifier does this for every leaf).
        `visitor` is told the same nodes as `append` would tell it, a level of a chunk at a time."""
        if not isinstance(leaf_hashes, Sequence):
            leaf_hashes = list(leaf_hashes)
        done, count = 0, len(leaf_hashes)
        while done < count:
            aligned = (self.size & -self.size).bit_length() - 1 if self.size else _MAX_CHUNK_HEIGHT
            height = min(aligned, (count - done).bit_length() - 1, _MAX_CHUNK_HEIGHT)
            width = 1 << height
            chunk = leaf_hashes[done : done + width]
            if visitor is not None:
                visitor(0, self.size, chunk)
            self._push(_perfect_root(chunk, self.size, visitor), height, visitor)
            done += width

    def _push(self, node: bytes, height: int, visitor: Visitor | None = None) -> None:
        """Add the root of a perfect subtree of 2**height leaves (size a multiple of it),
        telling `visitor` each parent the merges complete."""
        hashes = self.hashes
        index = self.size >> height
        grows = 1 << height
        while index & 1:
            node = hash_children(hashes.pop(), node)
            index >>= 1
            height += 1
            if visitor is not None:
                visitor(height, index, (node,))
        hashes.append(node)
        self.size += grows

    def root(self) -> bytes:
        """MTH of leaves [0, size): fold the subtree roots from the smallest (right) one."""
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = hash_children(left, node)
        return node

    def copy(self) -> CompactRange:
        return CompactRange(self.size, list(self.hashes))

    def to_bytes(self) -> bytes:
        """The hashes concatenated; the size is stored beside it."""
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) % HASH_SIZE:
            raise FormatError(f"compact range blob of {len(data)} bytes is not a multiple of 32")
        hashes = [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        return cls(size, hashes)
