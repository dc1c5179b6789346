"""The read commands (search, export, proof, consistency, query, status) and `archive`.

Each runs in the running sealer when `otel-audit serve` owns the store (sealer/read_api.py),
else on a read-only connection of its own: backend/read_commands.py either way.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from backend.read_commands import Result, run
from backend.store import Store
from backend.witness_report import notes_of
from otel_audit.bundle import verify_bundle
from otel_audit.errors import EXIT_FAILED, EXIT_OK, ConfigError
from otel_audit.note import VerifierKey
from otel_audit.offline_cli import env, load_policy
from otel_audit.witnessed import newest_witnessed
from sealer.read_api import call, socket_path

from .options import default_anchor_dir, default_store


def add_read_commands(sub: argparse._SubParsersAction, located: argparse.ArgumentParser) -> None:
    """search, export, proof, consistency, query: read-only, also while serve runs."""
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument(
        "--key",
        action="append",
        help="verifier key origin+keyid+base64, to check signatures; repeat for several logs "
        "(env OTEL_AUDIT_VERIFIER_KEY)",
    )
    keyed.add_argument("--origin", help="which log, when the store holds several (default: the key's)")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "--since", help="events at or after this time: 2026-03-03 or 2026-03-03T09:30:00Z (UTC)"
    )
    filters.add_argument("--until", help="events before this time (exclusive), same forms as --since")
    filters.add_argument("--user", dest="actor", help="the actor: attribute user.id")
    filters.add_argument("--action", help="attribute audit.action, e.g. order.place")
    filters.add_argument("--outcome", help="attribute audit.outcome, e.g. success or failure")
    filters.add_argument("--service", help="service.name of the producer")
    filters.add_argument("--resource", help="attribute audit.resource, e.g. order/42")
    filters.add_argument("--event", help="the record's event name")
    filters.add_argument("--text", help="words in the body (case-insensitive substring)")

    search = sub.add_parser(
        "search", parents=[located, filters], help="find records by time, user, action, ... (time order)"
    )
    search.add_argument("--origin", help="only this log")
    search.add_argument("--limit", type=int, default=1000, help="at most this many records (default 1000)")
    search.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    export = sub.add_parser(
        "export", parents=[located, filters, keyed], help="write an offline-verifiable evidence bundle"
    )
    export.add_argument("--out", type=Path, required=True, help="the bundle file to create (a zip)")
    export.add_argument(
        "--policy",
        type=Path,
        help="tlog-policy file: prove against the newest checkpoint whose cosignatures (from the "
        "anchor directory) meet its quorum, and carry them in the bundle",
    )

    proof = sub.add_parser(
        "proof", parents=[located, keyed], help="C2SP tlog-proof of one record against the newest checkpoint"
    )
    proof.add_argument("--seq", type=int, required=True, help="the record's Seq")
    proof.add_argument("--tree-size", type=int, help="prove against the checkpoint of this size instead")
    proof.add_argument("--json", action="store_true", help="print JSON instead of the tlog-proof text")

    consistency = sub.add_parser(
        "consistency", parents=[located, keyed], help="RFC 9162 proof that a checkpoint extends an older one"
    )
    consistency.add_argument("--from", dest="old", type=int, required=True, help="the older tree size")
    consistency.add_argument(
        "--to", dest="new", type=int, help="the newer checkpoint's size (default: newest)"
    )
    consistency.add_argument("--json", action="store_true", help="print JSON")

    archive = sub.add_parser(
        "archive",
        parents=[located, keyed],
        help="write each month sealed before --before as a verifiable bundle, for WORM storage",
    )
    archive.add_argument("--before", required=True, help="archive the months before this one: 2019-06")
    archive.add_argument("--out", type=Path, required=True, help="directory: <out>/<origin>/<YYYYMM>.bundle")

    status = sub.add_parser(
        "status",
        parents=[located, keyed],
        help="the log's size, newest checkpoint and its age, anchors, producers",
    )
    status.add_argument("--json", action="store_true", help="print JSON")

    query = sub.add_parser(
        "query", parents=[located], help="read-only SQL over the otel_audit tables (see README: Query)"
    )
    query.add_argument("sql", help="e.g. 'SELECT ServiceName, count() FROM otel_audit.logs GROUP BY 1'")
    query.add_argument(
        "--format",
        default="PrettyCompactMonoBlock",
        help="ClickHouse output format (e.g. TSVWithNames, JSONEachRow); a FORMAT clause in the SQL wins",
    )
    # Each limit's default is also its ceiling (backend/user_sql.py QueryLimits): these only lower it.
    for name, what in QUERY_LIMITS.items():
        query.add_argument(
            "--max-" + name.replace("_", "-"),
            dest=f"limit_{name}",
            type=int,
            help=f"stop the query beyond this many {what} (lower than the default only)",
        )
    for parser in (search, export, proof, consistency, status, query):
        parser.set_defaults(run=cmd_read)
    archive.set_defaults(run=cmd_archive)


QUERY_LIMITS = {"seconds": "seconds", "memory_bytes": "bytes of memory", "result_rows": "result rows",
                "result_bytes": "result bytes"}  # fmt: skip


def parse_time(text: str | None, flag: str) -> int | None:
    """Unix nanoseconds of an ISO 8601 date or time; a time without a zone is UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{flag} {text!r}: use a date (2026-03-03) or time (2026-03-03T09:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def _read_params(args: argparse.Namespace) -> dict[str, object]:
    keys = args.key if getattr(args, "key", None) else [k for k in [env("VERIFIER_KEY")] if k]
    for key in keys:
        VerifierKey.parse(key)  # a usage error here, not in the sealer
    params: dict[str, object] = {"keys": keys, "origin": getattr(args, "origin", None)}
    if args.command in ("search", "export"):
        fields = ("actor", "action", "outcome", "service", "resource", "event", "text", "origin")
        search = {name: getattr(args, name) for name in fields if getattr(args, name, None) is not None}
        search["since_ns"] = parse_time(args.since, "--since")
        search["until_ns"] = parse_time(args.until, "--until")
        params["search"] = {k: v for k, v in search.items() if v is not None}
    for name in ("limit", "json", "seq", "tree_size", "old", "new", "sql", "format"):
        if hasattr(args, name):
            params[name] = getattr(args, name)
    if args.command == "query":
        limits = {name: getattr(args, f"limit_{name}") for name in QUERY_LIMITS}
        params["limits"] = {name: value for name, value in limits.items() if value is not None}
    if args.command == "export" and args.policy is not None:
        params["witnessed"] = _witnessed(args, keys)
    if args.command == "status":
        anchor_dir = args.anchor_dir or (
            Path(default_anchor_dir()) if Path(default_anchor_dir()).is_dir() else None
        )
        params["anchor_dir"] = str(Path(anchor_dir).resolve()) if anchor_dir else None
    return params


def _witnessed(args: argparse.Namespace, keys: list[str]) -> dict[str, str]:
    """Origin -> the newest cosigned note meeting the policy's quorum, for `export --policy`."""
    policy = load_policy(args.policy)
    anchor_dir = args.anchor_dir or Path(default_anchor_dir())
    found = {}
    for text in keys:
        key = VerifierKey.parse(text)
        best, _ = newest_witnessed(notes_of(anchor_dir, key.name), policy, (key,))
        if best is None:
            raise ConfigError(
                f"no checkpoint of {key.name} in {anchor_dir} meets the quorum of {args.policy}"
            )
        found[key.name] = best.text
    return found


def _run_read(dsn: str, command: str, params: dict[str, object]) -> Result:
    """A read command in the running sealer if it owns the store, else on the store."""
    path = socket_path(dsn)
    result = call(path, command, params) if path is not None and path.exists() else None
    if result is None:
        store = Store.open(dsn, read_only=True)
        try:
            result = run(store, command, params)
        finally:
            store.close()
    return result


def cmd_read(args: argparse.Namespace) -> int:
    if args.command == "export" and args.out.exists():
        raise ConfigError(f"{args.out} exists; an evidence bundle is never overwritten, choose another name")
    result = _run_read(args.store or default_store(), args.command, _read_params(args))
    if args.command == "export":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "xb") as f:
            f.write(result.out)
        result.notes.insert(0, f"wrote {args.out} ({len(result.out)} bytes)")
    else:
        sys.stdout.buffer.write(result.out)
        sys.stdout.flush()
    for note in result.notes:
        print(f"otel-audit {args.command}: {note}", file=sys.stderr)
    return result.code


