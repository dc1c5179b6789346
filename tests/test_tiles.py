"""Stored tree nodes and the proofs built from them, on a real embedded store.

66,000 records complete subtrees up to height 16, so every stored level (4, 8, 12, 16) and
the right edge of the tree are exercised.
"""

from __future__ import annotations

import random

import pytest

from backend.evidence import _proofs
from backend.store import TREE_NODES, Store
from backend.tree_nodes import TILE_HEIGHT, extend_nodes
from backend.tree_reader import TreeReader
from otel_audit.checkpoint import Checkpoint
from otel_audit.errors import ProofError, RootMismatchError
from otel_audit.merkle import CompactRange, hash_children
from otel_audit.proof import subtree_root, verify_consistency, verify_inclusion
from sealer.pipeline import Pipeline, PublishedLog
from sealer.state import LogState

from .test_pipeline import ORIGIN, items

SIZE = 66_000


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    store = Store.open(f"chdb://{tmp_path_factory.mktemp('tiles') / 'store'}")
    store.ensure_schema()
    pipeline = Pipeline(store, PublishedLog(LogState.empty(ORIGIN)))
    pipeline.start()
    for start in range(0, SIZE, 6000):
        pipeline.seal(items(min(6000, SIZE - start), f"{start}-"))
    pipeline.stop()
    leaves = [row[1] for row in store.hashes_from(ORIGIN, 0)]
    yield store, leaves
    store.close()


def _root(leaves: list[bytes], size: int) -> bytes:
    tree = CompactRange()
    tree.extend(leaves[:size])
    return tree.root()


def _completed(size: int) -> int:
    """How many perfect subtrees of a stored height (4, 8, 12, ...) the first `size` leaves hold."""
    return sum(size >> h for h in range(TILE_HEIGHT, 64, TILE_HEIGHT))


def test_extend_stores_each_completed_subtree_once(sealed):
    store, leaves = sealed
    assert TILE_HEIGHT == 4
    assert extend_nodes(store, ORIGIN, 1000) == 62 + 3 == _completed(1000)  # 62 of 16 leaves, 3 of 256
    assert extend_nodes(store, ORIGIN, SIZE) == _completed(SIZE) - _completed(1000)
    assert extend_nodes(store, ORIGIN, SIZE) == 0
    assert [store.node_count(ORIGIN, h) for h in (4, 8, 12, 16, 20)] == [4125, 257, 16, 1, 0]
    assert store.node_hashes(ORIGIN, 4, 7, 8) == subtree_root(leaves[7 * 16 : 8 * 16])
    assert store.node_hashes(ORIGIN, 8, 5, 6) == subtree_root(leaves[5 * 256 : 6 * 256])
    assert store.node_hashes(ORIGIN, 16, 0, 1) == subtree_root(leaves[:65536])


