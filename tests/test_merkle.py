"""Tests for otel_audit.merkle against the published RFC 6962 test vectors.

The vectors are those of transparency-dev/merkle, testonly/constants.go
(https://github.com/transparency-dev/merkle/blob/main/testonly/constants.go): LeafInputs(),
NodeHashes(), RootHashes() and CompactTrees(), copied verbatim. NODES[level][index] is
NodeHashes()[level][index], the hash of the index-th perfect subtree of 2**level leaves.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import pytest

from otel_audit.errors import FormatError
from otel_audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    hash_children,
    hash_leaf,
    root_from_leaf_hashes,
)

LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

# Roots of the trees made of the first n leaves, n = 0..8.
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]

# NODES[level][index]: level 0 are the leaf hashes. Reproduce one from a shell, e.g. the
# leaf hash of the empty entry (SHA-256 of the single prefix byte 0x00):
#   $ printf '\000' | sha256sum
#   6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d  -
NODES = [
    [
        bytes.fromhex(h)
        for h in [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ]
    ],
    [
        bytes.fromhex(h)
        for h in [
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ]
    ],
    [
        bytes.fromhex(h)
        for h in [
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ]
    ],
    [bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]


def _n(level: int, index: int) -> bytes:
    return NODES[level][index]


# CompactRange.hashes for the tree of the first n leaves, n = 0..8.
COMPACT_TREES = [
    [],
    [_n(0, 0)],
    [_n(1, 0)],
    [_n(1, 0), _n(0, 2)],
    [_n(2, 0)],
    [_n(2, 0), _n(0, 4)],
    [_n(2, 0), _n(1, 2)],
    [_n(2, 0), _n(1, 2), _n(0, 6)],
    [_n(3, 0)],
]

LEAF_HASHES = NODES[0]


def _random_leaf_hashes(count: int, seed: int = 6962) -> list[bytes]:
    rng = random.Random(seed)
    return [hash_leaf(rng.randbytes(rng.randrange(0, 64))) for _ in range(count)]


# -- hashing ------------------------------------------------------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert HASH_SIZE == 32


@pytest.mark.parametrize("index", range(len(LEAF_INPUTS)))
def test_hash_leaf_vectors(index: int) -> None:
    assert hash_leaf(LEAF_INPUTS[index]) == LEAF_HASHES[index]


def test_hash_leaf_and_children_are_domain_separated() -> None:
    # An interior node over (a, b) must not equal the leaf hash of a || b (RFC 6962 sec 2.1).
    a, b = LEAF_HASHES[0], LEAF_HASHES[1]
    assert hash_children(a, b) != hash_leaf(a + b)
    assert hash_children(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert hash_children(a, b) != hash_children(b, a)


@pytest.mark.parametrize(
    ("level", "index"),
    [(level, index) for level in range(1, len(NODES)) for index in range(len(NODES[level]))],
)
def test_hash_children_node_vectors(level: int, index: int) -> None:
    left, right = _n(level - 1, 2 * index), _n(level - 1, 2 * index + 1)
    assert hash_children(left, right) == _n(level, index)


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_root_from_leaf_hashes_vectors(size: int) -> None:
    assert root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]


# -- compact range ------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(len(COMPACT_TREES)))
def test_compact_range_append_vectors(size: int) -> None:
    tree = CompactRange()
    for leaf_hash in LEAF_HASHES[:size]:
        tree.append(leaf_hash)
    assert tree.size == size
    assert tree.hashes == COMPACT_TREES[size]
    assert tree.root() == ROOTS[size]


@pytest.mark.parametrize("size", range(len(COMPACT_TREES)))
def test_compact_range_from_vector_hashes(size: int) -> None:
    # A range built directly from the published compact tree has the published root.
    tree = CompactRange(size, list(COMPACT_TREES[size]))
    assert tree.root() == ROOTS[size]


@pytest.mark.parametrize("size", range(len(COMPACT_TREES)))
def test_compact_range_extend_vectors(size: int) -> None:
    tree = CompactRange()
    tree.extend(iter(LEAF_HASHES[:size]))  # any iterable, consumed once
    assert (tree.size, tree.hashes, tree.root()) == (size, COMPACT_TREES[size], ROOTS[size])


@pytest.mark.parametrize("split", range(len(LEAF_HASHES) + 1))
def test_compact_range_extend_in_two_parts(split: int) -> None:
    tree = CompactRange()
    tree.extend(LEAF_HASHES[:split])
    tree.extend(LEAF_HASHES[split:])
    assert tree.hashes == COMPACT_TREES[8]
    assert tree.root() == ROOTS[8]


def test_compact_range_matches_reference_root_for_sizes_0_to_300() -> None:
    leaves = _random_leaf_hashes(300)
    tree = CompactRange()
    assert tree.root() == root_from_leaf_hashes([]) == EMPTY_ROOT
    for size in range(1, 301):
        tree.append(leaves[size - 1])
        assert tree.size == size
        assert len(tree.hashes) == size.bit_count(), size
        assert tree.root() == root_from_leaf_hashes(leaves[:size]), size


@pytest.mark.parametrize("start", [0, 1, 5, 64, 4095, 4096, 6000])
@pytest.mark.parametrize("count", [1, 2, 3, 31, 4096, 4097, 9000])
def test_compact_range_extend_in_bulk_equals_appending_one_by_one(start: int, count: int) -> None:
    """extend hashes whole aligned subtrees a level at a time (at most 4,096 leaves): for
    every alignment of the start and every length, the same range as append, leaf by leaf."""
    leaves = _random_leaf_hashes(start + count)
    bulk, single = CompactRange(), CompactRange()
    bulk.extend(leaves[:start])
    for leaf in leaves[:start]:
        single.append(leaf)
    assert bulk == single
    bulk.extend(leaves[start:])
    for leaf in leaves[start:]:
        single.append(leaf)
    assert bulk == single and bulk.size == start + count


def test_compact_range_extend_in_bulk_matches_the_reference_root() -> None:
    leaves = _random_leaf_hashes(5000)
    tree = CompactRange()
    tree.extend(leaves[:1234])
    tree.extend(leaves[1234:])
    assert tree.root() == root_from_leaf_hashes(leaves)


def _recorder() -> tuple[list[tuple[int, int, bytes]], Callable[[int, int, Sequence[bytes]], None]]:
    """A visitor that keeps every (height, index, hash) it is told, in order."""
    seen: list[tuple[int, int, bytes]] = []

    def visit(height: int, first: int, hashes: Sequence[bytes]) -> None:
        seen.extend((height, first + i, h) for i, h in enumerate(hashes))

    return seen, visit


@pytest.mark.parametrize("bulk", [False, True])
def test_compact_range_visitor_reports_every_published_node(bulk: bool) -> None:
    """merkle's compact.Range.Append(hash, visitor): the leaves and each node they complete."""
    seen, visit = _recorder()
    tree = CompactRange()
    if bulk:
        tree.extend(LEAF_HASHES, visit)
    else:
        for leaf_hash in LEAF_HASHES:
            tree.append(leaf_hash, visit)
    published = {(level, index): h for level, hashes in enumerate(NODES) for index, h in enumerate(hashes)}
    assert len(seen) == len(published) and dict(((h, i), d) for h, i, d in seen) == published


