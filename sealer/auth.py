"""Who sent it: producer authentication, the same for OTLP/gRPC and OTLP/HTTP.

A producer proves who it is with a TLS client certificate (its name is the certificate's
subject, RFC 4514, e.g. ``CN=orders,O=Acme``) or a bearer token (its name is the one the
token file gives the token). The name is sealed into every record it sends
(``otel_audit.producer``) and stored in the Producer column.

Token files keep only SHA-256 digests, one producer per line, so a leaked file admits nobody:

    # name        digest of the token
    orders        sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

With --tls-client-ca, TLS is mutual on both listeners: every producer must present a
certificate that CA issued, and its subject names it (a bearer token is then not needed and
not consulted). Otherwise a request with no identity is refused unless its listener is
loopback-only or the operator passed --allow-anonymous; it is then sealed with no producer.
A token that is not in the file is always refused. Serving without TLS on a non-loopback
address needs --insecure.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from otel_audit.errors import ConfigError, Unauthenticated

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/=,:+-]*")


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        try:
            ca = self.client_ca.read_bytes() if self.client_ca else None
            return self.cert.read_bytes(), self.key.read_bytes(), ca
        except OSError as exc:
            raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def add_token(path: Path, name: str) -> str:
    """Append a new token for `name` to the token file (created 0600); return the token."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"producer name {name!r}: use letters, digits and . _ @ / = , : + -")
    if path.exists() and name in load_tokens(path).values():
        raise ConfigError(f"{path} already has a token for {name!r}; remove its line to replace it")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{name} sha256:{token_digest(token)}\n")
    return token


def load_tokens(path: Path) -> dict[str, str]:
    """Digest (hex) -> producer name."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 2 or not _NAME.fullmatch(fields[0]) or not _DIGEST.fullmatch(fields[1]):
            raise ConfigError(f"{path} line {number}: expected '<producer name> sha256:<64 hex digits>'")
        tokens[_DIGEST.fullmatch(fields[1]).group(1)] = fields[0]  # type: ignore[union-attr]
    return tokens


def certificate_subject(certificate: bytes) -> str:
    """The RFC 4514 subject of a DER or PEM certificate (already verified by TLS)."""
    if certificate.startswith(b"-----BEGIN"):
        cert = x509.load_pem_x509_certificate(certificate)
    else:
        cert = x509.load_der_x509_certificate(certificate)
    return cert.subject.rfc4514_string()


@dataclass(frozen=True)
class Authenticator:
    """Decides the producer of one request on one listener."""

    tokens: dict[str, str]
    allow_anonymous: bool

    def producer(self, authorization: str | None, certificate: bytes | None) -> str:
        """The certificate's subject if TLS verified one, else the bearer token's name."""
        if certificate:
            return certificate_subject(certificate)
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization header must be 'Bearer <token>'")
            digest = token_digest(token.strip())
            for known, name in self.tokens.items():
                if hmac.compare_digest(known, digest):
                    return name
            raise Unauthenticated("unknown bearer token")
        if self.allow_anonymous:
            return ""
        raise Unauthenticated(
            "this listener needs a producer identity: a TLS client certificate or an "
            "'authorization: Bearer <token>' header"
        )


def is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]") or "0.0.0.0"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def authenticator_for(
    address: str, tokens: dict[str, str], tls: TlsFiles | None, allow_anonymous: bool, insecure: bool
) -> Authenticator:
    """The policy of one listener, refusing a configuration that would expose it."""
    loopback = is_loopback(address)
    if not loopback and tls is None and not insecure:
        raise ConfigError(
            f"{address} is reachable from the network but has no TLS: give --tls-cert and "
            "--tls-key, or pass --insecure to accept plaintext"
        )
    can_identify = bool(tokens) or (tls is not None and tls.client_ca is not None)
    if not loopback and not can_identify and not allow_anonymous:
        raise ConfigError(
            f"{address} is reachable from the network and no producer could authenticate: give "
            "--tokens or --tls-client-ca, or pass --allow-anonymous"
        )
    return Authenticator(tokens, allow_anonymous or loopback)
