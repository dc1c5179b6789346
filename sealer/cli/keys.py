"""`otel-audit keygen`: the offline verifier's keygen (a key file), plus HSM keys.

With `--pkcs11 URI` it prints the verifier key of an Ed25519 key held in a PKCS#11 token
(the line verifiers trust; `--origin` is the log's name, which the token does not store), and
with `--generate` it first makes that key pair in the token, its private half not extractable.
"""

from __future__ import annotations

import argparse

from otel_audit import offline_cli
from otel_audit.errors import EXIT_OK, ConfigError
from otel_audit.offline_cli import KEYGEN_ARGUMENTS
from sealer.pkcs11_key import Pkcs11Signer, Pkcs11Uri, generate_key


def add_keygen_command(sub: argparse._SubParsersAction) -> None:
    keygen = sub.add_parser(
        "keygen",
        parents=[KEYGEN_ARGUMENTS],
        help="create an Ed25519 signer key for a log (a file, or in an HSM with --pkcs11)",
    )
    keygen.add_argument(
        "--pkcs11",
        metavar="URI",
        help="instead of a file: print the verifier key of the HSM key pkcs11:token=...;object=... "
        "(PIN from pin-source=file:... or OTEL_AUDIT_PKCS11_PIN)",
    )
    keygen.add_argument(
        "--generate",
        action="store_true",
        help="with --pkcs11: first create the Ed25519 key pair in the token",
    )
    keygen.set_defaults(run=cmd_keygen)


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.pkcs11 is None:
        if args.generate:
            raise ConfigError("--generate needs --pkcs11 URI (a key file is always generated)")
        return offline_cli.cmd_keygen(args)
    if args.out is not None:
        raise ConfigError("--out is for key files; an HSM key stays in its token (drop --out)")
    if args.witness:
        raise ConfigError(
            "--pkcs11 holds a log's signer key; a witness key is a file (--witness NAME --out FILE)"
        )
    uri = Pkcs11Uri.parse(args.pkcs11)
    if args.generate:
        generate_key(uri)
    signer = Pkcs11Signer(uri, args.origin)
    try:
        print(signer.verifier().serialize())
    finally:
        signer.close()
    return EXIT_OK
