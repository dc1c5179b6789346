"""Ed25519 signing keys that never leave an HSM or a cloud KMS, reached through PKCS#11.

A key is named by an RFC 7512 URI, e.g.
``pkcs11:token=audit;object=checkpoint-key?pin-source=file:/run/secrets/pin``. The path
attributes (`token`, `object`, `id`, `serial`, `manufacturer`, `model`, `type`) select the
token and the key; the query may name the PIN file (`pin-source=file:...`) and the module
(`module-path=`). Values are percent-decoded; an attribute we do not know, or one given twice,
is refused (RFC 7512 6.1: a URI with an unknown attribute matches nothing). The PIN is never a
flag value: `pin-value=` is refused; it comes from the `pin-source` file or from the
environment (OTEL_AUDIT_PKCS11_PIN). The module defaults to OTEL_AUDIT_PKCS11_MODULE, then to
Debian's SoftHSM2.

Signatures are CKM_EDDSA (pure Ed25519, RFC 8032) over the note text, so a note signed here
is byte for byte the C2SP signed note a key file makes, and VerifierKey checks it. The key's
note name (the log's origin) is not stored in the token: the caller gives it.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error
from pkcs11.types import PrivateKey, SignMixin, Token
from pkcs11.util.ec import encode_named_curve_parameters

from otel_audit.errors import ConfigError, FormatError
from otel_audit.note import VerifierKey, key_id

SCHEME = "pkcs11:"
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2
PIN_ENV = "OTEL_AUDIT_PKCS11_PIN"
MODULE_ENV = "OTEL_AUDIT_PKCS11_MODULE"
ED25519_OID = "1.3.101.112"
# CKA_EC_PARAMS of an Ed25519 key: the curve's OID, or (PKCS#11 3.0, SoftHSM2) its name.
_ED25519_PARAMS = (encode_named_curve_parameters(ED25519_OID), b"\x13\x0cedwards25519")
_PATH_ATTRIBUTES = {"token", "object", "id", "serial", "manufacturer", "model", "type"}
_QUERY_ATTRIBUTES = {"pin-source", "module-path"}
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def is_pkcs11_uri(text: str) -> bool:
    return text.lower().startswith(SCHEME)


def _decode(value: str, what: str) -> bytes:
    if _PCT.search(value):
        raise ConfigError(f"PKCS#11 URI: {what} has a '%' not followed by two hex digits")
    return unquote_to_bytes(value)


def _attributes(part: str, separator: str, known: set[str], where: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for item in part.split(separator) if part else []:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"PKCS#11 URI: {where} attribute {item!r} is not name=value")
        if name == "pin-value":
            raise ConfigError(
                f"PKCS#11 URI: pin-value is refused (a PIN on a command line is visible to every "
                f"user); put the PIN in a file named by pin-source=file:... or in {PIN_ENV}"
            )
        if name not in known:
            raise ConfigError(
                f"PKCS#11 URI: unknown {where} attribute {name!r} (known: {', '.join(sorted(known))})"
            )
        if name in found:
            raise ConfigError(f"PKCS#11 URI: attribute {name!r} is given twice")
        found[name] = _decode(value, name)
    return found


@dataclass(frozen=True)
class Pkcs11Uri:
    """An RFC 7512 URI naming one Ed25519 private key, its values percent-decoded."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    serial: bytes | None = None
    manufacturer: str | None = None
    model: str | None = None
    pin_source: str | None = None
    module_path: str | None = None

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not is_pkcs11_uri(text):
            raise ConfigError(f"{text!r} is not a PKCS#11 URI (pkcs11:token=...;object=...)")
        path, _, query = text[len(SCHEME) :].partition("?")
        attrs = _attributes(path, ";", _PATH_ATTRIBUTES, "path")
        options = _attributes(query, "&", _QUERY_ATTRIBUTES, "query")
        kind = attrs.pop("type", b"private")
        if kind != b"private":
            raise ConfigError(
                f"PKCS#11 URI: type={kind.decode(errors='replace')}; a signing key is type=private"
            )
        if "object" not in attrs and "id" not in attrs:
            raise ConfigError("PKCS#11 URI: name the key with object=LABEL (or id=%..)")

        def text_of(value: bytes | None, name: str) -> str | None:
            if value is None:
                return None
            try:
                return value.decode()
            except UnicodeDecodeError:
                raise ConfigError(f"PKCS#11 URI: {name} is not UTF-8") from None

        return cls(
            token=text_of(attrs.get("token"), "token"),
            object=text_of(attrs.get("object"), "object"),
            id=attrs.get("id"),
            serial=attrs.get("serial"),
            manufacturer=text_of(attrs.get("manufacturer"), "manufacturer"),
            model=text_of(attrs.get("model"), "model"),
            pin_source=text_of(options.get("pin-source"), "pin-source"),
            module_path=text_of(options.get("module-path"), "module-path"),
        )

    def describe(self) -> str:
        parts = [f"{k}={v!r}" for k, v in (("token", self.token), ("object", self.object)) if v]
        if self.id is not None:
            parts.append(f"id={self.id.hex()}")
        return ", ".join(parts)

    def module(self) -> str:
        return self.module_path or os.environ.get(MODULE_ENV) or DEFAULT_MODULE

    def pin(self) -> str:
        """The user PIN: from the pin-source file, else from OTEL_AUDIT_PKCS11_PIN."""
        if self.pin_source is not None:
            source = self.pin_source
            path = Path(source[len("file:") :] if source.startswith("file:") else source)
            try:
                return path.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"PKCS#11 pin-source {path}: {exc.strerror}") from None
        pin = os.environ.get(PIN_ENV)
        if pin is None:
            raise ConfigError(
                f"no PIN for the PKCS#11 key ({self.describe()}): add pin-source=file:PATH to the URI "
                f"or set {PIN_ENV}"
            )
        return pin


