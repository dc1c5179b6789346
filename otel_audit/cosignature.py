"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the Ed25519 `cosignature/v1` type.

A witness's cosignature is a note signature line over a checkpoint, byte for byte:

- key id: SHA-256(name || "\\n" || 0x04 || 32-byte public key)[:4] (signature type 0x04);
- verifier key (vkey): ``name+keyid+base64(0x04 || public key)``;
- signer key: ``PRIVATE+KEY+name+keyid+base64(0x04 || seed)`` (the log's key shape, type 0x04);
- signature: ``timestamp (u64, big-endian) || Ed25519 signature`` over the signed message
  ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint's whole note text.

The type byte keeps a cosignature from ever passing for a log signature and back: the same
Ed25519 key yields a different key id under 0x01 and 0x04. Pure: the caller passes the time.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import FormatError, SignatureError
from .note import NoteSignature, SignedNote, check_name, decode_base64, key_id, parse_vkey

ALG_COSIGNATURE_V1 = 0x04
HEADER = "cosignature/v1\n"
MAX_TIMESTAMP = 2**63 - 1
SIGNATURE_SIZE = 8 + 64


def signed_message(note_text: str, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs (tlog-cosignature, "Ed25519 signed message")."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise FormatError(f"cosignature timestamp {timestamp} is outside 0..2^63-1")
    return f"{HEADER}time {timestamp}\n{note_text}".encode()


@dataclass(frozen=True)
class CosignerVerifierKey:
    """A witness's public key, as a tlog-policy `witness` line or `witness serve` prints it."""

    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> CosignerVerifierKey:
        return cls(*parse_vkey(text, ALG_COSIGNATURE_V1, "witness verifier key"))

    def serialize(self) -> str:
        data = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{data}"

    def signed(self, signature: NoteSignature) -> bool:
        """Whether the signature line claims to be by this key (name and key id match)."""
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, note_text: str, signature: NoteSignature) -> int:
        """The timestamp of a valid cosignature by this key over `note_text`; SignatureError
        if it is not one."""
        if not self.signed(signature):
            raise SignatureError(f"signature is by {signature.name}+{signature.key_id:08x}, not {self}")
        raw = signature.signature
        if len(raw) != SIGNATURE_SIZE:
            raise SignatureError(f"cosignature by {self} is {len(raw)} bytes, want {SIGNATURE_SIZE}")
        timestamp = int.from_bytes(raw[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise SignatureError(f"cosignature by {self} has a timestamp above 2^63-1")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                raw[8:], signed_message(note_text, timestamp)
            )
        except InvalidSignature:
            raise SignatureError(f"invalid cosignature by {self}") from None
        return timestamp

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class CosignerKey:
    """A witness's private key (`otel-audit keygen --witness NAME`)."""

    name: str
    key_id: int
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> CosignerKey:
        return cls.from_seed(name, Ed25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> CosignerKey:
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        check_name(name)
        return cls(name, key_id(name, raw, ALG_COSIGNATURE_V1), seed)

    @classmethod
    def parse(cls, text: str) -> CosignerKey:
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise FormatError("witness key is not of the form PRIVATE+KEY+name+keyid+base64")
        _, _, name, hex_id, data = parts
        raw = decode_base64(data, "witness key")
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise FormatError("witness key is not a cosignature/v1 key (want 0x04 and 32 bytes)")
        key = cls.from_seed(name, raw[1:])
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id) or key.key_id != int(hex_id, 16):
            raise FormatError(f"witness key id {hex_id!r} does not match its key material")
        return key

    def serialize(self) -> str:
        data = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{data}"

    def verifier(self) -> CosignerVerifierKey:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return CosignerVerifierKey(self.name, self.key_id, raw)

    def cosign(self, note_text: str, timestamp: int) -> NoteSignature:
        """The cosignature line of this witness over a checkpoint's note text at `timestamp`."""
        sig = Ed25519PrivateKey.from_private_bytes(self.seed).sign(signed_message(note_text, timestamp))
        return NoteSignature(self.name, self.key_id, timestamp.to_bytes(8, "big") + sig)


def cosigned_by(note: SignedNote, keys: tuple[CosignerVerifierKey, ...]) -> dict[str, int]:
    """Name -> timestamp of the witnesses among `keys` whose cosignature on the note is
    valid. Lines by other keys are ignored (tlog-witness: "MUST ignore any cosignatures from
    unknown keys"); a line that claims a known key but does not verify is a SignatureError,
    as a bad signature by a known key fails a note (sumdb/note.Open)."""
    found: dict[str, int] = {}
    for key in keys:
        for line in note.signatures:
            if key.signed(line):
                found[key.name] = max(found.get(key.name, 0), key.verify(note.text, line))
    return found


def add_cosignatures(note: SignedNote, lines: tuple[NoteSignature, ...]) -> SignedNote:
    """The note with the cosignature lines appended that it does not carry yet."""
    new = tuple(line for line in lines if line not in note.signatures)
    return SignedNote(note.text, note.signatures + new)
