"""RFC 9162 inclusion and consistency proofs against the published transparency-dev vectors.

The vectors are those of transparency-dev/merkle, proof/verify_test.go
(https://github.com/transparency-dev/merkle/blob/main/proof/verify_test.go): inclusionProofs
and consistencyProofs over the RFC 6962 test leaves (LEAF_INPUTS, ROOTS in test_merkle.py),
copied verbatim, with the corruptions that file probes (wrong index, wrong size, flipped
bits, extra or missing hashes) which every verifier must reject.
"""

from __future__ import annotations

import pickle

import pytest

from otel_audit.errors import FormatError, ProofError, ProofSizeError, RootMismatchError
from otel_audit.merkle import hash_leaf, root_from_leaf_hashes
from otel_audit.proof import (
    consistency_ranges,
    inclusion_ranges,
    perfect_subtrees,
    range_hash,
    root_from_inclusion_proof,
    subtree_root,
    verify_consistency,
    verify_inclusion,
)

from .test_merkle import LEAF_INPUTS, ROOTS, _random_leaf_hashes


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


# (leaf number counted from 1, as in the Go table; tree size; proof)
INCLUSION_VECTORS = [
    (1, 8, [_h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [_h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            _h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            _h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (3, 3, [_h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (2, 5, [_h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (1, 1, []),
]  # fmt: skip

CONSISTENCY_VECTORS = [
    (1, 1, []),
    (1, 8, [_h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            _h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [_h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            _h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            _h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [_h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            _h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [_h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            _h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            _h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]  # fmt: skip

SOME_HASH = _h("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY_TREE = ROOTS[0]
LEAF_HASHES = [hash_leaf(data) for data in LEAF_INPUTS]


def _node_hash_from(leaves: list[bytes]):  # type: ignore[no-untyped-def]
    def node_hash(node: tuple[int, int]) -> bytes:
        height, index = node
        return subtree_root(leaves[index << height : (index + 1) << height])

    return node_hash


def _inclusion_proof(leaves: list[bytes], index: int, size: int) -> list[bytes]:
    node_hash = _node_hash_from(leaves[:size])
    return [range_hash(a, b, node_hash) for a, b in inclusion_ranges(index, size)]


def _consistency_proof(leaves: list[bytes], old: int, new: int) -> list[bytes]:
    node_hash = _node_hash_from(leaves[:new])
    return [range_hash(a, b, node_hash) for a, b in consistency_ranges(old, new)]


# -- published vectors --------------------------------------------------------------------


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors_verify(leaf: int, size: int, proof: list[bytes]) -> None:
    index = leaf - 1
    assert root_from_inclusion_proof(index, size, LEAF_HASHES[index], proof) == ROOTS[size]
    verify_inclusion(index, size, LEAF_HASHES[index], proof, ROOTS[size])  # raises on failure


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors_are_what_we_produce(leaf: int, size: int, proof: list[bytes]) -> None:
    assert _inclusion_proof(LEAF_HASHES, leaf - 1, size) == proof


def _bit_flips(proof: list[bytes], mask: int) -> list[list[bytes]]:
    out = []
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ mask]) + flipped[i][1:]
        out.append(flipped)
    return out


@pytest.mark.parametrize(("leaf", "size", "proof"), [v for v in INCLUSION_VECTORS if v[2]])
def test_inclusion_corruptions_are_rejected(leaf: int, size: int, proof: list[bytes]) -> None:
    index, root, leaf_hash = leaf - 1, ROOTS[size], LEAF_HASHES[leaf - 1]
    probes = [
        (index - 1, size, root, leaf_hash, proof),
        (index + 1, size, root, leaf_hash, proof),
        (index ^ 2, size, root, leaf_hash, proof),
        (index, size * 2, root, leaf_hash, proof),
        (index, size // 2, root, leaf_hash, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, EMPTY_TREE, leaf_hash, proof),
        (index, size, SOME_HASH, leaf_hash, proof),
        (index, size, root, leaf_hash, [*proof, b""]),
        (index, size, root, leaf_hash, [*proof, root]),
        (index, size, root, leaf_hash, [b"", *proof]),
        (index, size, root, leaf_hash, [root, *proof]),
        (index, size, root, leaf_hash, proof[:-1]),
        *[(index, size, root, leaf_hash, p) for p in _bit_flips(proof, 8)],
    ]
    if len(proof) > 1:
        probes.append((index, size, root, leaf_hash, [proof[0], SOME_HASH, *proof[1:]]))
    for i, (idx, sz, rt, lh, pf) in enumerate(probes):
        with pytest.raises(ProofError):
            verify_inclusion(idx, sz, lh, pf, rt)
            pytest.fail(f"probe {i} verified")


@pytest.mark.parametrize(("leaf", "size", "proof"), [v for v in INCLUSION_VECTORS if v[2]])
def test_inclusion_failures_carry_what_was_got_and_wanted(leaf: int, size: int, proof: list[bytes]) -> None:
    index, leaf_hash = leaf - 1, LEAF_HASHES[leaf - 1]
    with pytest.raises(RootMismatchError, match=f"calculated root {ROOTS[size].hex()} does not match") as got:
        verify_inclusion(index, size, leaf_hash, proof, SOME_HASH)
    assert (got.value.expected_root, got.value.calculated_root) == (SOME_HASH, ROOTS[size])
    again = pickle.loads(pickle.dumps(got.value))  # bundles check proofs in worker processes
    assert (again.expected_root, again.calculated_root, str(again)) == (
        SOME_HASH,
        ROOTS[size],
        str(got.value),
    )
    with pytest.raises(
        ProofSizeError, match=f"wrong proof size {len(proof) + 1}, want {len(proof)}"
    ) as size_error:
        verify_inclusion(index, size, leaf_hash, [*proof, SOME_HASH], ROOTS[size])
    assert (size_error.value.got, size_error.value.want) == (len(proof) + 1, len(proof))
    with pytest.raises(ProofSizeError, match=f"wrong proof size {len(proof) - 1}, want {len(proof)}"):
        root_from_inclusion_proof(index, size, leaf_hash, proof[:-1])


def test_inclusion_single_entry_and_degenerate_trees() -> None:
    leaf = hash_leaf(b"data")
    verify_inclusion(0, 1, leaf, [], leaf)
    with pytest.raises(ProofError, match="leaf_hash has unexpected size 0, want 32"):
        verify_inclusion(0, 1, b"", [], leaf)
    with pytest.raises(ProofError, match="root has unexpected size 0, want 32"):
        verify_inclusion(0, 1, leaf, [], b"")
    with pytest.raises(ProofError, match="proof hash 0 has unexpected size 9, want 32"):
        verify_inclusion(0, 2, leaf, [b"WrongHash"], leaf)
    for index, size in [(0, 0), (1, 0), (2, 1)]:
        with pytest.raises(ProofError, match=f"leaf index {index} is outside a tree of size {size}"):
            verify_inclusion(index, size, SOME_HASH, [], EMPTY_TREE)
    with pytest.raises(FormatError):
        inclusion_ranges(3, 3)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors_verify(old: int, new: int, proof: list[bytes]) -> None:
    verify_consistency(old, new, proof, ROOTS[old], ROOTS[new])  # raises on failure


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors_are_what_we_produce(old: int, new: int, proof: list[bytes]) -> None:
    assert _consistency_proof(LEAF_HASHES, old, new) == proof


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_consistency_corruptions_are_rejected(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof),
        (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
        *[(old, new, r1, r2, p) for p in _bit_flips(proof, 16)],
    ]
    for i, (o, n, a, b, p) in enumerate(probes):
        with pytest.raises(ProofError):
            verify_consistency(o, n, p, a, b)
            pytest.fail(f"probe {i} verified")


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_consistency_failures_carry_what_was_got_and_wanted(old: int, new: int, proof: list[bytes]) -> None:
    with pytest.raises(RootMismatchError, match=f"does not match expected root {SOME_HASH.hex()}") as got:
        verify_consistency(old, new, proof, ROOTS[old], SOME_HASH)
    assert (got.value.expected_root, got.value.calculated_root) == (SOME_HASH, ROOTS[new])
    with pytest.raises(RootMismatchError) as got:
        verify_consistency(old, new, proof, SOME_HASH, ROOTS[new])
    # The old root is checked against the path's end, or (old size a power of two) starts it.
    assert got.value.expected_root == (ROOTS[new] if old & (old - 1) == 0 else SOME_HASH)
    with pytest.raises(ProofSizeError, match=f"wrong proof size {len(proof) - 1}, want {len(proof)}"):
        verify_consistency(old, new, proof[:-1], ROOTS[old], ROOTS[new])


def test_consistency_trivial_cases() -> None:
    a, b = SOME_HASH, EMPTY_TREE
    verify_consistency(0, 0, [], a, a)
    verify_consistency(0, 1, [], a, b)
    verify_consistency(1, 1, [], b, b)
    for old, new, proof, old_root, error, match in [
        (0, 0, [], a, RootMismatchError, f"calculated root {a.hex()} does not match expected root {b.hex()}"),
        (1, 0, [], a, ProofError, "no consistency proof from tree size 1 to 0"),
        (2, 1, [], a, ProofError, "no consistency proof from tree size 2 to 1"),
        (1, 2, [], a, ProofSizeError, "wrong proof size 0, want 1"),
        (0, 1, [b], b, ProofSizeError, "wrong proof size 1, want 0"),
        (1, 1, [b], b, ProofSizeError, "wrong proof size 1, want 0"),
    ]:
        with pytest.raises(error, match=match):
            verify_consistency(old, new, proof, old_root, b)


# -- our construction, every small tree -----------------------------------------------------


def test_every_inclusion_and_consistency_proof_up_to_70_leaves() -> None:
    leaves = _random_leaf_hashes(70)
    roots = [root_from_leaf_hashes(leaves[:n]) for n in range(71)]
    for size in range(1, 71):
        for index in range(size):
            proof = _inclusion_proof(leaves, index, size)
            verify_inclusion(index, size, leaves[index], proof, roots[size])
        for old in range(size + 1):
            proof = _consistency_proof(leaves, old, size)
            verify_consistency(old, size, proof, roots[old], roots[size])
            if old not in (0, size):
                with pytest.raises(RootMismatchError):
                    verify_consistency(old, size, proof, roots[old], roots[size - 1])


@pytest.mark.parametrize(("begin", "end"), [(0, 1), (0, 13), (8, 13), (256, 300), (0, 2**20 + 5), (12, 16)])
def test_perfect_subtrees_tile_the_range(begin: int, end: int) -> None:
    nodes = perfect_subtrees(begin, end)
    position = begin
    for height, index in nodes:
        assert index << height == position, "subtrees are aligned and contiguous"
        position += 1 << height
    assert position == end
    heights = [h for h, _ in nodes]
    assert heights == sorted(heights, reverse=True), "largest subtree first"