@pytest.mark.parametrize("start", [0, 1, 5, 16, 4095, 4096, 6000])
@pytest.mark.parametrize("count", [1, 2, 31, 4097, 9000])
def test_compact_range_visitor_reports_each_completed_subtree_once(start: int, count: int) -> None:
    """From any size, the nodes told are exactly the perfect subtrees that end among the new
    leaves, each once, left to right at every height, with the reference tree's hashes."""
    leaves = _random_leaf_hashes(start + count)
    tree = CompactRange()
    tree.extend(leaves[:start])
    seen, visit = _recorder()
    tree.extend(leaves[start:], visit)
    end = start + count
    expected = [(h, i) for h in range(end.bit_length()) for i in range(end >> h) if (i + 1) << h > start]
    assert sorted((h, i) for h, i, _ in seen) == expected
    for height in {h for h, _ in expected}:
        assert [i for h, i, _ in seen if h == height] == sorted(i for h, i in expected if h == height)
    for h, i, digest in seen[:: max(1, len(seen) // 50)]:  # the reference tree, on a sample
        assert digest == root_from_leaf_hashes(leaves[i << h : (i + 1) << h]), (h, i)
    one_by_one = CompactRange()
    one_by_one.extend(leaves[:start])
    seen_single, visit_single = _recorder()
    for leaf in leaves[start:]:
        one_by_one.append(leaf, visit_single)
    assert sorted(seen_single) == sorted(seen) and one_by_one == tree


def test_compact_range_root_does_not_change_state() -> None:
    tree = CompactRange()
    tree.extend(LEAF_HASHES[:7])
    before = list(tree.hashes)
    assert tree.root() == tree.root() == ROOTS[7]
    assert tree.hashes == before


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 8, 9, 100, 255, 256, 257, 300])
def test_compact_range_serialization_round_trip(size: int) -> None:
    leaves = _random_leaf_hashes(size + 5)
    tree = CompactRange()
    tree.extend(leaves[:size])
    blob = tree.to_bytes()
    assert len(blob) == HASH_SIZE * size.bit_count()
    assert blob == b"".join(tree.hashes)
    restored = CompactRange.from_bytes(size, blob)
    assert restored == tree
    assert restored.root() == tree.root()
    # A restored range keeps growing exactly like the original.
    restored.extend(leaves[size:])
    assert restored.root() == root_from_leaf_hashes(leaves)


