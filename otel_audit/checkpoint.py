"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) bodies.

    <origin>\\n<tree size>\\n<base64 root hash>\\n[extension lines]

We add two extension lines, both covered by the signature: the chain head after the last
leaf (``otel-audit chain <base64>``) and the seal time of the last leaf in Unix nanoseconds
(``otel-audit sealed-at <ns>``). Clients that do not know them ignore them, as the spec asks.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from .errors import FormatError
from .note import decode_base64

CHAIN_EXTENSION = "otel-audit chain "
SEALED_AT_EXTENSION = "otel-audit sealed-at "


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    chain_head: bytes
    sealed_at_ns: int
    other_extensions: tuple[str, ...] = ()

    def serialize(self) -> str:
        lines = [
            self.origin,
            str(self.tree_size),
            base64.b64encode(self.root_hash).decode(),
            CHAIN_EXTENSION + base64.b64encode(self.chain_head).decode(),
            SEALED_AT_EXTENSION + str(self.sealed_at_ns),
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
            else:
                others.append(line)
        if chain_head is None or len(chain_head) != 32 or sealed_at is None:
            raise FormatError("checkpoint lacks the otel-audit chain and sealed-at extensions")
        return cls(origin, int(size_text), root, chain_head, sealed_at, tuple(others))
