"""The store's upkeep: `migrate` (apply the schema the store lacks) and `restore` (put rows
the store lost back from the journal, with serve stopped)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from backend.log_verifier import verify_origin
from backend.migrations import applied, set_retention
from backend.partitions import DEFAULT_RETENTION_YEARS, MINIMUM_RETENTION_YEARS
from backend.store import Store, redact
from otel_audit.errors import EXIT_FAILED, EXIT_OK, ConfigError, JournalError
from otel_audit.offline_cli import env
from sealer.read_api import socket_path
from sealer.restore import restore

from .options import default_journal_dir, default_store, key_and_anchors


def add_restore_command(sub: argparse._SubParsersAction, located: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "restore", parents=[located], help="put rows the store lost back from the journal (serve stopped)"
    )
    parser.add_argument(
        "--journal",
        default=env("JOURNAL"),
        help="the journal directory serve wrote (env OTEL_AUDIT_JOURNAL; default ./otel-audit-data/journal)",
    )
    parser.add_argument(
        "--key",
        default=env("VERIFIER_KEY"),
        help="verifier key origin+keyid+base64 (env OTEL_AUDIT_VERIFIER_KEY)",
    )
    parser.set_defaults(run=cmd_restore)


def add_migrate_command(
    sub: argparse._SubParsersAction, located: argparse.ArgumentParser, clustered: argparse.ArgumentParser
) -> None:
    migrate = sub.add_parser(
        "migrate", parents=[located, clustered], help="apply the schema migrations the store lacks"
    )
    migrate.add_argument(
        "--retention-years",
        type=int,
        help=f"keep each month of the log this many years after it ends (default {DEFAULT_RETENTION_YEARS})",
    )
    migrate.add_argument(
        "--retention-min-years",
        type=int,
        default=int(env("RETENTION_MIN_YEARS", str(MINIMUM_RETENTION_YEARS)) or MINIMUM_RETENTION_YEARS),
        help=f"refuse a shorter retention (default {MINIMUM_RETENTION_YEARS}, FINRA Rule 4511; "
        "env OTEL_AUDIT_RETENTION_MIN_YEARS)",
    )
    migrate.set_defaults(run=cmd_migrate)


def _listening(path: Path) -> bool:
    """Whether a process accepts connections on this Unix socket (not one left by a kill -9)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def cmd_restore(args: argparse.Namespace) -> int:
    key, anchor_dir = key_and_anchors(args)
    journal = Path(args.journal or default_journal_dir())
    dsn = args.store or default_store()
    sock = socket_path(dsn)
    if sock is not None and _listening(sock):
        raise ConfigError(f"a sealer listens at {sock}: stop `otel-audit serve` on this store first")
    store = Store.open(dsn)
    try:
        if not store.has_schema():
            raise ConfigError(f"store {redact(dsn)} holds no otel-audit log; check --store")
        try:
            restored = restore(store, journal, key, anchor_dir)
        except JournalError as exc:
            print(f"otel-audit restore: FAILED: {exc}", file=sys.stderr)
            return EXIT_FAILED
        report = verify_origin(store, key, anchor_dir)
    finally:
        store.close()
    if not restored.ranges:
        print(f"nothing to restore: the store lacks no record of {key.name} that the journal holds")
    for first, end in restored.ranges:
        print(f"restored Seq {first}..{end - 1} ({end - first} records) from {journal}")
    status = "OK" if report.ok else "FAILED"
    print(f"verify: {status}: {report.records} records, signed up to tree size {report.signed_size}")
    for finding in report.findings:
        print(f"  {finding}")
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_migrate(args: argparse.Namespace) -> int:
    dsn = args.store or default_store()
    store = Store.open(dsn, cluster=args.cluster or None)
    try:
        names = store.ensure_schema()
        version = max(applied(store))
        if args.retention_years is not None:
            set_retention(store, args.retention_years, args.retention_min_years)
    finally:
        store.close()
    done = f"applied {', '.join(names)}" if names else "nothing to apply"
    print(f"store {redact(dsn)}: {done}; schema version {version}")
    if args.retention_years is not None:
        print(f"retention: each month of the log expires {args.retention_years} years after it ends")
    return EXIT_OK