@pytest.mark.parametrize("size", range(len(COMPACT_TREES)))
def test_compact_range_to_bytes_vectors(size: int) -> None:
    tree = CompactRange()
    tree.extend(LEAF_HASHES[:size])
    assert tree.to_bytes() == b"".join(COMPACT_TREES[size])
    assert CompactRange.from_bytes(size, b"".join(COMPACT_TREES[size])).root() == ROOTS[size]


def test_compact_range_copy_is_independent() -> None:
    tree = CompactRange()
    tree.extend(LEAF_HASHES[:3])
    clone = tree.copy()
    assert clone == tree
    assert clone.hashes is not tree.hashes
    clone.extend(LEAF_HASHES[3:])
    assert (tree.size, tree.hashes, tree.root()) == (3, COMPACT_TREES[3], ROOTS[3])
    assert (clone.size, clone.root()) == (8, ROOTS[8])
    tree.append(LEAF_HASHES[3])
    assert (clone.size, clone.root()) == (8, ROOTS[8])
    assert tree.root() == ROOTS[4]


def test_compact_range_default_instances_do_not_share_state() -> None:
    first, second = CompactRange(), CompactRange()
    first.append(LEAF_HASHES[0])
    assert second.size == 0 and second.hashes == []


H = b"\x11" * 32


@pytest.mark.parametrize(
    ("size", "hashes", "match"),
    [
        (0, [H], r"size 0 needs 0 hashes, got 1"),
        (1, [], r"size 1 needs 1 hashes, got 0"),
        (3, [H], r"size 3 needs 2 hashes, got 1"),
        (4, [H, H], r"size 4 needs 1 hashes, got 2"),
        (7, [H, H], r"size 7 needs 3 hashes, got 2"),
        (-1, [], r"compact range of size -1"),
        (1, [b"\x11" * 31], r"hashes must be 32 bytes each"),
        (1, [b"\x11" * 33], r"hashes must be 32 bytes each"),
        (1, [b""], r"hashes must be 32 bytes each"),
        (3, [H, b"\x11" * 16], r"hashes must be 32 bytes each"),
    ],
)
def test_compact_range_rejects_bad_hashes(size: int, hashes: list[bytes], match: str) -> None:
    with pytest.raises(FormatError, match=match):
        CompactRange(size, hashes)


@pytest.mark.parametrize(
    ("size", "blob", "match"),
    [
        (1, b"\x00" * 31, r"blob of 31 bytes is not a multiple of 32"),
        (1, b"\x00" * 33, r"blob of 33 bytes is not a multiple of 32"),
        (3, b"\x00" * 65, r"blob of 65 bytes is not a multiple of 32"),
        (1, b"", r"size 1 needs 1 hashes, got 0"),
        (2, b"\x00" * 64, r"size 2 needs 1 hashes, got 2"),
        (3, b"\x00" * 32, r"size 3 needs 2 hashes, got 1"),
        (0, b"\x00" * 32, r"size 0 needs 0 hashes, got 1"),
    ],
)
def test_compact_range_from_bytes_rejects_bad_blobs(size: int, blob: bytes, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        CompactRange.from_bytes(size, blob)
