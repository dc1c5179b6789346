"""What the `otel-audit` commands share: where the log lives by default, the option groups
several commands take (--store, --anchor-dir, --cluster), and the verifier key plus anchors
that verify and restore check the log against.

Every default reads an OTEL_AUDIT_* environment variable (the flag wins).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from otel_audit.errors import ConfigError
from otel_audit.note import VerifierKey
from otel_audit.offline_cli import env, trusted_keys

PRIVATE_UMASK = 0o077  # what the store's engine, anchors and exports create is the user's alone
DATA_DIR = Path("otel-audit-data")
DEFAULT_ORIGIN = "otel-audit.local/audit"


def default_store() -> str:
    return "chdb://" + str((DATA_DIR / "store").resolve())


def default_anchor_dir() -> str:
    return str((DATA_DIR / "anchors").resolve())


def default_journal_dir() -> str:
    return str((DATA_DIR / "journal").resolve())


def located_options() -> argparse.ArgumentParser:
    """Where the log lives: the same two options, and defaults, for every command that reads it."""
    located = argparse.ArgumentParser(add_help=False)
    located.add_argument(
        "--store",
        default=env("STORE"),
        help="chdb:///path or http(s)://... (env OTEL_AUDIT_STORE; default chdb:// under ./otel-audit-data/)",
    )
    located.add_argument(
        "--anchor-dir",
        type=Path,
        default=env("ANCHOR_DIR"),
        help="anchored checkpoints, kept outside the database (env OTEL_AUDIT_ANCHOR_DIR; default "
        "./otel-audit-data/anchors; verify checks it when it exists)",
    )
    return located


def clustered_options() -> argparse.ArgumentParser:
    clustered = argparse.ArgumentParser(add_help=False)
    clustered.add_argument(
        "--cluster",
        default=env("CLUSTER"),
        help="ClickHouse cluster: ReplicatedMergeTree tables ON CLUSTER under Distributed ones "
        "(env OTEL_AUDIT_CLUSTER)",
    )
    return clustered


def keys_and_anchors(args: argparse.Namespace) -> tuple[VerifierKey, list[VerifierKey], Path | None]:
    """verify's keys (--key repeated and --trust: one log's keys, e.g. before and after a
    rotation) and the anchor directory as `key_and_anchors` finds it."""
    keys = trusted_keys(args.key, args.trust)
    if len({key.name for key in keys}) > 1:
        names = ", ".join(sorted({key.name for key in keys}))
        raise ConfigError(f"verify checks one log; the keys given are of several ({names})")
    return keys[0], keys[1:], _anchor_dir(args)


def _anchor_dir(args: argparse.Namespace) -> Path | None:
    anchor_dir = args.anchor_dir
    if anchor_dir is None and Path(default_anchor_dir()).is_dir():
        anchor_dir = Path(default_anchor_dir())
    return anchor_dir


def key_and_anchors(args: argparse.Namespace) -> tuple[VerifierKey, Path | None]:
    """The verifier key (required) and the anchor directory: the flag, else the default one
    if it exists (verify and restore check the log against both)."""
    if not args.key:
        raise ConfigError("--key is required: the verifier key `otel-audit keygen` printed")
    return VerifierKey.parse(args.key), _anchor_dir(args)
