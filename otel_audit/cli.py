"""The `otel-audit` command line: the edge where configuration is read and parts are wired.

Every option of `serve` and `verify` also reads an OTEL_AUDIT_* environment variable (the
flag wins). Exit codes: 0 success / intact, 1 an integrity check failed, 2 usage or
operational error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from backend.partitions import DEFAULT_RETENTION_YEARS, MINIMUM_RETENTION_YEARS

from .errors import AuditError, ConfigError, JournalError, ProofError
from .note import SignerKey, VerifierKey

if TYPE_CHECKING:  # the CLI imports the store only for the commands that need it
    from backend.commands import Result

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
PRIVATE_UMASK = 0o077  # what the store's engine, anchors and exports create is the user's alone
DATA_DIR = Path("otel-audit-data")
DEFAULT_ORIGIN = "otel-audit.local/audit"


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, as on Linux)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"OTEL_AUDIT_{name}", default)


def _default_min_free_disk() -> str:
    from sealer.disk import DEFAULT_MIN_FREE_BYTES, format_size

    return format_size(DEFAULT_MIN_FREE_BYTES).replace(" ", "")


def default_store() -> str:
    return "chdb://" + str((DATA_DIR / "store").resolve())


def default_anchor_dir() -> str:
    return str((DATA_DIR / "anchors").resolve())


def default_journal_dir() -> str:
    return str((DATA_DIR / "journal").resolve())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-audit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    keygen = sub.add_parser("keygen", help="create an Ed25519 signer key for a log")
    keygen.add_argument("--origin", required=True, help="the log's name, e.g. acme.example/audit")
    keygen.add_argument("--out", required=True, type=Path, help="signer key file to create (0600)")

    token = sub.add_parser("token", help="create a bearer token for a producer")
    token.add_argument("--name", required=True, help="the producer's name, sealed into its records")
    token.add_argument("--tokens", required=True, type=Path, help="token file to add it to (created 0600)")

    # Where the log lives: the same two options, and defaults, for every command that reads it.
    located = argparse.ArgumentParser(add_help=False)
    located.add_argument(
        "--store",
        default=_env("STORE"),
        help="chdb:///path or http(s)://... (env OTEL_AUDIT_STORE; default chdb:// under ./otel-audit-data/)",
    )
    located.add_argument(
        "--anchor-dir",
        type=Path,
        default=_env("ANCHOR_DIR"),
        help="anchored checkpoints, kept outside the database (env OTEL_AUDIT_ANCHOR_DIR; default "
        "./otel-audit-data/anchors; verify checks it when it exists)",
    )

    clustered = argparse.ArgumentParser(add_help=False)
    clustered.add_argument(
        "--cluster",
        default=_env("CLUSTER"),
        help="ClickHouse cluster: ReplicatedMergeTree tables ON CLUSTER under Distributed ones "
        "(env OTEL_AUDIT_CLUSTER)",
    )

    serve = sub.add_parser("serve", parents=[located, clustered], help="run the sealer (OTLP/gRPC receiver)")
    serve.add_argument(
        "--key",
        type=Path,
        default=_env("KEY"),
        help="signer key file (env OTEL_AUDIT_KEY; default: ./otel-audit-data/signer.key, created if absent)",
    )
    serve.add_argument(
        "--origin",
        default=_env("ORIGIN", DEFAULT_ORIGIN),
        help="origin for a key created by serve (env OTEL_AUDIT_ORIGIN)",
    )
    serve.add_argument(
        "--grpc",
        default=_env("GRPC", "127.0.0.1:4317"),
        help="OTLP/gRPC listen address (env OTEL_AUDIT_GRPC)",
    )
    serve.add_argument(
        "--http",
        default=_env("HTTP", "127.0.0.1:4318"),
        help="OTLP/HTTP listen address, or 'off' (env OTEL_AUDIT_HTTP)",
    )
    serve.add_argument(
        "--tokens",
        type=Path,
        default=_env("TOKENS"),
        help="producer token file: '<name> sha256:<digest>' lines, see `otel-audit token` "
        "(env OTEL_AUDIT_TOKENS)",
    )
    serve.add_argument("--tls-cert", type=Path, default=_env("TLS_CERT"), help="server certificate, PEM")
    serve.add_argument("--tls-key", type=Path, default=_env("TLS_KEY"), help="its private key, PEM")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=_env("TLS_CLIENT_CA"),
        help="CA of producer client certificates: mutual TLS on both listeners, every producer "
        "named by its certificate's subject",
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=_env("ALLOW_ANONYMOUS", "") == "true",
        help="accept producers with no identity on non-loopback listeners (sealed with no producer)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=_env("INSECURE", "") == "true",
        help="allow plaintext (no TLS) on non-loopback listeners",
    )
    serve.add_argument(
        "--incomplete-events",
        choices=("reject", "seal"),
        default=_env("INCOMPLETE_EVENTS", "reject"),
        help="audit events without actor, action or outcome: reject them (partial_success) or seal "
        "them and let verify report them (env OTEL_AUDIT_INCOMPLETE_EVENTS)",
    )
    serve.add_argument(
        "--metrics",
        default=_env("METRICS", "127.0.0.1:9464"),
        help="listen address for /metrics (Prometheus), /healthz and /readyz, or 'off' "
        "(env OTEL_AUDIT_METRICS)",
    )
    serve.add_argument(
        "--masking",
        type=Path,
        default=_env("MASKING"),
        help="masking rules (JSON): attribute values replaced by an HMAC token or [REDACTED] "
        "before sealing (env OTEL_AUDIT_MASKING)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=_env("WORKERS", str(min(4, _usable_cores()))),
        help="processes that prepare records for sealing, 0 for none (default: one per core "
        "this process may use, at most 4; env OTEL_AUDIT_WORKERS)",
    )
    serve.add_argument(
        "--checkpoint-interval",
        type=float,
        default=_env("CHECKPOINT_INTERVAL", "10"),  # argparse applies type= to a str default
        help="seconds between checkpoints (env OTEL_AUDIT_CHECKPOINT_INTERVAL)",
    )
    serve.add_argument(
        "--min-free-disk",
        default=_env("MIN_FREE_DISK"),
        help="embedded store: refuse records (retryable) while its file system has less free, e.g. "
        f"2GiB (default {_default_min_free_disk()}; env OTEL_AUDIT_MIN_FREE_DISK)",
    )

    serve.add_argument(
        "--journal",
        default=_env("JOURNAL"),
        help="directory of the journal, the durable copy of every acknowledged record, on another "
        "file system than the store; 'off' for none (env OTEL_AUDIT_JOURNAL; default "
        "./otel-audit-data/journal)",
    )
    serve.add_argument(
        "--journal-keep",
        default=_env("JOURNAL_KEEP"),
        help="keep journal segments a checkpoint signs for this long (7d, 12h) and/or delete them "
        "oldest first above a size (20GiB) (env OTEL_AUDIT_JOURNAL_KEEP; default 7d,20GiB)",
    )

    restore = sub.add_parser(
        "restore", parents=[located], help="put rows the store lost back from the journal (serve stopped)"
    )
    restore.add_argument(
        "--journal",
        default=_env("JOURNAL"),
        help="the journal directory serve wrote (env OTEL_AUDIT_JOURNAL; default ./otel-audit-data/journal)",
    )
    restore.add_argument(
        "--key",
        default=_env("VERIFIER_KEY"),
        help="verifier key origin+keyid+base64 (env OTEL_AUDIT_VERIFIER_KEY)",
    )

    verify = sub.add_parser("verify", parents=[located], help="verify a log in the store")
    verify.add_argument(
        "--key",
        default=_env("VERIFIER_KEY"),
        help="verifier key origin+keyid+base64 (env OTEL_AUDIT_VERIFIER_KEY)",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument(
        "--retention-years",
        type=float,
        default=float(_env("RETENTION_YEARS", str(DEFAULT_RETENTION_YEARS)) or DEFAULT_RETENTION_YEARS),
        help="the oldest months of the log may be missing only if older than this "
        f"(default {DEFAULT_RETENTION_YEARS}; env OTEL_AUDIT_RETENTION_YEARS)",
    )
    verify.add_argument(
        "--deep",
        action="store_true",
        help="decode every entry in Python and "
        "compare its columns, instead of checking the signed column commitments "
        "(slower; does not rely on the engine's hashing)",
    )
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
        default=int(_env("RETENTION_MIN_YEARS", str(MINIMUM_RETENTION_YEARS)) or MINIMUM_RETENTION_YEARS),
        help=f"refuse a shorter retention (default {MINIMUM_RETENTION_YEARS}, FINRA Rule 4511; "
        "env OTEL_AUDIT_RETENTION_MIN_YEARS)",
    )
    _add_read_commands(sub, located)
    bundle = sub.add_parser("verify-bundle", help="check an evidence bundle offline (no database)")
    bundle.add_argument("bundle", type=Path, help="the .bundle file `otel-audit export` wrote")
    bundle.add_argument(
        "--key",
        action="append",
        help="verifier key you trust, origin+keyid+base64; repeat for several logs "
        "(env OTEL_AUDIT_VERIFIER_KEY)",
    )
    bundle.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _add_read_commands(sub: argparse._SubParsersAction, located: argparse.ArgumentParser) -> None:
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


QUERY_LIMITS = {"seconds": "seconds", "memory_bytes": "bytes of memory", "result_rows": "result rows",
                "result_bytes": "result bytes"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "keygen": cmd_keygen,
        "token": cmd_token,
        "serve": cmd_serve,
        "verify": cmd_verify,
        "verify-bundle": cmd_verify_bundle,
        "migrate": cmd_migrate,
        "archive": cmd_archive,
        "restore": cmd_restore,
    }
    if "store" in vars(args):  # every command that may open the embedded store (--store)
        os.umask(PRIVATE_UMASK)  # before the engine creates a file: store, anchors, data dir
    try:
        if args.command in READ_COMMANDS:
            return cmd_read(args)
        return commands[args.command](args)
    except ProofError as exc:
        print(f"otel-audit {args.command}: FAILED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except AuditError as exc:
        print(f"otel-audit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _write_key(path: Path, key: SignerKey) -> None:
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
    _write_key(args.out, key)
    print(key.verifier().serialize())
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from sealer.auth import add_token

    print(add_token(args.tokens, args.name))
    print(
        f"added producer {args.name!r} to {args.tokens} (only a digest is kept); give the token above to "
        "the producer, it is not shown again",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from sealer.auth import TlsFiles
    from sealer.config import ServeConfig
    from sealer.disk import DEFAULT_MIN_FREE_BYTES, parse_size
    from sealer.http_receiver import PATH
    from sealer.journal import Keep
    from sealer.service import SealerService

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.checkpoint_interval <= 0:  # flags first: a refused command leaves nothing behind
        raise ConfigError("--checkpoint-interval must be a positive number of seconds")
    if args.workers < 0:
        raise ConfigError("--workers must be 0 (prepare records in the receiving thread) or more")
    min_free = parse_size(args.min_free_disk) if args.min_free_disk else DEFAULT_MIN_FREE_BYTES
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("give --tls-cert and --tls-key together")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
    key_path = args.key or DATA_DIR / "signer.key"
    if args.key is None and not key_path.exists():
        _write_key(key_path, SignerKey.generate(args.origin))
        print(f"created signer key {key_path.resolve()}", file=sys.stderr, flush=True)
    journal_keep = Keep.parse(args.journal_keep) if args.journal_keep else Keep()
    journal = args.journal or default_journal_dir()
    key = load_signer_key(key_path)
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    config = ServeConfig(
        store=args.store or default_store(),
        grpc_address=args.grpc,
        http_address=None if args.http.lower() in ("off", "none", "") else args.http,
        checkpoint_interval=args.checkpoint_interval,
        anchor_dir=Path(args.anchor_dir or default_anchor_dir()).resolve(),
        tokens_file=args.tokens,
        tls=tls,
        allow_anonymous=args.allow_anonymous,
        insecure=args.insecure,
        incomplete_events=args.incomplete_events,
        masking_rules=args.masking,
        metrics_address=None if args.metrics.lower() in ("off", "none", "") else args.metrics,
        cluster=args.cluster or None,
        workers=args.workers,
        journal_dir=None if journal.lower() in ("off", "none") else Path(journal).resolve(),
        journal_keep=journal_keep,
        min_free_disk_bytes=min_free,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = SealerService(config, key)
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    assert service.grpc is not None
    print(f"verifier key: {key.verifier().serialize()}", file=sys.stderr)
    print(
        f"store: {_redacted(config.store)}  anchors: {config.anchor_dir}  "
        f"journal: {config.journal_dir or 'off'}",
        file=sys.stderr,
    )
    if service.health is not None:
        print(
            f"otel-audit serve: metrics and health on http://{service.health.address}/metrics",
            file=sys.stderr,
        )
    scheme = "https" if config.tls else "http"
    http = f", OTLP/HTTP on {scheme}://{service.http.address}{PATH}" if service.http else ", OTLP/HTTP off"
    print(
        f"otel-audit serve: OTLP/gRPC listening on {service.grpc.address}{http}", file=sys.stderr, flush=True
    )
    while not stop.wait(1.0):
        pass
    print("otel-audit serve: stopping", file=sys.stderr, flush=True)
    service.stop()
    print("otel-audit serve: stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def _redacted(dsn: str) -> str:
    from backend.store import redact

    return redact(dsn)


def _key_and_anchors(args: argparse.Namespace) -> tuple[VerifierKey, Path | None]:
    """The verifier key (required) and the anchor directory: the flag, else the default one
    if it exists (verify and restore check the log against both)."""
    if not args.key:
        raise ConfigError("--key is required: the verifier key `otel-audit keygen` printed")
    anchor_dir = args.anchor_dir
    if anchor_dir is None and Path(default_anchor_dir()).is_dir():
        anchor_dir = Path(default_anchor_dir())
    return VerifierKey.parse(args.key), anchor_dir


def cmd_verify(args: argparse.Namespace) -> int:
    from backend.migrations import check_readable
    from backend.producer_report import producer_report
    from backend.readers import verify_origin
    from backend.store import Store

    key, anchor_dir = _key_and_anchors(args)
    dsn = args.store or default_store()
    store = Store.open(dsn)
    try:
        if not store.has_schema():
            raise ConfigError(f"store {_redacted(dsn)} holds no otel-audit log; check --store")
        check_readable(store)
        report = verify_origin(store, key, anchor_dir, deep=args.deep, retention_years=args.retention_years)
        origins = store.origins() if report.records == 0 else []
        producers = producer_report(store, key.name)
    finally:
        store.close()
    if args.json:
        print(json.dumps({**report.as_dict(), "producers": producers.as_dict()}, indent=2))
    else:
        status = "OK" if report.ok else "FAILED"
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
        for warning in report.warnings:
            print(f"WARNING: {warning}")
        for finding in report.findings:
            print(f"  {finding}")
        if report.findings_dropped:
            print(f"  ... and {report.findings_dropped} more findings")
        for line in producers.lines():  # what reached the log, not whether it was altered
            print(f"warning: {line}")
    return EXIT_OK if report.ok else EXIT_FAILED


def _listening(path: Path) -> bool:
    """Whether a process accepts connections on this Unix socket (not one left by a kill -9)."""
    import socket

    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def cmd_restore(args: argparse.Namespace) -> int:
    from backend.readers import verify_origin
    from backend.store import Store
    from sealer.read_api import socket_path
    from sealer.restore import restore

    key, anchor_dir = _key_and_anchors(args)
    journal = Path(args.journal or default_journal_dir())
    dsn = args.store or default_store()
    sock = socket_path(dsn)
    if sock is not None and _listening(sock):
        raise ConfigError(f"a sealer listens at {sock}: stop `otel-audit serve` on this store first")
    store = Store.open(dsn)
    try:
        if not store.has_schema():
            raise ConfigError(f"store {_redacted(dsn)} holds no otel-audit log; check --store")
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


READ_COMMANDS = ("search", "export", "proof", "consistency", "query", "status")


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
    keys = args.key if getattr(args, "key", None) else [k for k in [_env("VERIFIER_KEY")] if k]
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
    if args.command == "status":
        anchor_dir = args.anchor_dir or (
            Path(default_anchor_dir()) if Path(default_anchor_dir()).is_dir() else None
        )
        params["anchor_dir"] = str(Path(anchor_dir).resolve()) if anchor_dir else None
    return params


def _run_read(dsn: str, command: str, params: dict[str, object]) -> Result:
    """A read command in the running sealer if it owns the store, else on the store."""
    from backend.commands import run
    from backend.store import Store
    from sealer.read_api import call, socket_path

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
    from urllib.parse import quote

    from .bundle import verify_bundle

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


def cmd_migrate(args: argparse.Namespace) -> int:
    from backend.migrations import applied, set_retention
    from backend.store import Store

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
    print(f"store {_redacted(dsn)}: {done}; schema version {version}")
    if args.retention_years is not None:
        print(f"retention: each month of the log expires {args.retention_years} years after it ends")
    return EXIT_OK


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    from .bundle import verify_bundle

    texts = args.key or [k for k in [_env("VERIFIER_KEY")] if k]
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


if __name__ == "__main__":
    sys.exit(main())
