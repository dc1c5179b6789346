"""Where the sealer's signing keys come from: a key file, or an HSM through PKCS#11.

`--key` and `--previous-key` take either a path to a signer key file (`otel-audit keygen`)
or an RFC 7512 `pkcs11:` URI (sealer/pkcs11_key.py). Both give a Signer (otel_audit/note.py),
so the checkpointer and the journal do not know which one signs.
"""

from __future__ import annotations

from pathlib import Path

from otel_audit.note import Signer
from otel_audit.offline_cli import load_signer_key

from .pkcs11_key import Pkcs11Signer, Pkcs11Uri, is_pkcs11_uri


def load_signer(spec: str, origin: str) -> Signer:
    """The key `spec` names; `origin` is the note name of a PKCS#11 key (a key file holds its own)."""
    if is_pkcs11_uri(spec):
        return Pkcs11Signer(Pkcs11Uri.parse(spec), origin)
    return load_signer_key(Path(spec))
