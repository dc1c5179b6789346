"""`otel-audit verify`: check a log in the store against its verifier key and anchors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.log_verifier import verify_origin
from backend.migrations import check_readable
from backend.partitions import DEFAULT_RETENTION_YEARS
from backend.producer_report import producer_report
from backend.store import Store, redact
from backend.witness_report import check_witnessed, notes_of
from otel_audit.errors import EXIT_FAILED, EXIT_OK, ConfigError
from otel_audit.offline_cli import (
    TRUST_HELP,
    TSA_ROOTS_FLAG,
    TSA_ROOTS_OPTIONS,
    env,
    load_policy,
    read_tsa_roots,
)
from sealer.witness_client import ask_witnesses

from .options import default_store, keys_and_anchors


def add_verify_command(sub: argparse._SubParsersAction, located: argparse.ArgumentParser) -> None:
    verify = sub.add_parser("verify", parents=[located], help="verify a log in the store")
    verify.add_argument(
        "--key",
        action="append",
        help="verifier key origin+keyid+base64 (env OTEL_AUDIT_VERIFIER_KEY); repeat for the log's "
        "keys before and after a rotation",
    )
    verify.add_argument("--trust", type=Path, help=TRUST_HELP)
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--retention-years",
        type=float,
        default=float(env("RETENTION_YEARS", str(DEFAULT_RETENTION_YEARS)) or DEFAULT_RETENTION_YEARS),
        help="the oldest months of the log may be missing only if older than this "
        f"(default {DEFAULT_RETENTION_YEARS}; "
        "env OTEL_AUDIT_RETENTION_YEARS)",
    )
    verify.add_argument(
        "--deep",
        action="store_true",
        help="decode every entry in Python and "
        "compare its columns, instead of checking the signed column commitments "
        "(slower; does not rely on the engine's hashing)",
    )
    verify.add_argument(
        "--policy",
        type=Path,
        default=env("WITNESS_POLICY"),
        help="tlog-policy file: the newest checkpoint relied on must carry cosignatures meeting "
        "its quorum (env OTEL_AUDIT_WITNESS_POLICY)",
    )
    verify.add_argument(
        "--ask-witnesses",
        action="store_true",
        help="with --policy: also show the store's newest checkpoint to each witness with a URL; "
        "one that holds a tree this log does not extend refuses it (an integrity failure)",
    )
    verify.add_argument(TSA_ROOTS_FLAG, **TSA_ROOTS_OPTIONS)  # type: ignore[arg-type]
    verify.set_defaults(run=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    if args.ask_witnesses and not args.policy:
        raise ConfigError("--ask-witnesses needs --policy (the witnesses and their URLs)")
    key, more_keys, anchor_dir = keys_and_anchors(args)
    tsa_roots = read_tsa_roots(args.tsa_roots) if args.tsa_roots else None
    dsn = args.store or default_store()
    store = Store.open(dsn)
    try:
        if not store.has_schema():
            raise ConfigError(f"store {redact(dsn)} holds no otel-audit log; check --store")
        check_readable(store)
        report = verify_origin(
            store,
            key,
            anchor_dir,
            deep=args.deep,
            retention_years=args.retention_years,
            more_keys=more_keys,
            tsa_roots=tsa_roots,
        )
        origins = store.origins() if report.records == 0 else []
        producers = producer_report(store, key.name)
        witnesses = (
            check_witnessed(
                store, key, load_policy(args.policy), notes_of(anchor_dir, key.name), report.signed_size
            )
            if args.policy
            else None
        )
        if witnesses is not None and args.ask_witnesses:
            refused, asked = ask_witnesses(store, key.name, load_policy(args.policy))
            witnesses.findings += refused
            witnesses.notes += asked
    finally:
        store.close()
    ok = report.ok and (witnesses is None or not witnesses.findings)
    if args.json:
        extra = {} if witnesses is None else {"witnesses": witnesses.as_dict(), "ok": ok}
        print(json.dumps({**report.as_dict(), "producers": producers.as_dict(), **extra}, indent=2))
    else:
        status = "OK" if ok else "FAILED"
        print(
            f"{status}: log {report.origin} ({report.mode}): {report.records} records, "
            f"{report.checkpoints_verified} checkpoints and {report.anchors_verified} anchors "
            f"verified ({report.anchors_consistent} proven extended by consistency proofs), "
            f"signed up to tree size {report.signed_size}"
        )
        if report.records == 0 and report.signed_size == 0:
            others = ", ".join(origins) or "none"
            print(f"note: the store holds no records of {report.origin} (origins in it: {others})")
        if report.expired_records:
            print(
                f"note: Seq 0..{report.expired_records - 1} expired under the retention policy (older than "
                f"{args.retention_years:g} years); the rest was verified from the signed checkpoint at "
                f"{report.expired_records}"
            )
        if report.unsigned_records:
            print(f"note: {report.unsigned_records} newest records are not yet covered by a checkpoint")
        for note in report.notes:
            print(f"note: {note}")
        for line in report.timestamps:
            print(f"time-stamped: {line}")
        for warning in report.warnings:
            print(f"WARNING: {warning}")
        for finding in report.findings:
            print(f"  {finding}")
        if report.findings_dropped:
            print(f"  ... and {report.findings_dropped} more findings")
        for line in producers.lines():  # what reached the log, not whether it was altered
            print(f"warning: {line}")
        if witnesses is not None:
            for line in witnesses.lines():
                print(line)
            for finding in witnesses.findings:
                print(f"  {finding}")
    return EXIT_OK if ok else EXIT_FAILED
