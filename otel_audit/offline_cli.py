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

from cryptography import x509

from .bundle import verify_bundle
from .cosignature import CosignerKey
from .errors import EXIT_FAILED, EXIT_OK, AuditError, ConfigError, FormatError
from .note import SignerKey, VerifierKey
from .timestamp import load_roots
from .witness_policy import Policy
from .witnessed import witnessed

Command = Callable[[argparse.Namespace], int]


def env(name: str, default: str | None = None) -> str | None:
    """An OTEL_AUDIT_* environment variable: every command's flags default to one."""
    return os.environ.get(f"OTEL_AUDIT_{name}", default)


TRUST_HELP = "file of verifier keys you trust, one per line (# comments); with or instead of --key"


def read_trust_file(path: Path) -> list[VerifierKey]:
    """The verifier keys of a trust file: one per line, blank lines and # comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read trust file {path}: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                keys.append(VerifierKey.parse(text))
            except FormatError as exc:
                raise ConfigError(f"{path}:{number}: {exc}") from None
    if not keys:
        raise ConfigError(f"trust file {path} lists no verifier key")
    return keys


def trusted_keys(texts: list[str] | None, trust: Path | None) -> list[VerifierKey]:
    """The keys of --key (else OTEL_AUDIT_VERIFIER_KEY) and of --trust, in that order, once each."""
    texts = texts or [k for k in [env("VERIFIER_KEY")] if k]
    keys = [VerifierKey.parse(k) for k in texts] + (read_trust_file(trust) if trust else [])
    if not keys:
        raise ConfigError(
            "--key is required: the verifier key you trust, from the log's operator (or --trust FILE)"
        )
    return list(dict.fromkeys(keys))


TSA_ROOTS_FLAG = "--tsa-roots"
TSA_ROOTS_OPTIONS = {
    "type": Path,
    "default": env("TSA_ROOTS"),
    "help": "PEM certificates of the RFC 3161 time-stamp authorities you trust: every token is "
    "checked against them (env OTEL_AUDIT_TSA_ROOTS)",
}


def read_tsa_roots(path: Path) -> tuple[x509.Certificate, ...]:
    """The certificates of a `--tsa-roots` file."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {TSA_ROOTS_FLAG} {path}: {exc.strerror}") from None
    return load_roots(pem, str(path))


def _keygen_arguments() -> argparse.ArgumentParser:
    keygen = argparse.ArgumentParser(add_help=False)
    whose = keygen.add_mutually_exclusive_group(required=True)
    whose.add_argument("--origin", help="the log's name, e.g. acme.example/audit")
    whose.add_argument(
        "--witness",
        metavar="NAME",
        help="make a witness's cosignature/v1 key instead, e.g. witness.acme.example/compliance",
    )
    keygen.add_argument("--out", type=Path, help="signer key file to create (0600); required")
    return keygen


def _verify_bundle_arguments() -> argparse.ArgumentParser:
    bundle = argparse.ArgumentParser(add_help=False)
    bundle.add_argument("bundle", type=Path, help="the .bundle file `otel-audit export` wrote")
    bundle.add_argument(
        "--key",
        action="append",
        help="verifier key you trust, origin+keyid+base64; repeat for several logs or a log's old "
        "and new keys (env OTEL_AUDIT_VERIFIER_KEY)",
    )
    bundle.add_argument("--trust", type=Path, help=TRUST_HELP)
    bundle.add_argument("--json", action="store_true", help="print the report as JSON")
    bundle.add_argument(
        "--policy",
        type=Path,
        help="tlog-policy file: each checkpoint in the bundle must carry cosignatures meeting its quorum",
    )
    bundle.add_argument(TSA_ROOTS_FLAG, **TSA_ROOTS_OPTIONS)  # type: ignore[arg-type]
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


def write_key(path: Path, key: SignerKey | CosignerKey) -> None:
    """Create a signer key file readable by its owner only; never overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists; refusing to overwrite a signer key") from None
    with os.fdopen(fd, "w") as f:
        f.write(key.serialize() + "\n")


def read_text_file(path: Path, what: str) -> str:
    """A small text file named on the command line (a key, a policy); ConfigError naming `what`
    and the path when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None


def load_signer_key(path: Path) -> SignerKey:
    return SignerKey.parse(read_text_file(path, "signer key"))


def load_cosigner_key(path: Path) -> CosignerKey:
    return CosignerKey.parse(read_text_file(path, "witness key"))


def load_policy(path: Path) -> Policy:
    """A tlog-policy file (--witness-policy, --policy)."""
    return Policy.parse(read_text_file(path, "policy"))


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.out is None:
        raise ConfigError("--out is required: the signer key file to create")
    key = CosignerKey.generate(args.witness) if args.witness else SignerKey.generate(args.origin)
    write_key(args.out, key)
    print(key.verifier().serialize())
    return EXIT_OK


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    keys = trusted_keys(args.key, args.trust)
    try:
        data = args.bundle.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {args.bundle}: {exc.strerror}") from None
    report = verify_bundle(data, keys, read_tsa_roots(args.tsa_roots) if args.tsa_roots else ())
    witness_lines, witness_failures = (
        _bundle_witnesses(report.checkpoint_notes, load_policy(args.policy), keys)
        if args.policy
        else ([], [])
    )
    ok = report.ok and not witness_failures
    if args.json:
        extra = (
            {"witnesses": witness_lines, "witness_failures": witness_failures, "ok": ok}
            if args.policy
            else {}
        )
        print(json.dumps({**report.as_dict(), **extra}, indent=2))
        return EXIT_OK if ok else EXIT_FAILED
    signed = ", ".join(f"{o} at tree size {n}" for o, n in sorted(report.checkpoints.items())) or "none"
    status = "OK" if ok else "FAILED"
    proven = f"{report.records_verified} of {report.records} records proven"
    print(f"{status}: {proven} (signed checkpoints: {signed})")
    for origin, runs in sorted(report.ranges.items()):
        print(f"  {origin}: Seq " + ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs))
    for origin, signers in sorted(report.signed_by.items()):
        print(f"  {origin}: checkpoint signed by {', '.join(signers)}")
    for line in report.timestamps:
        print(f"  time-stamped: {line}")
    for finding in report.findings:
        print(f"  {finding}")
    for line in witness_lines:
        print(line)
    for failure in witness_failures:
        print(f"  witness_quorum: {failure}")
    print("not covered by any proof:")
    for item in report.unproven:
        print(f"  {item}")
    return EXIT_OK if ok else EXIT_FAILED


def _bundle_witnesses(
    notes: dict[str, str], policy: Policy, keys: list[VerifierKey]
) -> tuple[list[str], list[str]]:
    """(report lines, failures): each checkpoint relied on must meet the policy's quorum."""
    lines, failures = [f"witness quorum: {policy.describe_quorum()}"], []
    for origin, text in sorted(notes.items()):
        try:
            seen = witnessed(text, policy, tuple(keys))
        except AuditError as exc:
            failures.append(f"checkpoint of {origin}: {exc}")
            continue
        lines.append(f"witnessed: {origin} {seen.describe()}")
        if not seen.quorum_met:
            failures.append(
                f"checkpoint of {origin} at tree size {seen.checkpoint.tree_size} does not meet the "
                f"quorum ({policy.describe_quorum()})"
            )
    return lines, failures


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
