"""Tests for otel_audit.checkpoint (C2SP tlog-checkpoint bodies with otel-audit extensions)."""

from __future__ import annotations

import base64

import pytest

from otel_audit.checkpoint import (
    CHAIN_EXTENSION,
    SEALED_AT_EXTENSION,
    Checkpoint,
    open_checkpoint,
    read_unverified,
)
from otel_audit.errors import FormatError, SignatureError
from otel_audit.note import SignedNote, SignerKey

ROOT = bytes(range(32))
ROOT_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
CHAIN = b"\xff" * 32
CHAIN_B64 = "//////////////////////////////////////////8="
SEALED_AT = 1_700_000_000_123_456_789
COLS = b"\x11" * 32
COLS_B64 = "ERERERERERERERERERERERERERERERERERERERERERE="
COLS_LINE = f"otel-audit columns 3 {COLS_B64}"

KNOWN = Checkpoint("example.com/audit/prod", 12345, ROOT, CHAIN, SEALED_AT, 12000, COLS)
KNOWN_TEXT = (
    "example.com/audit/prod\n"
    "12345\n"
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    "otel-audit chain //////////////////////////////////////////8=\n"
    "otel-audit sealed-at 1700000000123456789\n"
    "otel-audit columns 12000 ERERERERERERERERERERERERERERERERERERERERERE=\n"
)


def _text(
    origin: str = "example.com/log",
    size: str = "7",
    root: str = ROOT_B64,
    extensions: tuple[str, ...] = (
        f"otel-audit chain {CHAIN_B64}",
        "otel-audit sealed-at 42",
        COLS_LINE,
    ),
) -> str:
    return "\n".join([origin, size, root, *extensions]) + "\n"


def test_extension_prefixes() -> None:
    assert CHAIN_EXTENSION == "otel-audit chain "
    assert SEALED_AT_EXTENSION == "otel-audit sealed-at "


def test_serialize_known_value() -> None:
    assert base64.b64encode(ROOT).decode() == ROOT_B64
    assert base64.b64encode(CHAIN).decode() == CHAIN_B64
    assert KNOWN.serialize() == KNOWN_TEXT


def test_parse_known_value() -> None:
    assert Checkpoint.parse(KNOWN_TEXT) == KNOWN


@pytest.mark.parametrize(
    "checkpoint",
    [
        KNOWN,
        Checkpoint("o", 0, bytes(32), bytes(32), 0, 0, bytes(32)),
        Checkpoint("example.com/log", 1, b"\x01" * 32, b"\x02" * 32, 1, 0, COLS),
        Checkpoint("example.com/log", 2**63 - 1, ROOT, CHAIN, 2**64 - 1, 2**63 - 1, COLS),
        Checkpoint("log with spaces \u00e9", 99, ROOT, CHAIN, 5, 98, COLS),
        Checkpoint("example.com/log", 3, ROOT, CHAIN, 5, 1, COLS, ("witness.example/ext 1", "other")),
    ],
)
def test_round_trip(checkpoint: Checkpoint) -> None:
    text = checkpoint.serialize()
    assert text.endswith("\n") and "\n\n" not in text
    assert Checkpoint.parse(text) == checkpoint
    assert Checkpoint.parse(text).serialize() == text


def test_parse_accepts_extensions_in_any_order() -> None:
    text = _text(extensions=("otel-audit sealed-at 42", "x", COLS_LINE, f"otel-audit chain {CHAIN_B64}"))
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.chain_head, checkpoint.sealed_at_ns) == (CHAIN, 42)
    assert checkpoint.other_extensions == ("x",)


