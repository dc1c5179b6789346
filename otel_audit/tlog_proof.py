"""C2SP tlog-proof (https://c2sp.org/tlog-proof): one record's offline-checkable inclusion proof.

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index <decimal>
    <base64 hash, leaf's sibling first>...
    <empty line>
    <the signed checkpoint note, verbatim>

Other transparency-log tools (transparency-dev/merkle's proof.VerifyTLogProof) read the same
files. The extra line is unauthenticated by design; we never write or trust one.
"""

from __future__ import annotations

import base64
import re
from binascii import b2a_base64
from dataclasses import dataclass

from .checkpoint import Checkpoint, open_checkpoint
from .errors import FormatError, ProofError
from .merkle import HASH_SIZE
from .note import VerifierKey, decode_base64
from .proof import verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
EXTENSION = ".tlog-proof"


@dataclass(frozen=True)
class TlogProof:
    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def serialize(self) -> str:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(b2a_base64(h, newline=False).decode() for h in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint_note

    @classmethod
    def parse(cls, text: str) -> TlogProof:
        head, sep, note = text.partition("\n\n")
        if not sep:
            raise FormatError("tlog-proof: no empty line before the checkpoint")
        lines = head.split("\n")
        if lines[0] != HEADER:
            raise FormatError(f"tlog-proof: first line must be {HEADER!r}, not {lines[0][:40]!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = decode_base64(rest.pop(0)[len("extra ") :], "tlog-proof extra data")
        if not rest or not rest[0].startswith("index "):
            raise FormatError("tlog-proof: missing the 'index <n>' line")
        index_text = rest.pop(0)[len("index ") :]
        if not re.fullmatch(r"0|[1-9][0-9]*", index_text):
            raise FormatError(f"tlog-proof: index {index_text!r} is not a decimal without leading zeros")
        hashes = []
        for line in rest:
            digest = decode_base64(line, "tlog-proof hash")
            if len(digest) != HASH_SIZE:
                raise FormatError(f"tlog-proof: hash length {len(digest)}, want {HASH_SIZE}")
            hashes.append(digest)
        return cls(int(index_text), tuple(hashes), note, extra)

    def verify(self, leaf_hash: bytes, key: VerifierKey) -> Checkpoint:
        """The signed checkpoint this proof places `leaf_hash` in; raises if it does not.

        SignatureError: the checkpoint is not signed by `key`, or is of another log.
        ProofError: the hashes do not lead from the leaf to the signed root.
        """
        checkpoint = open_checkpoint(self.checkpoint_note, key).checkpoint
        try:
            verify_inclusion(self.index, checkpoint.tree_size, leaf_hash, self.hashes, checkpoint.root_hash)
        except ProofError as exc:
            raise ProofError(
                f"inclusion proof for index {self.index} does not lead to the signed root of "
                f"tree size {checkpoint.tree_size}"
            ) from exc
        return checkpoint
