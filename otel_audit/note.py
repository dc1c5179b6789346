"""C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys.

Byte-for-byte the format of Go's golang.org/x/mod/sumdb/note, so Go and transparency-dev
tools verify our checkpoints and we verify theirs:

- key id: the first 4 bytes of SHA-256(name || "\\n" || 0x01 || public key), written as
  8 lowercase hex digits in keys;
- verifier key: ``name+keyid+base64(0x01 || public key)``;
- signer key: ``PRIVATE+KEY+name+keyid+base64(0x01 || seed)``;
- note: the text (UTF-8, ending in a newline), one blank line, then one line per signature
  ``— name base64(keyid || signature)`` where the signature is Ed25519 over the text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import FormatError, SignatureError

ALG_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash and a space
MAX_SIGNATURES = 100
_NAME_BAD = re.compile(r"[+\s]")


def check_name(name: str) -> None:
    """A key name: non-empty, no '+', no whitespace (signed-note)."""
    if not name or _NAME_BAD.search(name):
        raise FormatError(f"key name {name!r} must be non-empty with no '+' and no spaces")


def key_id(name: str, public_key: bytes, algorithm: int = ALG_ED25519) -> int:
    """The 32-bit key id of a key (signed-note): SHA-256(name || "\\n" || algorithm || key)[:4].

    `algorithm` is the signature type byte: 0x01 for a log's Ed25519 key, 0x04 for a
    witness's Ed25519 cosignature/v1 key (c2sp.org/tlog-cosignature)."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([algorithm]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def parse_vkey(text: str, algorithm: int, what: str) -> tuple[str, int, bytes]:
    """(name, key id, 32-byte public key) of a verifier key ``name+keyid+base64(type || key)``
    whose signature type is `algorithm`; FormatError names `what` it was meant to be."""
    text = text.strip()
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise FormatError(
            f"{what} {text!r} is not of the form origin+keyid+base64 (the line `otel-audit keygen` printed)"
        )
    name, hex_id, data = parts
    check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise FormatError(f"{what} id {hex_id!r} must be 8 lowercase hex digits")
    raw = decode_base64(data, what)
    if len(raw) != 33 or raw[0] != algorithm:
        raise FormatError(f"{what} is not an Ed25519 key (want 0x{algorithm:02x} and 32 bytes)")
    if key_id(name, raw[1:], algorithm) != int(hex_id, 16):
        raise FormatError(f"{what} id {hex_id} does not match its key material")
    return name, int(hex_id, 16), raw[1:]


def decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not valid base64: {exc}") from None


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: int
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        return cls(*parse_vkey(text, ALG_ED25519, "verifier key"))

    def serialize(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{data}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer(Protocol):
    """What signs notes: a key file (SignerKey) or a key that never leaves an HSM
    (sealer/pkcs11_key.py). The note format only needs the key's name, its id, its public key
    (as a VerifierKey) and an Ed25519 signature over the message, so both make the same notes."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> int: ...

    def verifier(self) -> VerifierKey: ...

    def sign(self, message: bytes) -> bytes: ...


@dataclass(frozen=True)
class SignerKey:
    """An Ed25519 signer key held in a file (a Signer)."""

    name: str
    key_id: int
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> SignerKey:
        check_name(name)
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls.from_seed(name, seed)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SignerKey:
        check_name(name)
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
        return cls(name, key_id(name, public.public_bytes(Encoding.Raw, PublicFormat.Raw)), seed)

    @classmethod
    def parse(cls, text: str) -> SignerKey:
        text = text.strip()
        parts = text.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise FormatError("signer key is not of the form PRIVATE+KEY+origin+keyid+base64")
        _, _, name, hex_id, data = parts
        check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise FormatError(f"signer key id {hex_id!r} must be 8 lowercase hex digits")
        raw = decode_base64(data, "signer key")
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise FormatError("signer key is not an Ed25519 key (want 0x01 and 32 bytes)")
        key = cls.from_seed(name, raw[1:])
        if key.key_id != int(hex_id, 16):
            raise FormatError(f"signer key id {hex_id} does not match its key material")
        return key

    def serialize(self) -> str:
        data = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{data}"

    def verifier(self) -> VerifierKey:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return VerifierKey(self.name, self.key_id, public.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: int
    signature: bytes

    def serialize(self) -> str:
        blob = base64.b64encode(self.key_id.to_bytes(4, "big") + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class SignedNote:
    text: str
    signatures: tuple[NoteSignature, ...]

    @classmethod
    def sign(cls, text: str, *signers: Signer) -> SignedNote:
        _check_text(text)
        sigs = tuple(NoteSignature(s.name, s.key_id, s.sign(text.encode())) for s in signers)
        return cls(text, sigs)

    def serialize(self) -> str:
        return self.text + "\n" + "".join(s.serialize() for s in self.signatures)

    @classmethod
    def parse(cls, note: str) -> SignedNote:
        """Split a note into text and signature lines, strictly as sumdb/note.Open does."""
        if re.search(r"[\x00-\x09\x0b-\x1f]", note):
            raise FormatError("malformed note: ASCII control character (such as CR or NUL) in note")
        split = note.rfind("\n\n")
        if split < 0 or not note.endswith("\n"):
            raise FormatError("malformed note: no blank line before the signatures")
        text, block = note[: split + 1], note[split + 2 :]
        _check_text(text)
        sigs = []
        for line in block.split("\n")[:-1]:  # not splitlines(): it also splits at U+2028 etc.
            if not line.startswith(SIGNATURE_PREFIX):
                raise FormatError(f"malformed note: signature line {line!r} lacks the em dash")
            fields = line[len(SIGNATURE_PREFIX) :].split(" ")
            if len(fields) != 2:
                raise FormatError(f"malformed note: signature line {line!r}")
            name, blob = fields
            check_name(name)
            raw = decode_base64(blob, "note signature")
            if len(raw) < 5:
                raise FormatError("malformed note: signature too short")
            sigs.append(NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:]))
        if not sigs:
            raise FormatError("malformed note: no signatures")
        if len(sigs) > MAX_SIGNATURES:
            raise FormatError(f"malformed note: more than {MAX_SIGNATURES} signatures")
        return cls(text, tuple(sigs))

    def verify(self, key: VerifierKey) -> None:
        """Raise SignatureError unless a signature by `key` over the text is valid."""
        self.verify_signers((key,))

    def verify_signers(self, keys: Sequence[VerifierKey]) -> tuple[VerifierKey, ...]:
        """The keys among `keys` that signed the text; SignatureError if none did, or if a
        signature by one of them is invalid (as sumdb/note.Open: a bad signature by a known
        key fails the note).

        Signatures by other keys are ignored, as the spec says: a checkpoint may carry
        witness cosignatures we do not know.
        """
        signers = tuple(k for k in keys if any(self._by(k, s) for s in self.signatures))
        if not signers:
            wanted = ", ".join(f"{k.name}+{k.key_id:08x}" for k in keys) or "a trusted key (none given)"
            names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in self.signatures)
            raise SignatureError(f"note has no signature by {wanted} (has {names})")
        for key in signers:
            if not all(
                key.verify(self.text.encode(), s.signature) for s in self.signatures if self._by(key, s)
            ):
                raise SignatureError(f"invalid signature by {key.name}+{key.key_id:08x}")
        return signers

    @staticmethod
    def _by(key: VerifierKey, signature: NoteSignature) -> bool:
        return signature.name == key.name and signature.key_id == key.key_id


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end in a newline")