@pytest.mark.parametrize("size", [1, 255, 256, 257, 65535, 65536, 65537, SIZE])
def test_inclusion_proofs_from_stored_nodes_verify(sealed, size):
    store, leaves = sealed
    extend_nodes(store, ORIGIN, SIZE)
    root = _root(leaves, size)
    reader = TreeReader(store, ORIGIN)
    for index in sorted({0, size // 3, size // 2, size - 1}):
        proof = reader.inclusion_proof(index, size)
        verify_inclusion(index, size, leaves[index], proof, root)  # raises on failure
        assert reader.leaf_hash(index) == leaves[index]


@pytest.mark.parametrize(("old", "new"), [(1, SIZE), (256, 65536), (1000, 65537), (65536, SIZE), (777, 778)])
def test_consistency_proofs_from_stored_nodes_verify(sealed, old, new):
    store, leaves = sealed
    extend_nodes(store, ORIGIN, SIZE)
    proof = TreeReader(store, ORIGIN).consistency_proof(old, new)
    verify_consistency(old, new, proof, _root(leaves, old), _root(leaves, new))  # raises on failure


def test_missing_nodes_are_folded_from_below_and_bad_ones_give_bad_proofs(sealed):
    store, leaves = sealed
    extend_nodes(store, ORIGIN, SIZE)
    root = _root(leaves, SIZE)
    store.command("ALTER TABLE otel_audit.tree_nodes DELETE WHERE Height = 16 SETTINGS mutations_sync = 1")
    store.command(
        "ALTER TABLE otel_audit.tree_nodes DELETE WHERE Height = 8 AND NodeIndex > 100 "
        "SETTINGS mutations_sync = 1"
    )
    proof = TreeReader(store, ORIGIN).inclusion_proof(12345, SIZE)
    verify_inclusion(12345, SIZE, leaves[12345], proof, root)
    assert extend_nodes(store, ORIGIN, SIZE) == (SIZE >> 8) - 101 + 1  # repaired: 8s and the 16
    store.command(
        "ALTER TABLE otel_audit.tree_nodes UPDATE Hash = toFixedString(repeat('x', 32), 32) "
        "WHERE Height = 8 AND NodeIndex = 1 SETTINGS mutations_sync = 1"  # the height-8 sibling of leaf 3
    )
    proof = TreeReader(store, ORIGIN).inclusion_proof(3, SIZE)
    with pytest.raises(RootMismatchError, match=f"does not match expected root {root.hex()}"):
        verify_inclusion(3, SIZE, leaves[3], proof, root)


def test_batch_proofs_for_many_records_each_verify(sealed):
    """export's batch path (shared path tops, stop at a checked ancestor) gives RFC 9162 proofs."""
    store, leaves = sealed
    store.command("TRUNCATE TABLE otel_audit.tree_nodes")  # undo the tampering test above
    extend_nodes(store, ORIGIN, SIZE)
    for size in (SIZE, 65536, 40001):
        root = _root(leaves, size)
        checkpoint = Checkpoint(ORIGIN, size, root, bytes(32), 0, 0, bytes(32))
        rng = random.Random(size)
        seqs = sorted({*rng.sample(range(size), 300), 0, 1, size - 1, size - 2, size // 2})
        proofs = _proofs(store, ORIGIN, {seq: leaves[seq] for seq in seqs}, checkpoint)
        assert sorted(proofs) == seqs
        for seq in seqs:
            verify_inclusion(seq, size, leaves[seq], proofs[seq], root)
            assert list(proofs[seq]) == TreeReader(store, ORIGIN).inclusion_proof(seq, size)
        wrong = {seqs[0]: bytes(32)}  # an entry whose bytes are not the sealed ones
        with pytest.raises(ProofError):
            _proofs(store, ORIGIN, wrong, checkpoint)


@pytest.mark.parametrize("steps", [[SIZE], [15, 16, 1000, 1017, 4096, 65535, 65536, SIZE]])
def test_every_stored_node_is_its_subtrees_root(sealed, steps):
    """Extended at once or in uneven steps, the stored nodes are exactly the perfect subtrees of
    heights 4, 8, 12, 16 within the leaves, each stored once with the reference tree's hash."""
    store, leaves = sealed
    store.command("TRUNCATE TABLE otel_audit.tree_nodes")
    assert sum(extend_nodes(store, ORIGIN, size) for size in steps) == _completed(SIZE)
    rows = store.select(f"SELECT Height, NodeIndex, Hash FROM {TREE_NODES} ORDER BY Height, NodeIndex")
    expected = [(h, i) for h in (4, 8, 12, 16) for i in range(SIZE >> h)]
    assert [(h, i) for h, i, _ in rows] == expected
    level, reference = leaves[:SIZE], {}
    for height in range(1, 17):  # the reference tree, a level at a time
        level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        reference.update({(height, i): h for i, h in enumerate(level)})
    assert all(digest == reference[(h, i)] for h, i, digest in rows)