def test_unknown_extension_lines_are_preserved_in_order() -> None:
    others = ("example.org/witness 17", "otel-audit future-thing yes", "zzz")
    text = _text(
        extensions=(
            others[0],
            f"otel-audit chain {CHAIN_B64}",
            others[1],
            "otel-audit sealed-at 42",
            others[2],
            COLS_LINE,
        )
    )
    checkpoint = Checkpoint.parse(text)
    assert checkpoint.other_extensions == others
    assert (checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash) == (
        "example.com/log",
        7,
        ROOT,
    )
    # Serialization puts the otel-audit lines first and the others after them, unchanged.
    assert checkpoint.serialize().endswith("\n".join(others) + "\n")
    assert Checkpoint.parse(checkpoint.serialize()) == checkpoint


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param(KNOWN_TEXT[:-1], r"must end in a newline", id="no-trailing-newline"),
        pytest.param("", r"must end in a newline", id="empty"),
        pytest.param("example.com/log\n7\n", r"needs origin, tree size and root hash", id="two-lines"),
        pytest.param("example.com/log\n", r"needs origin, tree size and root hash", id="one-line"),
        pytest.param("\n", r"needs origin, tree size and root hash", id="only-newline"),
        pytest.param(_text(origin=""), r"origin line is empty", id="empty-origin"),
        pytest.param(_text(size="01"), r"tree size '01' is not a decimal number", id="leading-zero"),
        pytest.param(_text(size="00"), r"tree size '00' is not a decimal", id="double-zero"),
        pytest.param(_text(size=""), r"tree size '' is not a decimal", id="empty-size"),
        pytest.param(_text(size="-1"), r"tree size '-1' is not a decimal", id="negative-size"),
        pytest.param(_text(size="+7"), r"tree size '\+7' is not a decimal", id="plus-size"),
        pytest.param(_text(size="0x10"), r"tree size '0x10' is not a decimal", id="hex-size"),
        pytest.param(_text(size="1e3"), r"tree size '1e3' is not a decimal", id="exponent-size"),
        pytest.param(_text(size=" 7"), r"tree size ' 7' is not a decimal", id="space-size"),
        pytest.param(_text(size="1_000"), r"tree size '1_000' is not a decimal", id="underscore-size"),
        pytest.param(_text(size="\u0667"), r"tree size '\u0667' is not a decimal", id="arabic-digit"),
        pytest.param(_text(root=base64.b64encode(bytes(31)).decode()), r"must be 32 bytes", id="root-31"),
        pytest.param(_text(root=base64.b64encode(bytes(33)).decode()), r"must be 32 bytes", id="root-33"),
        pytest.param(_text(root=""), r"must be 32 bytes", id="root-empty"),
        pytest.param(_text(root="not base64!"), r"root hash is not valid base64", id="root-bad-base64"),
        pytest.param(_text(root=ROOT_B64[:-1]), r"root hash is not valid base64", id="root-no-padding"),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "", "otel-audit sealed-at 42", COLS_LINE)),
            r"extension lines must not be empty",
            id="empty-extension",
        ),
        pytest.param(_text() + "\n", r"extension lines must not be empty", id="trailing-blank-line"),
        pytest.param(
            _text(extensions=()), r"lacks the otel-audit chain, sealed-at and columns", id="no-extensions"
        ),
        pytest.param(
            _text(extensions=("otel-audit sealed-at 42",)),
            r"lacks the otel-audit chain",
            id="no-chain",
        ),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}",)),
            r"lacks the otel-audit chain",
            id="no-sealed-at",
        ),
        pytest.param(
            _text(
                extensions=(
                    "otel-audit chain " + base64.b64encode(bytes(31)).decode(),
                    "otel-audit sealed-at 1",
                )
            ),
            r"lacks the otel-audit chain",
            id="chain-31-bytes",
        ),
        pytest.param(
            _text(extensions=("otel-audit chain !!", "otel-audit sealed-at 1")),
            r"chain head is not valid base64",
            id="chain-bad-base64",
        ),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at ")),
            r"sealed-at '' is not a number",
            id="sealed-at-empty",
        ),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at -5")),
            r"sealed-at '-5' is not a number",
            id="sealed-at-negative",
        ),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at 1.5")),
            r"sealed-at '1.5' is not a number",
            id="sealed-at-fraction",
        ),
        # str.isdigit() is true for these, but int() rejects the first and reads the second.
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at \u00b2")),
            r"sealed-at '\u00b2' is not a number",
            id="sealed-at-superscript-two",
        ),
        pytest.param(
            _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at \u0661\u0662")),
            r"sealed-at '\u0661\u0662' is not a number",
            id="sealed-at-arabic-indic-digits",
        ),
    ],
)
def test_parse_rejects(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match):
        Checkpoint.parse(text)


def test_signed_checkpoint_opens() -> None:
    signer = SignerKey.generate("example.com/audit/prod")
    note_text = SignedNote.sign(KNOWN.serialize(), signer).serialize()
    assert note_text.startswith(KNOWN_TEXT + "\n\u2014 example.com/audit/prod ")
    opened = open_checkpoint(note_text, signer.verifier())
    assert opened.checkpoint == KNOWN
    assert opened.text == note_text and opened.note == SignedNote.parse(note_text)
    assert opened.verified_by == (signer.verifier(),)
    unverified = read_unverified(note_text)
    assert (unverified.checkpoint, unverified.verified_by) == (KNOWN, ())


