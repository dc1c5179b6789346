"""Tests for otel_audit.note (C2SP signed-note with Ed25519).

The key pair and note are the published example of Go's golang.org/x/mod/sumdb/note package
documentation (https://pkg.go.dev/golang.org/x/mod/sumdb/note), also used by its note_test.go.
Ed25519 signatures are deterministic, so signing the example text with the example key must
reproduce the published note byte for byte.
"""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from otel_audit.errors import FormatError, SignatureError
from otel_audit.note import (
    MAX_SIGNATURES,
    NoteSignature,
    SignedNote,
    SignerKey,
    VerifierKey,
    key_id,
)

SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
SIG_LINE = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
NOTE = TEXT + "\n" + SIG_LINE
KEY_ID = 0xC74F20A3


@pytest.fixture(scope="module")
def verifier() -> VerifierKey:
    return VerifierKey.parse(VKEY)


@pytest.fixture(scope="module")
def signer() -> SignerKey:
    return SignerKey.parse(SKEY)


@pytest.fixture(scope="module")
def other_signer() -> SignerKey:
    return SignerKey.generate("example.com/other")


# -- keys ---------------------------------------------------------------------------------


def test_parse_verifier_key(verifier: VerifierKey) -> None:
    assert verifier.name == "PeterNeumann"
    assert verifier.key_id == KEY_ID
    assert verifier.public_key == base64.b64decode(VKEY.split("+")[2])[1:]
    assert len(verifier.public_key) == 32
    assert key_id("PeterNeumann", verifier.public_key) == KEY_ID
    assert verifier.serialize() == VKEY


def test_parse_verifier_key_ignores_surrounding_whitespace(verifier: VerifierKey) -> None:
    # Keys are read from files that end in a newline.
    assert VerifierKey.parse(VKEY + "\n") == verifier


def test_parse_signer_key(signer: SignerKey) -> None:
    assert signer.name == "PeterNeumann"
    assert signer.key_id == KEY_ID
    assert signer.seed == base64.b64decode(SKEY.split("+", 4)[4])[1:]
    assert len(signer.seed) == 32
    assert signer.serialize() == SKEY


def test_signer_derives_published_verifier(signer: SignerKey, verifier: VerifierKey) -> None:
    assert signer.verifier().serialize() == VKEY
    assert signer.verifier() == verifier


def test_sign_reproduces_published_note(signer: SignerKey) -> None:
    note = SignedNote.sign(TEXT, signer)
    assert note.serialize() == NOTE


def test_parse_and_verify_published_note(verifier: VerifierKey) -> None:
    note = SignedNote.parse(NOTE)
    assert note.text == TEXT
    assert len(note.signatures) == 1
    (sig,) = note.signatures
    assert (sig.name, sig.key_id, len(sig.signature)) == ("PeterNeumann", KEY_ID, 64)
    assert sig.serialize() == SIG_LINE
    note.verify(verifier)  # raises on failure
    assert note.serialize() == NOTE


def test_sign_with_two_signers_lists_both_in_order(
    signer: SignerKey, other_signer: SignerKey, verifier: VerifierKey
) -> None:
    note = SignedNote.sign(TEXT, signer, other_signer)
    text = note.serialize()
    assert text.startswith(NOTE)
    assert text[len(NOTE) :].startswith(f"\u2014 {other_signer.name} ")
    assert text.count("\u2014 ") == 2
    parsed = SignedNote.parse(text)
    assert [s.name for s in parsed.signatures] == ["PeterNeumann", "example.com/other"]
    parsed.verify(verifier)
    parsed.verify(other_signer.verifier())


def _manglings(key: str) -> list[str]:
    """Go's TestNewVerifier: every byte of the key incremented, one at a time."""
    raw = key.encode()
    return [(raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]).decode() for i in range(len(raw))]


@pytest.mark.parametrize("mangled", _manglings(VKEY))
def test_verifier_key_rejects_every_single_byte_mangling(mangled: str) -> None:
    with pytest.raises(FormatError, match=r"^verifier key"):
        VerifierKey.parse(mangled)


def _substrings(key: str) -> list[str]:
    """Go's TestNewVerifier: every proper substring of the key."""
    return [
        key[i:j]
        for i in range(len(key) + 1)
        for j in range(i, len(key) + 1)
        if (i, j) != (0, len(key)) and key[i:j].strip() == key[i:j]
    ]


