"""RFC 3161 time-stamp tokens over signed checkpoint notes: requests and their verification.

A token from an independent time-stamp authority (TSA) proves that the exact bytes of a
checkpoint note, and so every record up to its tree size, existed no later than the token's
genTime: the sealer's own clock and key cannot move that time. The ASN.1 and the CMS
signature are rfc3161-client's (trailofbits) and cryptography's; nothing here parses DER.

What is stored and exported is the whole TimeStampResp (RFC 3161 section 2.4.2), the form
`openssl ts -verify -in <file>.tsr` reads.

`verify_token` checks, as RFC 3161 section 2.4.2 and rfc3161-client's Verifier do: status
granted; the CMS signature by the TSA certificate, which chains to the trusted roots at the
token's genTime; its extendedKeyUsage critical and holding id-kp-timeStamping (section 2.3); the
message imprint equal to SHA-256 of the note bytes; and the nonce when the caller sent one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from .errors import ConfigError, TimestampError


@dataclass(frozen=True)
class TimestampRequest:
    """A DER TimeStampReq over a note: SHA-256 imprint, a random nonce, certReq true (so the
    token carries the TSA certificate that signed it)."""

    der: bytes
    nonce: int


def timestamp_request(note: bytes) -> TimestampRequest:
    request = (
        TimestampRequestBuilder()
        .data(note)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    nonce = request.nonce
    if nonce is None:
        raise AssertionError("rfc3161-client built a request without the nonce asked for")
    return TimestampRequest(request.as_bytes(), nonce)


@dataclass(frozen=True)
class VerifiedTimestamp:
    """A token that verified: when the TSA saw the note, and who the TSA is."""

    gen_time: datetime
    tsa: str  # the TSA certificate's common name (or its whole subject when it has none)
    serial_number: int

    @property
    def gen_time_ns(self) -> int:
        return int(self.gen_time.timestamp()) * 1_000_000_000 + self.gen_time.microsecond * 1000


def load_roots(pem: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """The certificates of a PEM file (`--tsa-roots`): the chain of the TSAs to trust."""
    try:
        roots = tuple(x509.load_pem_x509_certificates(pem))
    except ValueError as exc:
        raise ConfigError(f"{source}: not a PEM certificate chain: {exc}") from None
    if not roots:
        raise ConfigError(f"{source}: holds no certificate")
    return roots


def verify_token(
    response: bytes, note: bytes, roots: Sequence[x509.Certificate], nonce: int | None = None
) -> VerifiedTimestamp:
    """The verified time of a DER TimeStampResp over the exact `note` bytes; TimestampError
    saying what failed otherwise."""
    if not roots:
        raise ConfigError("no TSA root certificate to verify time-stamp tokens against")
    try:
        decoded = decode_timestamp_response(response)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 TimeStampResp: {exc}") from None
    builder = VerifierBuilder(roots=list(roots))
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify(decoded, hashlib.sha256(note).digest())
    except VerificationError as exc:
        raise TimestampError(str(exc)) from None
    except ValueError as exc:  # a token whose parts do not decode
        raise TimestampError(f"token does not decode: {exc}") from None
    info = decoded.tst_info
    return VerifiedTimestamp(info.gen_time.astimezone(UTC), _tsa_name(decoded), info.serial_number)


def _tsa_name(response: TimeStampResponse) -> str:
    """The subject of the certificate that signed the token (the verifier matched it to the
    SignerInfo already), by its common name."""
    signer = next(iter(response.signed_data.signer_infos))
    for der in response.signed_data.certificates:
        cert = x509.load_der_x509_certificate(der)
        if cert.issuer == signer.issuer and cert.serial_number == signer.serial_number:
            names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            return str(names[0].value) if names else cert.subject.rfc4514_string()
    raise AssertionError("unreachable: a verified token carries its signer's certificate")


def existed_line(tree_size: int, stamp: VerifiedTimestamp) -> str:
    """What a verified token proves of a checkpoint, as `verify` and `verify-bundle` say it."""
    when = stamp.gen_time.isoformat().replace("+00:00", "Z")
    if tree_size == 0:
        return f"the empty log existed no later than {when} ({stamp.tsa})"
    return f"records up to Seq {tree_size - 1} existed no later than {when} ({stamp.tsa})"


def token_certificates(response: bytes) -> list[x509.Certificate]:
    """The certificates a TimeStampResp carries (the TSA's, with certReq), unverified: for a
    bundle's `tsa-certs.pem`, which a reader checks against roots of their own."""
    try:
        carried = decode_timestamp_response(response).signed_data.certificates
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 TimeStampResp: {exc}") from None
    return sorted(
        (x509.load_der_x509_certificate(der) for der in carried), key=lambda c: c.subject.rfc4514_string()
    )