def test_signed_checkpoint_names_every_trusted_key_that_signed_it() -> None:
    """Keys of other logs are passed over; a cosigner the caller trusts is listed."""
    signer = SignerKey.generate("example.com/audit/prod")
    witness = SignerKey.generate("witness.example")
    stranger = SignerKey.generate("example.com/other")
    note_text = SignedNote.sign(KNOWN.serialize(), signer, witness).serialize()
    opened = open_checkpoint(note_text, stranger.verifier(), signer.verifier(), witness.verifier())
    assert opened.verified_by == (signer.verifier(), witness.verifier())
    with pytest.raises(SignatureError, match=r"checkpoint is of log 'example\.com/audit/prod', not 'witness"):
        open_checkpoint(note_text, witness.verifier())  # a cosignature alone does not open it


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        (
            "other key, same name",
            SignatureError,
            r"no signature by example\.com/audit/prod\+[0-9a-f]{8} \(has",
        ),
        ("key of another log", SignatureError, r"checkpoint is of log 'example\.com/audit/prod', not 'other"),
        (
            "no key",
            SignatureError,
            r"no signature by a trusted key \(none given\) \(has example\.com/audit/prod",
        ),
        ("body edited", SignatureError, r"invalid signature by example\.com/audit/prod\+"),
        ("body malformed, signed", FormatError, r"lacks the otel-audit chain"),
        ("not a note", FormatError, r"no blank line before the signatures"),
    ],
)
def test_open_checkpoint_refuses(case: str, error: type[Exception], match: str) -> None:
    signer = SignerKey.generate("example.com/audit/prod")
    trusted = [signer.verifier()]
    note_text = SignedNote.sign(KNOWN.serialize(), signer).serialize()
    if case == "other key, same name":
        trusted = [SignerKey.generate(signer.name).verifier()]
    elif case == "key of another log":
        other = SignerKey.generate("other.example")
        note_text = SignedNote.sign(KNOWN.serialize(), other).serialize()
        trusted = [other.verifier()]
    elif case == "no key":
        trusted = []
    elif case == "body edited":
        note_text = note_text.replace("\n12345\n", "\n12346\n", 1)
    elif case == "body malformed, signed":
        note_text = SignedNote.sign(KNOWN_TEXT.split("otel-audit")[0], signer).serialize()
    elif case == "not a note":
        note_text = KNOWN_TEXT
    with pytest.raises(error, match=match):
        open_checkpoint(note_text, *trusted)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n12345\n", "\n12346\n"),  # tree size
        ("AAECAw", "AAECAA"),  # root hash
        ("sealed-at 1700000000123456789", "sealed-at 1700000000123456788"),  # an extension line
    ],
)
def test_signed_checkpoint_detects_edits(old: str, new: str) -> None:
    signer = SignerKey.generate("example.com/audit/prod")
    note_text = SignedNote.sign(KNOWN.serialize(), signer).serialize()
    assert old in note_text
    tampered = note_text.replace(old, new, 1)
    read_unverified(tampered)  # still a well-formed checkpoint
    with pytest.raises(SignatureError, match=r"invalid signature by example\.com/audit/prod\+"):
        open_checkpoint(tampered, signer.verifier())


@pytest.mark.parametrize(
    ("columns_line", "match"),
    [
        ("otel-audit columns 3", r"is not '<from> <base64>'"),
        (f"otel-audit columns -1 {COLS_B64}", r"is not '<from> <base64>'"),
        (f"otel-audit columns 3 {COLS_B64} extra", r"is not '<from> <base64>'"),
        ("otel-audit columns 3 !!", r"columns hash is not valid base64"),
        (f"otel-audit columns 3 {base64.b64encode(bytes(31)).decode()}", r"must be 32 bytes"),
        (f"otel-audit columns 8 {COLS_B64}", r"starts after its tree size"),
    ],
)
def test_parse_rejects_bad_columns_extension(columns_line: str, match: str) -> None:
    text = _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at 42", columns_line))
    with pytest.raises(FormatError, match=match):
        Checkpoint.parse(text)


def test_missing_columns_extension_is_rejected() -> None:
    text = _text(extensions=(f"otel-audit chain {CHAIN_B64}", "otel-audit sealed-at 42"))
    with pytest.raises(FormatError, match=r"lacks the otel-audit chain, sealed-at and columns"):
        Checkpoint.parse(text)
