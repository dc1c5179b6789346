"""C2SP tlog-proof files: the spec's own example, the error cases transparency-dev/merkle's
proof/tlog_proof_test.go probes, and a proof over the RFC 6962 test leaves signed by us."""

from __future__ import annotations

import base64

import pytest

from otel_audit.checkpoint import Checkpoint
from otel_audit.errors import FormatError, ProofError, SignatureError
from otel_audit.note import SignedNote, SignerKey
from otel_audit.tlog_proof import TlogProof

from .test_merkle import ROOTS
from .test_proof import INCLUSION_VECTORS, LEAF_HASHES

# The example of https://c2sp.org/tlog-proof, verbatim (its signatures are elided with [...],
# so only the proof part parses; the checkpoint is carried as opaque text).
SPEC_EXAMPLE = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u2014 example.com/fancylog hI2DJw[...]1roloI=
\u2014 witness1.example mJirIklj[...]qY9v2B/5bg==
\u2014 witness2.example TnKKVHLX[...]xwYwrSjgow==
\u2014 witness3.example S4X82uH5[...]3oEcROGLFQ==
"""


def test_spec_example_parses_and_round_trips() -> None:
    proof = TlogProof.parse(SPEC_EXAMPLE)
    assert proof.index == 73894
    assert len(proof.hashes) == 5
    assert proof.hashes[0] == base64.b64decode("gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=")
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert proof.checkpoint_note.startswith("example.com/fancylog\n109482\n")
    assert proof.serialize() == SPEC_EXAMPLE


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("wrong-header\nindex 0\n\ncheckpoint\n", "first line"),
        ("c2sp.org/tlog-proof@v1\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n", "extra"),
        ("c2sp.org/tlog-proof@v1\n\n\ncheckpoint\n", "index"),
        ("c2sp.org/tlog-proof@v1\nindex notanumber\n\ncheckpoint\n", "decimal"),
        ("c2sp.org/tlog-proof@v1\nindex -5\n\ncheckpoint\n", "decimal"),
        ("c2sp.org/tlog-proof@v1\nindex 07\n\ncheckpoint\n", "leading zeros"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n!!notbase64!!\n\ncheckpoint\n", "hash"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n" + base64.b64encode(bytes(64)).decode() + "\n\ncp\n", "length"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n", "empty line"),
    ],
)
def test_malformed_proofs_are_rejected(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        TlogProof.parse(text)


KEY = SignerKey.from_seed("example.com/rfc6962-leaves", bytes(32))


def _signed_checkpoint(size: int) -> str:
    checkpoint = Checkpoint(KEY.name, size, ROOTS[size], bytes(32), 1, 0, bytes(32))
    return SignedNote.sign(checkpoint.serialize(), KEY).serialize()


@pytest.mark.parametrize(("leaf", "size", "hashes"), INCLUSION_VECTORS)
def test_proofs_over_the_rfc6962_leaves_verify(leaf: int, size: int, hashes: list[bytes]) -> None:
    proof = TlogProof(leaf - 1, tuple(hashes), _signed_checkpoint(size))
    text = proof.serialize()
    assert text.startswith(f"c2sp.org/tlog-proof@v1\nindex {leaf - 1}\n")
    parsed = TlogProof.parse(text)
    assert parsed == proof
    assert parsed.verify(LEAF_HASHES[leaf - 1], KEY.verifier()).tree_size == size


def test_wrong_leaf_index_key_or_checkpoint_is_caught() -> None:
    leaf, size, hashes = INCLUSION_VECTORS[1]
    good = TlogProof(leaf - 1, tuple(hashes), _signed_checkpoint(size))
    with pytest.raises(ProofError, match="does not lead"):
        good.verify(LEAF_HASHES[0], KEY.verifier())
    with pytest.raises(ProofError):
        TlogProof(leaf, tuple(hashes), good.checkpoint_note).verify(LEAF_HASHES[leaf - 1], KEY.verifier())
    other = SignerKey.from_seed(KEY.name, b"\x01" * 32)
    with pytest.raises(SignatureError):
        good.verify(LEAF_HASHES[leaf - 1], other.verifier())
    forged = good.checkpoint_note.replace("\n8\n", "\n7\n", 1)
    with pytest.raises(SignatureError):
        TlogProof(leaf - 1, tuple(hashes), forged).verify(LEAF_HASHES[leaf - 1], KEY.verifier())
