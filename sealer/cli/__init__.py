"""The `otel-audit` command line: the edge where configuration is read and parts are wired.

Every option of `serve` and `verify` also reads an OTEL_AUDIT_* environment variable (the
flag wins). Exit codes: 0 success / intact, 1 an integrity check failed, 2 usage or
operational error.

It sits above everything it calls, one module per group of commands: `service` (serve,
token), `maintenance` (migrate, restore), `verify`, `reads` (search, export, proof,
consistency, archive, status, query), `witness` (witness serve) and `options` (what they share). `keygen` and
`verify-bundle` come from the offline verifier's command line (otel_audit/offline_cli.py),
which an examiner runs without the engine or the server; `keys` adds HSM keys to keygen.
"""

from __future__ import annotations

import argparse
import os

from otel_audit.offline_cli import add_verify_bundle_command, run_command

from .keys import add_keygen_command
from .maintenance import add_migrate_command, add_restore_command
from .options import PRIVATE_UMASK, clustered_options, located_options
from .reads import add_read_commands
from .service import add_serve_command, add_token_command
from .verify import add_verify_command
from .witness import add_witness_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-audit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    located, clustered = located_options(), clustered_options()
    add_keygen_command(sub)
    add_token_command(sub)
    add_serve_command(sub, located, clustered)
    add_restore_command(sub, located)
    add_verify_command(sub, located)
    add_migrate_command(sub, located, clustered)
    add_read_commands(sub, located)
    add_verify_bundle_command(sub)
    add_witness_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "store" in vars(args):  # every command that may open the embedded store (--store)
        os.umask(PRIVATE_UMASK)  # before the engine creates a file: store, anchors, data dir
    return run_command(args)