def _tokens(uri: Pkcs11Uri) -> list[Token]:
    """The tokens present in the URI's module."""
    module = uri.module()
    if not Path(module).exists():
        raise ConfigError(
            f"PKCS#11 module {module} does not exist: install it (Debian: apt-get install softhsm2) "
            f"or name your HSM's module with module-path= in the URI or {MODULE_ENV}"
        )
    try:
        lib = pkcs11.lib(module)
    except (RuntimeError, OSError, PKCS11Error) as exc:
        raise ConfigError(f"cannot load the PKCS#11 module {module}: {exc}") from None
    try:
        return [slot.get_token() for slot in lib.get_slots(token_present=True)]
    except PKCS11Error as exc:
        raise ConfigError(f"PKCS#11 module {module}: cannot list its tokens: {exc!r}") from None


def _token(uri: Pkcs11Uri) -> Token:
    tokens = _tokens(uri)
    wanted = {
        "label": uri.token,
        "serial": uri.serial,
        "manufacturer_id": uri.manufacturer,
        "model": uri.model,
    }
    matches = [t for t in tokens if all(v is None or getattr(t, k) == v for k, v in wanted.items())]
    if not matches:
        have = ", ".join(repr(t.label) for t in tokens) or "none"
        raise ConfigError(
            f"no PKCS#11 token matches {uri.describe()} in {uri.module()} (tokens: {have}); "
            "check token= in the URI (and SOFTHSM2_CONF for SoftHSM2)"
        )
    if len(matches) > 1:
        raise ConfigError(f"{len(matches)} PKCS#11 tokens match {uri.describe()}; add serial= to the URI")
    return matches[0]


def _login(uri: Pkcs11Uri, rw: bool = False) -> pkcs11.Session:
    token = _token(uri)
    pin = uri.pin()
    try:
        return token.open(user_pin=pin, rw=rw)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # login is per token and process: share it
        return token.open(rw=rw)
    except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinLenRange, pkcs11.exceptions.PinInvalid):
        raise ConfigError(
            f"PKCS#11 token {token.label!r} refused the PIN; check the pin-source file or {PIN_ENV}"
        ) from None
    except pkcs11.exceptions.PinLocked:
        raise ConfigError(
            f"PKCS#11 token {token.label!r}: the user PIN is locked; unlock it with the SO PIN"
        ) from None
    except PKCS11Error as exc:
        raise ConfigError(f"cannot log in to PKCS#11 token {token.label!r}: {exc!r}") from None


def _search(uri: Pkcs11Uri) -> dict[Attribute, object]:
    template: dict[Attribute, object] = {}
    if uri.object is not None:
        template[Attribute.LABEL] = uri.object
    if uri.id is not None:
        template[Attribute.ID] = uri.id
    return template


