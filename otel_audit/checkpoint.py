"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) bodies.

    <origin>\\n<tree size>\\n<base64 root hash>\\n[extension lines]

We add three extension lines, all covered by the signature; clients that do not know them
ignore them, as the spec asks:

- ``otel-audit chain <base64>``: the chain head after the last leaf;
- ``otel-audit sealed-at <ns>``: the seal time of the last leaf, Unix nanoseconds;
- ``otel-audit columns <from> <base64>``: the columns commitment of the records
  [from, tree size): SHA-256 over their column hashes in Seq order (see otel_audit/columns.py).
  It lets `verify` check every stored column without decoding each entry.

A checkpoint is only ever read inside its signed note (note.py), and `open_checkpoint` is the
one place that opens one: strict note parse, signatures checked against the trusted keys
first, then the body parsed, and the body's origin must be the name of a key that signed it
(tlog-checkpoint: the origin is the log's key name). It returns a `SignedCheckpoint` or
raises FormatError / SignatureError. Code that deliberately reads a checkpoint without a key
(`status`, anchors listed before the verifier checks them) says so with `read_unverified`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .errors import FormatError, SignatureError
from .note import SignedNote, VerifierKey, decode_base64

CHAIN_EXTENSION = "otel-audit chain "
SEALED_AT_EXTENSION = "otel-audit sealed-at "
COLUMNS_EXTENSION = "otel-audit columns "


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    chain_head: bytes
    sealed_at_ns: int
    columns_from: int
    columns_hash: bytes
    other_extensions: tuple[str, ...] = ()

    def serialize(self) -> str:
        lines = [
            self.origin,
            str(self.tree_size),
            base64.b64encode(self.root_hash).decode(),
            CHAIN_EXTENSION + base64.b64encode(self.chain_head).decode(),
            SEALED_AT_EXTENSION + str(self.sealed_at_ns),
            f"{COLUMNS_EXTENSION}{self.columns_from} {base64.b64encode(self.columns_hash).decode()}",
            *self.other_extensions,
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not text.endswith("\n"):
            raise FormatError("checkpoint must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError("checkpoint needs origin, tree size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not origin:
            raise FormatError("checkpoint origin line is empty")
        if not re.fullmatch(r"0|[1-9][0-9]*", size_text):
            raise FormatError(f"checkpoint tree size {size_text!r} is not a decimal number")
        root = decode_base64(root_text, "checkpoint root hash")
        if len(root) != 32:
            raise FormatError("checkpoint root hash must be 32 bytes")
        chain_head: bytes | None = None
        sealed_at: int | None = None
        columns: tuple[int, bytes] | None = None
        others = []
        for line in extensions:
            if not line:
                raise FormatError("checkpoint extension lines must not be empty")
            if line.startswith(CHAIN_EXTENSION):
                chain_head = decode_base64(line[len(CHAIN_EXTENSION) :], "chain head")
            elif line.startswith(SEALED_AT_EXTENSION):
                value = line[len(SEALED_AT_EXTENSION) :]
                if not re.fullmatch(r"[0-9]+", value):  # not isdigit(): it accepts U+00B2 etc.
                    raise FormatError(f"checkpoint sealed-at {value!r} is not a number")
                sealed_at = int(value)
            elif line.startswith(COLUMNS_EXTENSION):
                columns = _parse_columns(line[len(COLUMNS_EXTENSION) :])
            else:
                others.append(line)
        if chain_head is None or len(chain_head) != 32 or sealed_at is None or columns is None:
            raise FormatError("checkpoint lacks the otel-audit chain, sealed-at and columns extensions")
        if columns[0] > int(size_text):
            raise FormatError("checkpoint columns range starts after its tree size")
        return cls(origin, int(size_text), root, chain_head, sealed_at, *columns, tuple(others))


def _parse_columns(value: str) -> tuple[int, bytes]:
    parts = value.split(" ")
    if len(parts) != 2 or not re.fullmatch(r"[0-9]+", parts[0]):
        raise FormatError(f"checkpoint columns extension {value!r} is not '<from> <base64>'")
    digest = decode_base64(parts[1], "columns hash")
    if len(digest) != 32:
        raise FormatError("checkpoint columns hash must be 32 bytes")
    return int(parts[0]), digest


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint opened from its signed note, in the spirit of sigstore-python's
    `SignedCheckpoint.from_text`: the note's exact text (stored, served and compared
    verbatim), the note, its parsed body, and the trusted keys whose signatures over it are
    valid. `verified_by` is empty only for a checkpoint from `read_unverified`."""

    text: str
    note: SignedNote
    checkpoint: Checkpoint
    verified_by: tuple[VerifierKey, ...]


def open_checkpoint(text: str, *keys: VerifierKey) -> SignedCheckpoint:
    """The checkpoint in the signed note `text`, trusted because `keys` signed it.

    The signatures are checked before the body is read (as sumdb/note.Open), and the body's
    origin must be the name of a key that signed it, so a log's key cannot vouch for
    another log's checkpoint. FormatError: the note or the body is malformed.
    SignatureError: no trusted key signed it, a signature is invalid, or the checkpoint is of
    another log.
    """
    note = SignedNote.parse(text)
    signers = note.verify_signers(keys)
    checkpoint = Checkpoint.parse(note.text)
    if checkpoint.origin not in {key.name for key in signers}:
        names = ", ".join(repr(key.name) for key in signers)
        raise SignatureError(f"checkpoint is of log {checkpoint.origin!r}, not {names}")
    return SignedCheckpoint(text, note, checkpoint, signers)


def read_unverified(text: str) -> SignedCheckpoint:
    """The checkpoint in a signed note, parsed as strictly as `open_checkpoint` does but with
    no signature checked. Only for callers that hold no key on purpose (they say why); what
    it returns proves nothing."""
    note = SignedNote.parse(text)
    return SignedCheckpoint(text, note, Checkpoint.parse(note.text), ())
