"""`otel-audit witness serve`: run a tlog-witness for the logs in a trust list."""

from __future__ import annotations

import argparse
from pathlib import Path

from otel_audit.errors import EXIT_OK, ConfigError
from otel_audit.offline_cli import env, load_cosigner_key
from otel_audit.tlog_witness import parse_trusted_logs
from sealer.witness_server import PATH, Witness, serve


def add_witness_command(sub: argparse._SubParsersAction) -> None:
    witness = sub.add_parser("witness", help="run a witness that cosigns other logs' checkpoints")
    commands = witness.add_subparsers(dest="witness_command", required=True)
    run = commands.add_parser("serve", help="serve POST /add-checkpoint (c2sp.org/tlog-witness)")
    run.add_argument(
        "--key",
        type=Path,
        default=env("WITNESS_KEY"),
        help="witness key file from `otel-audit keygen --witness NAME` (env OTEL_AUDIT_WITNESS_KEY)",
    )
    run.add_argument(
        "--logs",
        type=Path,
        default=env("WITNESS_LOGS"),
        help="trusted logs: one log verifier key (origin+keyid+base64) a line (env OTEL_AUDIT_WITNESS_LOGS)",
    )
    run.add_argument(
        "--state",
        type=Path,
        default=env("WITNESS_STATE"),
        help="state file: the newest tree cosigned per log (env OTEL_AUDIT_WITNESS_STATE)",
    )
    run.add_argument(
        "--listen",
        default=env("WITNESS_LISTEN", "127.0.0.1:7380"),
        help="host:port to listen on, port 0 for any free one (env OTEL_AUDIT_WITNESS_LISTEN)",
    )
    run.set_defaults(run=cmd_witness_serve)


def cmd_witness_serve(args: argparse.Namespace) -> int:
    for flag in ("key", "logs", "state"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag} is required")
    try:
        trusted = parse_trusted_logs(args.logs.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read trusted logs {args.logs}: {exc}") from None
    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"--listen {args.listen!r} is not host:port")
    key = load_cosigner_key(args.key)
    witness = Witness(key, trusted, args.state)
    print(f"witness {key.verifier().serialize()}", flush=True)

    def announce(url: str) -> None:
        print(f"listening on {url}{PATH}", flush=True)

    serve(witness, host, int(port), announce)
    return EXIT_OK
