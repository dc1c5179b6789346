"""The offline verifier: check evidence bundles and make keys, with no database.

`otel-audit-verify` (and `python -m otel_audit`) is the command line of the base install: an
examiner checks an evidence bundle and makes or reads keys with nothing but this package and
its small dependencies: no engine, no gRPC, no server. The full `otel-audit` command
line (sealer/cli) adds `keygen` and `verify-bundle` from the definitions here, so both
commands read the same flags and print the same bytes. Exit codes: 0 success / intact,
1 an integrity check failed, 2 usage or operational error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .bundle import verify_bundle
from .errors import EXIT_FAILED, EXIT_OK, AuditError, ConfigError
from .note import SignerKey, VerifierKey

Command = Callable[[argparse.Namespace], int]


def env(name: str, default: str | None = None) -> str | None:
    """An OTEL_AUDIT_* environment variable: every command's flags default to one."""
    return os.environ.get(f"OTEL_AUDIT_{name}", default)


def _keygen_arguments() -> argparse.ArgumentParser:
    keygen = argparse.ArgumentParser(add_help=False)
    keygen.add_argument("--origin", required=True, help="the log's name, e.g. acme.example/audit")
    keygen.add_argument("--out", required=True, type=Path, help="signer key file to create (0600)")
    return keygen


def _verify_bundle_arguments() -> argparse.ArgumentParser:
    bundle = argparse.ArgumentParser(add_help=False)
    bundle.add_argument("bundle", type=Path, help="the .bundle file `otel-audit export` wrote")
    bundle.add_argument(
        "--key",
        action="append",
        help="verifier key you trust, origin+keyid+base64; repeat for several logs "
        "(env OTEL_AUDIT_VERIFIER_KEY)",
    )
    bundle.add_argument("--json", action="store_true", help="print the report as JSON")
    return bundle


# The one definition of each command's arguments; both command lines add them as parents, so
# their argparse actions are these very objects.
KEYGEN_ARGUMENTS = _keygen_arguments()
VERIFY_BUNDLE_ARGUMENTS = _verify_bundle_arguments()


def add_keygen_command(sub: argparse._SubParsersAction) -> None:
    keygen = sub.add_parser(
        "keygen", parents=[KEYGEN_ARGUMENTS], help="create an Ed25519 signer key for a log"
    )
    keygen.set_defaults(run=cmd_keygen)


def add_verify_bundle_command(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser(
        "verify-bundle",
        parents=[VERIFY_BUNDLE_ARGUMENTS],
        help="check an evidence bundle offline (no database)",
    )
    bundle.set_defaults(run=cmd_verify_bundle)


def write_key(path: Path, key: SignerKey) -> None:
    """Create a signer key file readable by its owner only; never overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; refusing to overwrite a signer key") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.serialize() + "\n")


def load_signer_key(path: Path) -> SignerKey:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read signer key {path}: {exc}") from None
    return SignerKey.parse(text)


def cmd_keygen(args: argparse.Namespace) -> int:
    key = SignerKey.generate(args.origin)
    write_key(args.out, key)
    print(key.verifier().serialize())
    return EXIT_OK


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    texts = args.key or [k for k in [env("VERIFIER_KEY")] if k]
    if not texts:
        raise ConfigError("--key is required: the verifier key you trust, from the log's operator")
    keys = [VerifierKey.parse(k) for k in texts]
    try:
        data = args.bundle.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.bundle}: {exc.strerror}") from None
    report = verify_bundle(data, keys)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return EXIT_OK if report.ok else EXIT_FAILED
    signed = ", ".join(f"{o} at tree size {n}" for o, n in sorted(report.checkpoints.items())) or "none"
    status = "OK" if report.ok else "FAILED"
    proven = f"{report.records_verified} of {report.records} records proven"
    print(f"{status}: {proven} (signed checkpoints: {signed})")
    for origin, runs in sorted(report.ranges.items()):
        print(f"  {origin}: Seq " + ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs))
    for finding in report.findings:
        print(f"  {finding}")
    print("not covered by any proof:")
    for item in report.unproven:
        print(f"  {item}")
    return EXIT_OK if report.ok else EXIT_FAILED


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; an error exits with its class's `exit_code` (otel_audit/errors.py):
    1 a failed check, 2 a usage or operational error."""
    try:
        return int(args.run(args))
    except AuditError as exc:
        word = "FAILED" if exc.exit_code == EXIT_FAILED else "error"
        print(f"otel-audit {args.command}: {word}: {exc}", file=sys.stderr)
        return exc.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-audit-verify", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_keygen_command(sub)
    add_verify_bundle_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))
