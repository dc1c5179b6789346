"""RFC 9162 inclusion and consistency proofs: which subtrees they are made of, and checking them.

Pure functions, no I/O. Producing a proof is split in two so that the store can fetch what
it needs in a few queries: `inclusion_ranges` / `consistency_ranges` name the leaf ranges
[begin, end) whose Merkle Tree Hashes make up the proof (RFC 9162 section 2.1.3.1 PATH and
2.1.4.1 SUBPROOF, in proof order), and `perfect_subtrees` splits any such range into the
perfect, aligned subtrees a tile store holds. Checking follows the verification algorithms
of RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, so that a proof accepted here is one
any other RFC 9162 implementation accepts. The checks raise, like transparency-dev/merkle's
proof/verify.go: `verify_inclusion` is a thin wrapper over the pure
`root_from_inclusion_proof`; a wrong root is a RootMismatchError carrying both roots, a
wrong number of hashes a ProofSizeError ("wrong proof size %d, want %d").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import FormatError, ProofError, ProofSizeError, RootMismatchError
from .merkle import HASH_SIZE, hash_children

Range = tuple[int, int]  # leaves [begin, end)
Node = tuple[
    int, int
]  # (height, index): the perfect subtree over leaves [index << height, (index + 1) << height)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[0:size]), the leaf's sibling first."""
    if not 0 <= index < size:
        raise FormatError(f"leaf index {index} is outside a tree of size {size}")
    path: list[Range] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            path.append((begin + k, end))
            end = begin + k
        else:
            path.append((begin, begin + k))
            begin += k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges whose hashes form PROOF(old_size, D[0:new_size]) (RFC 9162 section 2.1.4.1)."""
    if not 0 <= old_size <= new_size:
        raise FormatError(f"no consistency proof from tree size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    out: list[Range] = []
    begin, end, whole = 0, new_size, True  # whole: the old tree is exactly [0, begin + m)
    m = old_size
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin, m, whole = begin + k, m - k, False
    if not whole:
        out.append((begin, end))
    out.reverse()
    return out


def perfect_subtrees(begin: int, end: int) -> list[Node]:
    """The perfect aligned subtrees covering [begin, end), left to right.

    For the ranges a proof names this is also how their hash is built: fold the subtree
    hashes from the right (as a compact range's root is).
    """
    nodes: list[Node] = []
    while begin < end:
        height = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length() - 1
        while begin + (1 << height) > end:
            height -= 1
        nodes.append((height, begin >> height))
        begin += 1 << height
    return nodes


def range_hash(begin: int, end: int, node_hash: Callable[[Node], bytes]) -> bytes:
    """MTH(D[begin:end]) for a range a proof names, from the hashes of its perfect subtrees."""
    nodes = perfect_subtrees(begin, end)
    acc = node_hash(nodes[-1])
    for node in reversed(nodes[:-1]):
        acc = hash_children(node_hash(node), acc)
    return acc


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree from its 2**h leftmost-to-rightmost child hashes."""
    level = list(hashes)
    while len(level) > 1:
        level = [hash_children(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def _check_hashes(proof: Sequence[bytes], **hashes: bytes) -> None:
    for name, value in hashes.items():
        if len(value) != HASH_SIZE:
            raise ProofError(f"{name} has unexpected size {len(value)}, want {HASH_SIZE}")
    for i, value in enumerate(proof):
        if len(value) != HASH_SIZE:
            raise ProofError(f"proof hash {i} has unexpected size {len(value)}, want {HASH_SIZE}")


def _inclusion_proof_size(index: int, size: int) -> tuple[int, int]:
    """How many hashes PATH(index, D[0:size]) holds, as (inner, border): the inner ones below
    the point where the paths of `index` and of the last leaf meet, then one per left border
    subtree above it (transparency-dev/merkle's decompInclProof)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def _check_proof_size(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofSizeError(len(proof), want)


def _check_match(expected_root: bytes, calculated_root: bytes) -> None:
    if calculated_root != expected_root:
        raise RootMismatchError(expected_root, calculated_root)


def root_from_inclusion_proof(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root the proof leads to from the leaf.

    Requires 0 <= index < size. ProofError if the inputs cannot make a valid proof: the index
    outside the tree, a hash that is not 32 bytes, or the wrong number of hashes
    (ProofSizeError).
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes(proof, leaf_hash=leaf_hash)
    _check_proof_size(proof, sum(_inclusion_proof_size(index, size)))
    # With the number of hashes checked, the algorithm's own "sn is 0 too early / not 0 at the
    # end" checks cannot fail: they depend on the sizes and that number only.
    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = hash_children(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hash_children(r, p)
        fn >>= 1
        sn >>= 1
    return r


def verify_inclusion(index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise unless `proof` places `leaf_hash` at `index` in the tree of `size` leaves whose
    root is `root`: RootMismatchError if it leads elsewhere, ProofError (ProofSizeError) if
    it cannot be a valid proof."""
    _check_hashes((), root=root)
    _check_match(root, root_from_inclusion_proof(index, size, leaf_hash, proof))


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """RFC 9162 section 2.1.4.2, including its trivial cases (sizes equal, old tree empty).

    Requires 0 <= old_size <= new_size. Raises RootMismatchError if the proof leads to
    another old or new root, ProofError (ProofSizeError) if it cannot be a valid proof.
    """
    _check_hashes(proof, old_root=old_root, new_root=new_root)
    if not 0 <= old_size <= new_size:
        raise ProofError(f"no consistency proof from tree size {old_size} to {new_size}")
    if old_size == new_size:
        _check_proof_size(proof, 0)
        _check_match(new_root, old_root)
        return
    if old_size == 0:
        _check_proof_size(proof, 0)
        return
    path = list(proof)
    inner, border = _inclusion_proof_size(old_size - 1, new_size)
    shift = (old_size & -old_size).bit_length() - 1  # the old tree's last perfect subtree height
    if old_size == 1 << shift:  # a power of two: the old root is the first node
        path.insert(0, old_root)
        _check_proof_size(proof, inner - shift + border)
    else:
        _check_proof_size(proof, 1 + inner - shift + border)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = hash_children(c, fr)
            sr = hash_children(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, c)
        fn >>= 1
        sn >>= 1
    _check_match(old_root, fr)
    _check_match(new_root, sr)