def _public_key(session: pkcs11.Session, uri: Pkcs11Uri) -> bytes:
    """The raw 32-byte Ed25519 public key, from the token's public key object of the same
    label/id (CKA_EC_POINT, a DER OCTET STRING or the bare point)."""
    found = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **_search(uri)}))
    if len(found) != 1:
        raise ConfigError(
            f"PKCS#11 key {uri.describe()}: found {len(found)} public key objects, want 1 (the public half "
            "of the key pair, same label and id, from which the verifier key is made)"
        )
    point = bytes(found[0][Attribute.EC_POINT])
    if len(point) == 34 and point[:2] == b"\x04\x20":
        point = point[2:]
    if len(point) != 32:
        raise ConfigError(f"PKCS#11 key {uri.describe()}: its public key is not a 32-byte Ed25519 point")
    return point


class Pkcs11Signer:
    """A Signer whose private key stays in the token; one logged-in session, used by one
    thread at a time (the checkpointer and the journal both sign)."""

    def __init__(self, uri: Pkcs11Uri, name: str) -> None:
        self._uri = uri
        self._session = _login(uri)
        self._lock = threading.Lock()
        try:
            found = self._session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **_search(uri)})
            keys = [k for k in found if isinstance(k, PrivateKey) and isinstance(k, SignMixin)]
            if not keys:
                raise ConfigError(
                    f"PKCS#11 token holds no private key {uri.describe()}; create one with "
                    "`otel-audit keygen --pkcs11 URI --origin ORIGIN --generate`"
                )
            if len(keys) > 1:
                raise ConfigError(f"{len(keys)} private keys match {uri.describe()}; add id= to the URI")
            private = keys[0]
            assert isinstance(private, SignMixin)
            self._private: SignMixin = private
            kind = private.key_type
            params = bytes(private[Attribute.EC_PARAMS]) if kind == KeyType.EC_EDWARDS else b""
            if params not in _ED25519_PARAMS:
                raise ConfigError(
                    f"PKCS#11 key {uri.describe()} is not an Ed25519 key ({kind.name}); "
                    "checkpoints are signed with Ed25519 (CKM_EDDSA)"
                )
            public = _public_key(self._session, uri)
        except PKCS11Error as exc:
            self._session.close()
            raise ConfigError(f"PKCS#11 key {uri.describe()}: {exc!r}") from None
        except ConfigError:
            self._session.close()
            raise
        try:  # the round trip checks the name as a key name (no '+', no spaces)
            self._verifier = VerifierKey.parse(VerifierKey(name, key_id(name, public), public).serialize())
        except FormatError:
            self._session.close()
            raise
        if not self._verifier.verify(b"otel-audit key check", self.sign(b"otel-audit key check")):
            self._session.close()
            raise ConfigError(f"PKCS#11 key {uri.describe()}: its signature does not match its public key")

    @property
    def name(self) -> str:
        return self._verifier.name

    @property
    def key_id(self) -> int:
        return self._verifier.key_id

    def verifier(self) -> VerifierKey:
        return self._verifier

    def sign(self, message: bytes) -> bytes:
        with self._lock:
            return bytes(self._private.sign(message, mechanism=Mechanism.EDDSA))

    def close(self) -> None:
        with self._lock:
            self._session.close()


def generate_key(uri: Pkcs11Uri) -> None:
    """Make an Ed25519 key pair in the token under the URI's label (and id): the private half
    sensitive and not extractable. ConfigError if a key of that name exists."""
    if uri.object is None:
        raise ConfigError("PKCS#11 URI: give object=LABEL for the key to generate")
    with _login(uri, rw=True) as session:
        if list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **_search(uri)})):
            raise ConfigError(f"PKCS#11 token already holds a key {uri.describe()}; refusing to make another")
        common = {Attribute.TOKEN: True, Attribute.LABEL: uri.object}
        if uri.id is not None:
            common[Attribute.ID] = uri.id
        try:
            session.generate_keypair(
                KeyType.EC_EDWARDS,
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                store=True,
                public_template={**common, Attribute.EC_PARAMS: _ED25519_PARAMS[0], Attribute.VERIFY: True},
                private_template={
                    **common,
                    Attribute.SIGN: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.PRIVATE: True,
                },
            )
        except PKCS11Error as exc:
            raise ConfigError(f"PKCS#11 token cannot make an Ed25519 key: {exc!r}") from None
