"""The service commands: `serve` (the sealer) and `token` (a producer's bearer token)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from cryptography import x509

from backend.store import redact
from otel_audit.errors import EXIT_OK, ConfigError
from otel_audit.note import SignerKey
from otel_audit.offline_cli import env, load_policy, read_tsa_roots, write_key
from sealer.auth import TlsFiles, add_token
from sealer.config import ServeConfig
from sealer.disk import DEFAULT_MIN_FREE_BYTES, format_size, parse_size
from sealer.http_receiver import PATH
from sealer.journal import Keep
from sealer.service import SealerService
from sealer.signing import load_signer

from .options import (
    DATA_DIR,
    DEFAULT_ORIGIN,
    default_anchor_dir,
    default_journal_dir,
    default_store,
)


def _usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one, as on Linux)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _default_min_free_disk() -> str:
    return format_size(DEFAULT_MIN_FREE_BYTES).replace(" ", "")


def add_token_command(sub: argparse._SubParsersAction) -> None:
    token = sub.add_parser("token", help="create a bearer token for a producer")
    token.add_argument("--name", required=True, help="the producer's name, sealed into its records")
    token.add_argument("--tokens", required=True, type=Path, help="token file to add it to (created 0600)")
    token.set_defaults(run=cmd_token)


def add_serve_command(
    sub: argparse._SubParsersAction, located: argparse.ArgumentParser, clustered: argparse.ArgumentParser
) -> None:
    serve = sub.add_parser("serve", parents=[located, clustered], help="run the sealer (OTLP/gRPC receiver)")
    serve.add_argument(
        "--key",
        default=env("KEY"),
        help="signer key file, or an HSM key as a PKCS#11 URI pkcs11:token=...;object=... (PIN from "
        "pin-source=file:... or OTEL_AUDIT_PKCS11_PIN) (env OTEL_AUDIT_KEY; default: "
        "./otel-audit-data/signer.key, created if absent)",
    )
    serve.add_argument(
        "--previous-key",
        default=env("PREVIOUS_KEY"),
        help="key rotation: the key file or PKCS#11 URI the log was signed with before --key; the first "
        "checkpoint --key signs is signed by both and announces the new key (env OTEL_AUDIT_PREVIOUS_KEY)",
    )
    serve.add_argument(
        "--origin",
        default=env("ORIGIN", DEFAULT_ORIGIN),
        help="origin for a key created by serve, and the log name of a PKCS#11 key (env OTEL_AUDIT_ORIGIN)",
    )
    serve.add_argument(
        "--grpc",
        default=env("GRPC", "127.0.0.1:4317"),
        help="OTLP/gRPC listen address (env OTEL_AUDIT_GRPC)",
    )
    serve.add_argument(
        "--http",
        default=env("HTTP", "127.0.0.1:4318"),
        help="OTLP/HTTP listen address, or 'off' (env OTEL_AUDIT_HTTP)",
    )
    serve.add_argument(
        "--tokens",
        type=Path,
        default=env("TOKENS"),
        help="producer token file: '<name> sha256:<digest>' lines, see `otel-audit token` "
        "(env OTEL_AUDIT_TOKENS)",
    )
    serve.add_argument("--tls-cert", type=Path, default=env("TLS_CERT"), help="server certificate, PEM")
    serve.add_argument("--tls-key", type=Path, default=env("TLS_KEY"), help="its private key, PEM")
    serve.add_argument(
        "--tls-client-ca",
        type=Path,
        default=env("TLS_CLIENT_CA"),
        help="CA of producer client certificates: mutual TLS on both listeners, every producer "
        "named by its certificate's subject",
    )
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=env("ALLOW_ANONYMOUS", "") == "true",
        help="accept producers with no identity on non-loopback listeners (sealed with no producer)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=env("INSECURE", "") == "true",
        help="allow plaintext (no TLS) on non-loopback listeners",
    )
    serve.add_argument(
        "--incomplete-events",
        choices=("reject", "seal"),
        default=env("INCOMPLETE_EVENTS", "reject"),
        help="audit events without actor, action or outcome: reject them (partial_success) or seal "
        "them and let verify report them (env OTEL_AUDIT_INCOMPLETE_EVENTS)",
    )
    serve.add_argument(
        "--metrics",
        default=env("METRICS", "127.0.0.1:9464"),
        help="listen address for /metrics (Prometheus), /healthz and /readyz, or 'off' "
        "(env OTEL_AUDIT_METRICS)",
    )
    serve.add_argument(
        "--masking",
        type=Path,
        default=env("MASKING"),
        help="masking rules (JSON): attribute values replaced by an HMAC token or [REDACTED] "
        "before sealing (env OTEL_AUDIT_MASKING)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=env("WORKERS", str(min(4, _usable_cores()))),
        help="processes that prepare records for sealing, 0 for none (default: one per core "
        "this process may use, at most 4; env OTEL_AUDIT_WORKERS)",
    )
    serve.add_argument(
        "--checkpoint-interval",
        type=float,
        default=env("CHECKPOINT_INTERVAL", "10"),  # argparse applies type= to a str default
        help="seconds between checkpoints (env OTEL_AUDIT_CHECKPOINT_INTERVAL)",
    )
    serve.add_argument(
        "--min-free-disk",
        default=env("MIN_FREE_DISK"),
        help="embedded store: refuse records (retryable) while its file system has less free, e.g. "
        f"2GiB (default {_default_min_free_disk()}; env OTEL_AUDIT_MIN_FREE_DISK)",
    )

    serve.add_argument(
        "--journal",
        default=env("JOURNAL"),
        help="directory of the journal, the durable copy of every acknowledged record, on another "
        "file system than the store; 'off' for none (env OTEL_AUDIT_JOURNAL; default "
        "./otel-audit-data/journal)",
    )
    serve.add_argument(
        "--journal-keep",
        default=env("JOURNAL_KEEP"),
        help="keep journal segments a checkpoint signs for this long (7d, 12h) and/or delete them "
        "oldest first above a size (20GiB) (env OTEL_AUDIT_JOURNAL_KEEP; default 7d,20GiB)",
    )
    serve.add_argument(
        "--witness-policy",
        type=Path,
        default=env("WITNESS_POLICY"),
        help="tlog-policy file naming the witnesses (with URLs) to ask for cosignatures "
        "(env OTEL_AUDIT_WITNESS_POLICY)",
    )
    serve.add_argument(
        "--witness-interval",
        type=float,
        default=env("WITNESS_INTERVAL", "60"),
        help="seconds between add-checkpoint rounds to the witnesses (env OTEL_AUDIT_WITNESS_INTERVAL)",
    )
    serve.add_argument(
        "--tsa",
        action="append",
        default=[u for u in (env("TSA") or "").split(",") if u],
        help="URL of an RFC 3161 time-stamp authority; repeat for several (env OTEL_AUDIT_TSA, "
        "comma-separated). Each is asked for a token over the newest checkpoint every "
        "--timestamp-interval and at shutdown",
    )
    serve.add_argument(
        "--tsa-roots",
        type=Path,
        default=env("TSA_ROOTS"),
        help="PEM certificates the TSAs' tokens must chain to (env OTEL_AUDIT_TSA_ROOTS; needed with --tsa)",
    )
    serve.add_argument(
        "--timestamp-interval",
        type=float,
        default=env("TIMESTAMP_INTERVAL", "60"),
        help="seconds between time-stamp requests to each TSA (env OTEL_AUDIT_TIMESTAMP_INTERVAL)",
    )
    serve.set_defaults(run=cmd_serve)


def cmd_token(args: argparse.Namespace) -> int:
    print(add_token(args.tokens, args.name))
    print(
        f"added producer {args.name!r} to {args.tokens} (only a digest is kept); give the token above to "
        "the producer, it is not shown again",
        file=sys.stderr,
    )
    return EXIT_OK


def _tsa_roots(args: argparse.Namespace) -> tuple[x509.Certificate, ...]:
    """The roots `--tsa` tokens are verified against as they arrive (so --tsa needs them)."""
    if args.timestamp_interval <= 0:
        raise ConfigError("--timestamp-interval must be a positive number of seconds")
    if not args.tsa:
        return ()
    if args.tsa_roots is None:
        raise ConfigError("--tsa needs --tsa-roots: the certificates its tokens must chain to")
    return read_tsa_roots(args.tsa_roots)


def cmd_serve(args: argparse.Namespace) -> int:
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
    tsa_roots = _tsa_roots(args)
    key_path = DATA_DIR / "signer.key"
    if args.key is None and not key_path.exists():
        write_key(key_path, SignerKey.generate(args.origin))
        print(f"created signer key {key_path.resolve()}", file=sys.stderr, flush=True)
    if args.witness_interval <= 0:
        raise ConfigError("--witness-interval must be a positive number of seconds")
    witness_policy = load_policy(args.witness_policy) if args.witness_policy else None
    journal_keep = Keep.parse(args.journal_keep) if args.journal_keep else Keep()
    journal = args.journal or default_journal_dir()
    key = load_signer(args.key or str(key_path), args.origin)
    previous = load_signer(args.previous_key, key.name) if args.previous_key else None
    if previous is not None and (previous.name != key.name or previous.key_id == key.key_id):
        raise ConfigError(
            f"--previous-key {previous.name}+{previous.key_id:08x} must be another key of the same log "
            f"as --key {key.name}+{key.key_id:08x}"
        )
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
        witness_policy=witness_policy,
        witness_interval=args.witness_interval,
        tsas=tuple(args.tsa),
        tsa_roots=tsa_roots,
        timestamp_interval=args.timestamp_interval,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    service = SealerService(config, key, previous)
    try:
        service.start()
    except BaseException:
        service.stop()
        raise
    assert service.grpc is not None
    print(f"verifier key: {key.verifier().serialize()}", file=sys.stderr)
    print(
        f"store: {redact(config.store)}  anchors: {config.anchor_dir}  "
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
