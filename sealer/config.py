"""The typed configuration of `otel-audit serve`, built once at the edge (the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from otel_audit.witness_policy import Policy

from .auth import TlsFiles
from .disk import DEFAULT_MIN_FREE_BYTES
from .intake import MAX_MESSAGE_BYTES
from .journal import Keep


@dataclass(frozen=True)
class ServeConfig:
    store: str
    grpc_address: str
    http_address: str | None  # None: no OTLP/HTTP listener
    checkpoint_interval: float
    anchor_dir: Path
    tokens_file: Path | None = None  # producer tokens (sealer/auth.py)
    tls: TlsFiles | None = None
    allow_anonymous: bool = False
    insecure: bool = False
    incomplete_events: str = "reject"  # audit events without actor/action/outcome: reject | seal
    masking_rules: Path | None = None  # sealer/masking.py
    metrics_address: str | None = None  # /metrics, /healthz, /readyz (sealer/metrics.py)
    cluster: str | None = None  # ClickHouse cluster name (backend/cluster.py)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    shutdown_grace_seconds: float = 30.0
    workers: int = 0  # sealing worker processes (sealer/workers.py); 0: prepare in the receiver
    journal_dir: Path | None = None  # the durable copy of acknowledged records (sealer/journal.py)
    journal_keep: Keep = field(default_factory=Keep)
    min_free_disk_bytes: int = DEFAULT_MIN_FREE_BYTES  # embedded: refuse records below (sealer/disk.py)
    witness_policy: Policy | None = None  # tlog-policy: witnesses to ask for cosignatures
    witness_interval: float = 60.0  # seconds between add-checkpoint rounds (sealer/witness_client.py)
    # Trusted time (sealer/timestamper.py): RFC 3161 TSA URLs, the PEM chain to trust, seconds.
    tsas: tuple[str, ...] = ()
    tsa_roots: tuple[x509.Certificate, ...] = ()
    timestamp_interval: float = 60.0