def test_verifier_key_rejects_every_proper_substring() -> None:
    substrings = _substrings(VKEY)
    assert len(substrings) > 2000
    for text in substrings:
        with pytest.raises(FormatError, match=r"^verifier key|^key name"):
            VerifierKey.parse(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # Go's TestNewVerifier: wrong-length key id, and unknown algorithm with adjusted id.
        (
            "PeterNeumann+cc74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"id 'cc74f20a3' must be 8 lowercase hex digits",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"not an Ed25519 key",
        ),
        ("PeterNeumann+c74f20a3", r"not of the form origin\+keyid\+base64"),
        ("", r"not of the form origin\+keyid\+base64"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", r"key name '' must be"),
        (
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            r"key name 'Peter Neumann' must be",
        ),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", r"not valid base64"),
        (
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
            r"not an Ed25519",
        ),
        ("PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", r"does not match"),
        ("PaulNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", r"does not match"),
    ],
)
def test_verifier_key_parse_errors(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        VerifierKey.parse(text)


@pytest.mark.parametrize("mangled", _manglings(SKEY))
def test_signer_key_rejects_every_single_byte_mangling(mangled: str) -> None:
    with pytest.raises(FormatError, match=r"^signer key|^key name"):
        SignerKey.parse(mangled)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (VKEY, r"not of the form PRIVATE\+KEY\+origin\+keyid\+base64"),
        ("PRIVATE+KEY+PeterNeumann+c74f20a3", r"not of the form PRIVATE"),
        (
            "PUBLIC+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            r"not of",
        ),
        (
            "PRIVATE+KEY+Peter Neumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            r"key name",
        ),
        ("PRIVATE+KEY+PeterNeumann+C74F20A3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", r"hex"),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
            r"base64",
        ),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AoEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            r"Ed25519",
        ),
        (
            "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
            r"match",
        ),
    ],
)
def test_signer_key_parse_errors(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        SignerKey.parse(text)


BAD_NAMES = ["", "a+b", "a b", "a\tb", "a\nb", " leading", "trailing ", "+", "a\u00a0b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_generate_rejects_bad_key_names(name: str) -> None:
    with pytest.raises(FormatError, match=r"must be non-empty with no '\+' and no spaces"):
        SignerKey.generate(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_from_seed_rejects_bad_key_names(name: str) -> None:
    with pytest.raises(FormatError, match=r"must be non-empty with no '\+' and no spaces"):
        SignerKey.from_seed(name, bytes(32))


@pytest.mark.parametrize("name", ["example.com/log", "a", "PeterNeumann", "log-\u00e9t\u00e9/2024"])
def test_generated_keys_round_trip(name: str) -> None:
    signer = SignerKey.generate(name)
    assert SignerKey.parse(signer.serialize()) == signer
    verifier = signer.verifier()
    assert verifier.name == name
    assert verifier.key_id == signer.key_id == key_id(name, verifier.public_key)
    assert VerifierKey.parse(verifier.serialize()) == verifier
    note = SignedNote.parse(SignedNote.sign("hello\n", signer).serialize())
    note.verify(VerifierKey.parse(verifier.serialize()))


def test_generated_keys_differ() -> None:
    assert SignerKey.generate("a").seed != SignerKey.generate("a").seed


def test_key_id_depends_on_name_and_key(verifier: VerifierKey) -> None:
    assert key_id("PeterNeumann", verifier.public_key) == KEY_ID
    assert key_id("PeterNeumanm", verifier.public_key) != KEY_ID
    assert key_id("PeterNeumann", bytes(32)) != KEY_ID


# -- verification failures ----------------------------------------------------------------


def _alter_signature(note: str) -> str:
    prefix, blob = note.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[10] ^= 0x01  # inside the Ed25519 signature, after the 4-byte key id
    return prefix + " " + base64.b64encode(bytes(raw)).decode() + "\n"


def test_altered_text_fails(verifier: VerifierKey) -> None:
    altered = NOTE.replace("answer", "Answer")
    assert altered != NOTE
    note = SignedNote.parse(altered)
    with pytest.raises(SignatureError, match=r"invalid signature by PeterNeumann\+c74f20a3"):
        note.verify(verifier)


def test_altered_signature_fails(verifier: VerifierKey) -> None:
    note = SignedNote.parse(_alter_signature(NOTE))
    assert note.signatures[0].key_id == KEY_ID
    with pytest.raises(SignatureError, match=r"invalid signature by PeterNeumann\+c74f20a3"):
        note.verify(verifier)


def test_truncated_signature_fails(verifier: VerifierKey) -> None:
    sig = SignedNote.parse(NOTE).signatures[0]
    note = SignedNote(TEXT, (replace(sig, signature=sig.signature[:10]),))
    with pytest.raises(SignatureError, match=r"invalid signature by PeterNeumann"):
        note.verify(verifier)


def test_wrong_key_with_same_name_fails() -> None:
    impostor = SignerKey.generate("PeterNeumann").verifier()
    assert impostor.key_id != KEY_ID  # a 2**-32 chance of a collision
    note = SignedNote.parse(NOTE)
    with pytest.raises(
        SignatureError,
        match=r"no signature by PeterNeumann\+[0-9a-f]{8} \(has PeterNeumann\+c74f20a3\)",
    ):
        note.verify(impostor)


def test_wrong_key_claiming_published_key_id_fails() -> None:
    # A key that claims the published name and id but holds other key material.
    impostor = VerifierKey("PeterNeumann", KEY_ID, SignerKey.generate("x").verifier().public_key)
    with pytest.raises(SignatureError, match=r"invalid signature by PeterNeumann\+c74f20a3"):
        SignedNote.parse(NOTE).verify(impostor)


def test_note_signed_only_by_unknown_key_fails(other_signer: SignerKey, verifier: VerifierKey) -> None:
    note = SignedNote.parse(SignedNote.sign(TEXT, other_signer).serialize())
    with pytest.raises(
        SignatureError, match=r"no signature by PeterNeumann\+c74f20a3 \(has example\.com/other\+"
    ):
        note.verify(verifier)


@pytest.mark.parametrize("unknown_first", [False, True])
def test_extra_signature_by_unknown_key_is_ignored(
    other_signer: SignerKey, verifier: VerifierKey, unknown_first: bool
) -> None:
    extra = SignedNote.sign(TEXT, other_signer).signatures[0].serialize()
    lines = [extra, SIG_LINE] if unknown_first else [SIG_LINE, extra]
    note = SignedNote.parse(TEXT + "\n" + "".join(lines))
    assert len(note.signatures) == 2
    note.verify(verifier)
    with pytest.raises(SignatureError, match=r"no signature by"):
        note.verify(SignerKey.generate("nobody").verifier())


def test_extra_signature_by_unknown_key_with_garbage_signature_is_ignored(
    verifier: VerifierKey,
) -> None:
    garbage = "\u2014 witness.example " + base64.b64encode(b"\x01\x02\x03\x04" + b"junk").decode() + "\n"
    SignedNote.parse(NOTE + garbage).verify(verifier)


def test_any_bad_signature_by_the_key_fails(verifier: VerifierKey) -> None:
    # Two signature lines by the same key: one good one does not excuse a bad one.
    bad_line = _alter_signature(NOTE)[len(TEXT) + 1 :]
    note = SignedNote.parse(NOTE + bad_line)
    with pytest.raises(SignatureError, match=r"invalid signature"):
        note.verify(verifier)


# -- malformed notes ----------------------------------------------------------------------


def _sig_lines(count: int) -> str:
    return "".join(
        f"\u2014 w{i} " + base64.b64encode(i.to_bytes(4, "big") + b"sig").decode() + "\n"
        for i in range(count)
    )


@pytest.mark.parametrize(
    ("note", "match"),
    [
        pytest.param(TEXT + SIG_LINE, r"no blank line before the signatures", id="no-blank-line"),
        pytest.param(NOTE[:-1], r"no blank line before the signatures", id="no-trailing-newline"),
        pytest.param(TEXT, r"no blank line before the signatures", id="no-signature-block"),
        pytest.param("", r"no blank line", id="empty"),
        pytest.param(
            TEXT + "\n" + SIG_LINE.replace("\u2014", "-"),
            r"lacks the em dash",
            id="hyphen-not-em-dash",
        ),
        pytest.param(
            TEXT + "\n" + SIG_LINE.replace("\u2014 ", "\u2014"),
            r"lacks the em dash",
            id="no-space-after-dash",
        ),
        pytest.param(TEXT + "\n" + " " + SIG_LINE, r"lacks the em dash", id="leading-space"),
        pytest.param(
            TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG!!!\n",
            r"not valid base64",
            id="bad-base64",
        ),
        pytest.param(TEXT + "\n" + SIG_LINE[:-2] + "\n", r"not valid base64", id="base64-missing-padding"),
        pytest.param(TEXT + "\n", r"no signatures", id="empty-signature-block"),
        # The last blank line ends the text, so nothing follows it as a signature.
        pytest.param(NOTE + "\n", r"no signatures", id="blank-line-after-signatures"),
        pytest.param(
            TEXT + "\n" + _sig_lines(MAX_SIGNATURES + 1),
            r"more than 100 signatures",
            id="101-signatures",
        ),
        pytest.param(
            TEXT + "\n\u2014 PeterNeumann AAAAAA==\n",
            r"signature too short",
            id="signature-too-short",
        ),
        pytest.param(
            TEXT + "\n\u2014 PeterNeumann\n",
            r"malformed note: signature line",
            id="no-signature-field",
        ),
        pytest.param(
            TEXT + "\n" + SIG_LINE.replace("PeterNeumann ", "Peter Neumann "),
            r"malformed note: signature line",
            id="space-in-name",
        ),
        pytest.param(
            TEXT + "\n" + SIG_LINE.replace(" x08", "  x08"),
            r"malformed note: signature line",
            id="two-spaces",
        ),
        pytest.param(
            TEXT + "\n" + SIG_LINE.replace("PeterNeumann", "Peter+Neumann"),
            r"key name",
            id="plus-in-name",
        ),
        pytest.param(TEXT + "\n\u2014  AAAAAAA=\n", r"key name '' must be", id="empty-name"),
        # C2SP signed-note: no ASCII control characters other than newline, anywhere.
        pytest.param(NOTE.replace("\n", "\r\n"), r"ASCII control character", id="crlf"),
        pytest.param("a\x00b\n\n" + SIG_LINE, r"ASCII control character", id="nul-in-text"),
        pytest.param("a\tb\n\n" + SIG_LINE, r"ASCII control character", id="tab-in-text"),
        pytest.param("a\x1b[0mb\n\n" + SIG_LINE, r"ASCII control character", id="escape-in-text"),
        pytest.param(NOTE[:-1] + "\x0c\n", r"ASCII control character", id="form-feed-in-signature"),
        pytest.param(
            NOTE[:-1] + "\x0b" + SIG_LINE,
            r"ASCII control character",
            id="vertical-tab-between-signatures",
        ),
        pytest.param(
            NOTE[:-1] + "\x1e" + SIG_LINE,
            r"ASCII control character",
            id="record-separator-between-signatures",
        ),
        # Only newline separates signature lines (str.splitlines() would also split at these).
        pytest.param(NOTE[:-1] + "\u2028" + SIG_LINE, r"malformed note: signature line", id="line-separator"),
        pytest.param(
            NOTE[:-1] + "\u2029" + SIG_LINE,
            r"malformed note: signature line",
            id="paragraph-separator",
        ),
        pytest.param(NOTE[:-1] + "\x85" + SIG_LINE, r"malformed note: signature line", id="next-line"),
    ],
)
def test_parse_rejects_malformed_notes(note: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        SignedNote.parse(note)


def test_parse_accepts_exactly_100_signatures() -> None:
    note = SignedNote.parse(TEXT + "\n" + _sig_lines(MAX_SIGNATURES))
    assert len(note.signatures) == MAX_SIGNATURES == 100
    assert [s.key_id for s in note.signatures] == list(range(100))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("no newline", r"must end in a newline"),
        ("", r"must end in a newline"),
    ],
)
def test_sign_rejects_bad_text(signer: SignerKey, text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        SignedNote.sign(text, signer)


@pytest.mark.parametrize("text", ["a\n\nb\n", "a\n\n", "If you think\n\ncryptography\n"])
def test_text_with_blank_lines_signs_and_round_trips_as_in_go(signer: SignerKey, text: str) -> None:
    """C2SP signed-note and Go's note.Open allow blank lines in the text: the last one ends it."""
    note = SignedNote.parse(SignedNote.sign(text, signer).serialize())
    assert note.text == text
    note.verify(signer.verifier())


def test_signature_serialization_round_trip() -> None:
    sig = NoteSignature("example.com/log", 0x0102A0FF, bytes(range(64)))
    line = sig.serialize()
    assert line.startswith("\u2014 example.com/log AQKg/w")
    assert line.endswith("\n")
    assert SignedNote.parse("t\n\n" + line).signatures == (sig,)