def cmd_archive(args: argparse.Namespace) -> int:
    """Each month before --before, per log, as an evidence bundle; each checked once written."""
    if not re.fullmatch(r"\d{4}-\d{2}", args.before):
        raise ConfigError(f"--before {args.before!r}: give a month, e.g. 2019-06")
    params = _read_params(args)
    keys = [VerifierKey.parse(str(k)) for k in params["keys"]]  # type: ignore[attr-defined]
    if not keys:
        raise ConfigError("--key is required: the verifier key of each log to archive")
    dsn = args.store or default_store()
    months = json.loads(_run_read(dsn, "partitions", params).out)
    before = args.before.replace("-", "")
    failed = 0
    for month in (m for m in months if m["month"] < before):
        target = args.out / quote(month["origin"], safe="") / f"{month['month']}.bundle"
        if target.exists():
            print(f"{target}: already archived, left as it is")
            continue
        search = {"origin": month["origin"], "sealed_from_ns": month["sealed_from_ns"],
                  "sealed_until_ns": month["sealed_until_ns"]}  # fmt: skip
        bundle = _run_read(dsn, "export", {**params, "search": search}).out
        report = verify_bundle(bundle, keys)
        expected = [(month["first_seq"], month["last_seq"])]
        if not report.ok or report.ranges.get(month["origin"]) != expected:
            failed += 1
            print(f"{target}: NOT written: the bundle does not prove Seq {expected[0][0]}..{expected[0][1]}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as f:
            f.write(bundle)
        target.chmod(0o444)
        print(f"{target}: {month['records']} records, Seq {expected[0][0]}..{expected[0][1]}, verified")
    return EXIT_FAILED if failed else EXIT_OK
