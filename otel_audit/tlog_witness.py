"""C2SP tlog-witness (https://c2sp.org/tlog-witness): the add-checkpoint exchange and the
witness's decision, as pure functions.

Request body: ``old <size>\\n``, zero to 63 consistency proof lines (base64 hashes), an empty
line, then the signed checkpoint note. The witness answers 200 with its cosignature lines,
or refuses: 404 unknown origin, 403 no trusted signature, 400 old size above the checkpoint
size (or a malformed body), 409 old size not the size it last cosigned (body: that size,
``text/x.tlog.size``) or the same size with another root, 422 a consistency proof that does
not verify. `witness_check` applies those rules in the spec's order and returns the tree the
witness may cosign; `sealer/witness_server.py` persists it and signs.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .checkpoint import open_checkpoint, read_unverified
from .errors import AuditError, FormatError, ProofError, WitnessRefusal
from .note import NoteSignature, SignedNote, VerifierKey, decode_base64
from .proof import verify_consistency

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_SIZE = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request body."""

    old_size: int
    proof: tuple[bytes, ...]
    note_text: str  # the signed checkpoint note, exactly as sent

    def serialize(self) -> bytes:
        lines = [f"old {self.old_size}\n", *(base64.b64encode(h).decode() + "\n" for h in self.proof)]
        return ("".join(lines) + "\n" + self.note_text).encode()

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("request body is not UTF-8") from None
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise FormatError("request body has no empty line before the checkpoint")
        lines = head.split("\n")
        if not lines[0].startswith("old ") or not _SIZE.fullmatch(lines[0][4:]):
            raise FormatError(f"first line {lines[0][:40]!r} is not 'old <size>'")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise FormatError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        proof = tuple(decode_base64(line, "consistency proof line") for line in lines[1:])
        if any(len(h) != 32 for h in proof):
            raise FormatError("a consistency proof line is not a 32-byte hash")
        return cls(int(lines[0][4:]), proof, note)


def parse_size_body(body: bytes) -> int:
    """The tree size in a 409 answer (``<decimal>\\n``); FormatError if it is not one."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n") or not _SIZE.fullmatch(text[:-1]):
        raise FormatError(f"409 body {text[:40]!r} is not a tree size line")
    return int(text[:-1])


def parse_cosignature_lines(note: SignedNote, body: bytes) -> tuple[NoteSignature, ...]:
    """The signature lines of a 200 answer, read by appending them to the note (as the spec
    suggests) so that they pass the same strict parser as any note."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("cosignature answer is not UTF-8") from None
    joined = SignedNote.parse(note.text + "\n" + text)
    return joined.signatures


@dataclass(frozen=True)
class WitnessedTree:
    """What a witness remembers of a log: the newest tree it cosigned."""

    size: int
    root: bytes


def witness_check(
    request: AddCheckpoint,
    trusted: Mapping[str, Sequence[VerifierKey]],
    latest: Mapping[str, WitnessedTree],
) -> tuple[str, WitnessedTree]:
    """(origin, tree) the witness may cosign for `request`, or WitnessRefusal with the
    status the spec gives. `trusted`: origin -> the log's verifier keys; `latest`: origin ->
    the tree last cosigned. The note's body is the checkpoint the log signed, extension
    lines and all; only its first three lines are checked for consistency (tlog-cosignature)."""
    try:
        unverified = read_unverified(request.note_text)
    except FormatError as exc:
        raise WitnessRefusal(400, f"malformed checkpoint: {exc}") from None
    origin = unverified.checkpoint.origin
    if origin not in trusted:
        raise WitnessRefusal(404, f"unknown log {origin!r}")
    try:
        checkpoint = open_checkpoint(request.note_text, *trusted[origin]).checkpoint
    except AuditError as exc:
        raise WitnessRefusal(403, f"no valid signature by a key trusted for {origin!r}: {exc}") from None
    if request.old_size > checkpoint.tree_size:
        size = checkpoint.tree_size
        raise WitnessRefusal(400, f"old size {request.old_size} is above the checkpoint size {size}")
    last = latest.get(origin, WitnessedTree(0, b""))
    if request.old_size != last.size:
        raise WitnessRefusal(409, f"old size {request.old_size} is not {last.size}", size=last.size)
    new = WitnessedTree(checkpoint.tree_size, checkpoint.root_hash)
    if last.size == 0:
        if request.proof:
            raise WitnessRefusal(422, "the consistency proof must be empty when the old size is 0")
        return origin, new
    if last.size == new.size:
        if last.root != new.root:
            raise WitnessRefusal(409, f"tree size {new.size} was cosigned with another root", size=last.size)
        return origin, new
    try:
        verify_consistency(last.size, new.size, request.proof, last.root, new.root)
    except ProofError as exc:
        what = f"consistency proof from {last.size} to {new.size}"
        raise WitnessRefusal(422, f"{what} does not verify: {exc}") from None
    return origin, new


def parse_trusted_logs(text: str) -> dict[str, list[VerifierKey]]:
    """A witness's trust list: one log verifier key (``origin+keyid+base64``) a line, `#`
    comments and blank lines ignored. Origin -> its keys (a log may rotate, so several)."""
    trusted: dict[str, list[VerifierKey]] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = VerifierKey.parse(line)
        except FormatError as exc:
            raise FormatError(f"trusted logs line {number}: {exc}") from None
        trusted.setdefault(key.name, []).append(key)
    if not trusted:
        raise FormatError("the trusted logs file lists no log verifier key")
    return trusted
