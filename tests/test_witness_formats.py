"""Pure witness formats: cosignature/v1, the tlog-policy parser and quorum, and the
tlog-witness decision for every answer code."""

from __future__ import annotations

import base64
import hashlib

import pytest

from otel_audit.checkpoint import Checkpoint
from otel_audit.cosignature import (
    CosignerKey,
    CosignerVerifierKey,
    add_cosignatures,
    cosigned_by,
    signed_message,
)
from otel_audit.errors import FormatError, SignatureError, WitnessRefusal
from otel_audit.merkle import hash_leaf
from otel_audit.merkle import root_from_leaf_hashes as root_of
from otel_audit.note import NoteSignature, SignedNote, SignerKey, VerifierKey
from otel_audit.proof import consistency_ranges
from otel_audit.tlog_witness import (
    AddCheckpoint,
    WitnessedTree,
    parse_cosignature_lines,
    parse_size_body,
    witness_check,
)
from otel_audit.witness_policy import Policy

LEAVES = [hash_leaf(b"entry %d" % i) for i in range(20)]


def _note(key: SignerKey, size: int, leaves: list[bytes] = LEAVES) -> str:
    body = Checkpoint(key.name, size, root_of(leaves[:size]), b"\0" * 32, 1, 0, b"\0" * 32).serialize()
    return SignedNote.sign(body, key).serialize()


def _proof(old: int, new: int, leaves: list[bytes] = LEAVES) -> tuple[bytes, ...]:
    return tuple(root_of(leaves[a:b]) for a, b in consistency_ranges(old, new))


def test_cosignature_signed_message_is_the_spec_example() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert signed_message(text, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_cosigner_key_id_uses_signature_type_4() -> None:
    key = CosignerKey.generate("witness.example/w1")
    vkey = key.verifier()
    digest = hashlib.sha256(b"witness.example/w1\n\x04" + vkey.public_key).digest()
    assert vkey.key_id == int.from_bytes(digest[:4], "big")
    assert base64.b64decode(vkey.serialize().split("+", 2)[2])[0] == 0x04
    assert CosignerVerifierKey.parse(vkey.serialize()) == vkey
    assert CosignerKey.parse(key.serialize()) == key
    with pytest.raises(FormatError, match="want 0x01"):  # a witness key is no log key
        VerifierKey.parse(vkey.serialize())
    with pytest.raises(FormatError, match="want 0x04"):
        CosignerVerifierKey.parse(SignerKey.generate("log").verifier().serialize())


def test_cosignature_round_trip_and_tamper() -> None:
    log = SignerKey.generate("log.example")
    witness = CosignerKey.generate("w1.example")
    note = SignedNote.parse(_note(log, 5))
    line = witness.cosign(note.text, 1700000000)
    assert len(line.signature) == 72 and line.signature[:8] == (1700000000).to_bytes(8, "big")
    cosigned = add_cosignatures(note, (line,))
    again = SignedNote.parse(cosigned.serialize())
    assert cosigned_by(again, (witness.verifier(),)) == {"w1.example": 1700000000}
    assert again.verify_signers((log.verifier(),)) == (log.verifier(),)  # the log's signature stays
    other = CosignerKey.generate("w2.example").verifier()
    assert cosigned_by(again, (other,)) == {}
    forged = NoteSignature(line.name, line.key_id, (1700000001).to_bytes(8, "big") + line.signature[8:])
    with pytest.raises(SignatureError, match=r"invalid cosignature by w1\.example"):
        cosigned_by(SignedNote(note.text, (*note.signatures, forged)), (witness.verifier(),))


POLICY_KEYS = [CosignerKey.generate(f"w{i}.example") for i in range(4)]
LOG = SignerKey.generate("log.example")


def _policy(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_policy_parses_and_evaluates_nested_quorum() -> None:
    w = [k.verifier().serialize() for k in POLICY_KEYS]
    policy = Policy.parse(
        _policy(
            "# a comment",
            f"log {LOG.verifier().serialize()} https://log.example",
            "",
            f"witness A {w[0]} http://127.0.0.1:1",
            f"\twitness B  {w[1]}",
            f"witness C {w[2]}",
            f"witness D {w[3]}",
            "group ABC 2 A B C",
            "group top all ABC D",
            "quorum top",
        )
    )
    assert policy.logs[0].url == "https://log.example" and policy.witnesses[0].url == "http://127.0.0.1:1"
    assert policy.groups[0].threshold == 2 and policy.groups[1].threshold == 2
    assert policy.quorum_met({"A", "B", "D"})
    assert not policy.quorum_met({"A", "B"})
    assert not policy.quorum_met({"A", "D"})
    assert Policy.parse("quorum none\n").quorum_met(())
    any_policy = Policy.parse(
        _policy(f"witness A {w[0]}", f"witness B {w[1]}", "group g any A B", "quorum g")
    )
    assert any_policy.quorum_met({"B"}) and not any_policy.quorum_met(set())


W0, W1 = (k.verifier().serialize() for k in POLICY_KEYS[:2])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "no quorum line"),
        ("quorum A\n", "line 1: quorum 'A' is not a witness or group defined above"),
        ("quorum none\nquorum none\n", "line 2: a policy has exactly one quorum line"),
        (f"witness A {W0}\nwitness A {W1}\nquorum A\n", "line 2: name 'A' is already defined"),
        (f"witness A {W0}\nwitness B {W0}\nquorum A\n", "line 2: duplicate witness"),
        (f"witness none {W0}\nquorum none\n", "line 1: 'none' is predefined"),
        (f"witness A {W0}\ngroup g 2 A\nquorum g\n", "line 2: group 'g' threshold 2 exceeds its 1 members"),
        (f"witness A {W0}\ngroup g 0 A\nquorum g\n", "line 2: group threshold '0'"),
        (f"witness A {W0}\ngroup g 01 A\nquorum g\n", "line 2: group threshold '01'"),
        (f"witness A {W0}\ngroup g any A A\nquorum g\n", "line 2: group 'g' lists a member twice"),
        (f"witness A {W0}\ngroup g any B\nquorum g\n", "line 2: group member 'B' is not"),
        (f"witness A {W0}\ngroup g any none\nquorum g\n", "line 2: 'none' cannot be a group member"),
        (f"witness A {W0}\ngroup g any\nquorum g\n", "line 2: a group needs"),
        ("witness A\nquorum none\n", "line 1: want 2 to 3 fields"),
        (f"witness A {LOG.verifier().serialize()}\nquorum none\n", "line 1: witness verifier key is not"),
        (f"log {W0}\nquorum none\n", "line 1: verifier key is not an Ed25519 key"),
        ("logs x\nquorum none\n", "line 1: unknown keyword 'logs'"),
        ("quorum none\r\n", "line 1: control character"),
        ("quorum\u00a0none\n", "line 1: unknown keyword"),  # only space and tab separate fields
    ],
)
def test_policy_parser_refuses(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        Policy.parse(text)


def test_add_checkpoint_body_round_trip_and_limits() -> None:
    request = AddCheckpoint(3, _proof(3, 7), _note(LOG, 7))
    body = request.serialize()
    assert body.startswith(b"old 3\n") and b"\n\nlog.example\n7\n" in body
    assert AddCheckpoint.parse(body) == request
    for bad, match in [
        (b"old 03\n\n" + _note(LOG, 7).encode(), "is not 'old <size>'"),
        (b"old 1\n", "no empty line"),
        (b"old 1\n" + b"AAAA\n" + b"\n" + _note(LOG, 7).encode(), "32-byte hash"),
        (b"old 1\n" + (base64.b64encode(b"\0" * 32) + b"\n") * 64 + b"\n" + _note(LOG, 7).encode(), "63"),
    ]:
        with pytest.raises(FormatError, match=match):
            AddCheckpoint.parse(bad)
    assert parse_size_body(b"12\n") == 12
    with pytest.raises(FormatError):
        parse_size_body(b"012\n")


TRUSTED = {"log.example": [LOG.verifier()]}


def _refusal(request: AddCheckpoint, latest: dict[str, WitnessedTree]) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as raised:
        witness_check(request, TRUSTED, latest)
    return raised.value


def test_witness_check_every_answer() -> None:
    at5 = {"log.example": WitnessedTree(5, root_of(LEAVES[:5]))}
    # 200: first contact, then an extension by a valid proof, then the same tree again
    first = witness_check(AddCheckpoint(0, (), _note(LOG, 5)), TRUSTED, {})
    assert first == ("log.example", at5["log.example"])
    assert witness_check(AddCheckpoint(5, _proof(5, 9), _note(LOG, 9)), TRUSTED, at5)[1].size == 9
    assert witness_check(AddCheckpoint(5, (), _note(LOG, 5)), TRUSTED, at5)[1].size == 5
    # 404: a log it does not know
    stranger = SignerKey.generate("other.example")
    assert _refusal(AddCheckpoint(0, (), _note(stranger, 5)), {}).status == 404
    # 403: the origin it knows, signed by another key
    impostor = SignerKey.generate("log.example")
    assert _refusal(AddCheckpoint(0, (), _note(impostor, 5)), {}).status == 403
    # 400: old size above the checkpoint's; a malformed checkpoint
    assert _refusal(AddCheckpoint(9, (), _note(LOG, 5)), at5).status == 400
    assert _refusal(AddCheckpoint(0, (), "not a note\n"), {}).status == 400
    # 409: not the size it last cosigned (body: that size); the same size with another root
    conflict = _refusal(AddCheckpoint(0, (), _note(LOG, 9)), at5)
    assert (conflict.status, conflict.size) == (409, 5)
    forked = [*LEAVES[:3], hash_leaf(b"rewritten"), *LEAVES[4:]]
    same_size = _refusal(AddCheckpoint(5, (), _note(LOG, 5, forked)), at5)
    assert (same_size.status, same_size.size) == (409, 5)
    # 422: a proof that does not lead from the cosigned tree (a fork), or junk after old 0
    assert _refusal(AddCheckpoint(5, _proof(5, 9, forked), _note(LOG, 9, forked)), at5).status == 422
    assert _refusal(AddCheckpoint(5, _proof(4, 9), _note(LOG, 9)), at5).status == 422
    assert _refusal(AddCheckpoint(0, _proof(5, 9), _note(LOG, 9)), {}).status == 422


def test_cosignature_answer_lines_parse_against_the_note() -> None:
    note = SignedNote.parse(_note(LOG, 5))
    witness = CosignerKey.generate("w1.example")
    body = witness.cosign(note.text, 1).serialize().encode()
    lines = parse_cosignature_lines(note, body)
    assert witness.cosign(note.text, 1) in lines
    with pytest.raises(FormatError):
        parse_cosignature_lines(note, b"no em dash\n")
