"""The sealer service: builds store, recovery, pipeline, checkpointer and receivers, and
the one place their start and stop order is written down.

Every piece gets its collaborators at construction; nothing is wired in afterwards. The
pipeline and the checkpointer share a PublishedLog (sealer/publisher.py): the pipeline
publishes each committed state into it and the checkpointer signs what it holds; either may
halt it (lost rows). The checkpointer is built first, so that the pipeline can be given its
callbacks (`on_commit`: record_column_hashes; `on_partition_boundary`: checkpoint_now).

Start order:
  1. the sealing workers;
  2. the store (schema), the journal, recovery (which refuses a log shorter than its
     checkpoints, anchors or journal), then the journal catches up with the store;
  3. the disk guard, the published log, the checkpointer and the pipeline are built;
  4. the checkpointer anchors and signs what was recovered at once (so a crash loop never
     leaves acknowledged records unsigned for long);
  5. the pipeline, then the checkpointer's timer, then the witness client's (if a policy) and
     the timestamper's (trusted time);
  6. the receivers (gRPC, HTTP), the local read API (embedded stores only), then the metrics
     and health endpoints.
Stop order, the reverse:
  1. health, the read API and the receivers stop; receivers finish in-flight Export calls
     (grace period); then the sealing workers stop;
  2. the pipeline commits everything still queued, then stops;
  3. the checkpointer stops its timer and signs a final checkpoint of the whole log; the
     witness client stops its timer and sends that checkpoint to the witnesses; the
     timestamper then asks each TSA once for a token over it;
  4. the journal and the store are closed.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from backend.store import Store
from otel_audit.errors import AuditError
from otel_audit.note import Signer

from .auth import authenticator_for, load_tokens
from .checkpointer import Checkpointer
from .config import ServeConfig
from .disk import DiskGuard, store_path
from .grpc_receiver import GrpcReceiver
from .http_receiver import HttpReceiver
from .intake import Intake
from .journal import Journal, catch_up
from .masking import Masking
from .metrics import HealthServer, SealerMetrics
from .pipeline import Pipeline
from .prepare import Rules
from .producer_gaps import ProducerTracker
from .publisher import PublishedLog
from .read_api import ReadApi, socket_path
from .recovery import recover
from .timestamper import Timestamper
from .witness_client import WitnessClient
from .workers import Workers

log = logging.getLogger(__name__)
Receiver = TypeVar("Receiver", GrpcReceiver, HttpReceiver)


class SealerService:
    def __init__(self, config: ServeConfig, key: Signer, previous_key: Signer | None = None) -> None:
        self.config = config
        self.key = key
        self.previous_key = previous_key
        self.store: Store | None = None
        self.journal: Journal | None = None
        self.pipeline: Pipeline | None = None
        self.checkpointer: Checkpointer | None = None
        self.grpc: GrpcReceiver | None = None
        self.http: HttpReceiver | None = None
        self.intake: Intake | None = None
        self.workers: Workers | None = None
        self.metrics: SealerMetrics | None = None
        self.health: HealthServer | None = None
        self.read_api: ReadApi | None = None
        self.disk: DiskGuard | None = None
        self.witnesses: WitnessClient | None = None
        self.timestamper: Timestamper | None = None

    def start(self) -> None:
        config = self.config
        tokens = load_tokens(config.tokens_file) if config.tokens_file else {}
        policies = {
            address: authenticator_for(address, tokens, config.tls, config.allow_anonymous, config.insecure)
            for address in (config.grpc_address, config.http_address)
            if address is not None
        }  # before anything starts: a listener that would be exposed is refused up front
        masking = Masking.load(config.masking_rules) if config.masking_rules else None
        metrics = self.metrics = SealerMetrics()
        self.workers = Workers(Rules(config.incomplete_events, masking), config.workers)
        self.workers.start()
        intake = self.intake = Intake(self.workers, ProducerTracker(metrics=metrics), metrics=metrics)
        self.store = Store.open(config.store, cluster=config.cluster)
        self.store.ensure_schema()
        store, origin = self.store, self.key.name
        if config.journal_dir is not None:
            self.journal = Journal(
                config.journal_dir, self.key, config.journal_keep, lambda: _signed_size(store, origin)
            )
        journal_end = self.journal.end if self.journal is not None else None
        previous = self.previous_key.verifier() if self.previous_key is not None else None
        state = recover(store, origin, self.key.verifier(), config.anchor_dir, journal_end, previous)
        log.info("log %s continues at Seq %d", state.origin, state.size)
        if self.journal is not None:
            catch_up(self.journal, store, state.size)  # rows committed by a crash before their append
        data_dir = store_path(config.store)
        disk = self.disk = (
            None
            if data_dir is None
            else DiskGuard(data_dir, config.min_free_disk_bytes, on_change=self._pause_merges)
        )
        if disk is not None:
            metrics.store_free_bytes.set_function(lambda: disk.free_bytes)
        published = PublishedLog(state)
        checkpointer = self.checkpointer = Checkpointer(
            store,
            self.key,
            config.anchor_dir,
            published.current,
            config.checkpoint_interval,
            metrics=metrics,
            on_lost=published.halt,
            previous_key=self.previous_key,
        )
        pipeline = self.pipeline = Pipeline(
            store,
            published,
            on_commit=checkpointer.record_column_hashes,
            on_partition_boundary=checkpointer.checkpoint_now,
            metrics=metrics,
            journal=self.journal,
            disk=disk,
        )
        try:  # what a crash left unsigned or unanchored is signed and anchored before anything new
            self.checkpointer.anchor_newest()
            self.checkpointer.checkpoint_now()
        except AuditError as exc:
            log.error("could not sign a checkpoint over the recovered log (the timer retries): %s", exc)
        pipeline.start()
        self.checkpointer.start()
        if config.witness_policy is not None:
            gauge = metrics.witness_cosigned_size
            self.witnesses = WitnessClient(
                store,
                origin,
                config.witness_policy,
                config.anchor_dir,
                config.witness_interval,
                on_cosigned=lambda name, size: gauge.labels(witness=name).set(size),
            )
            self.witnesses.start()
        if config.tsas:
            self.timestamper = Timestamper(
                store,
                config.anchor_dir,
                origin,
                config.tsas,
                config.tsa_roots,
                config.timestamp_interval,
                metrics,
            )
            self.timestamper.start()

        def receiver(protocol: type[Receiver], address: str) -> Receiver:
            """Both protocols' receivers take the same settings; only the address's policy differs."""
            return protocol(
                pipeline,
                address,
                authenticator=policies[address],
                intake=intake,
                tls=config.tls,
                max_message_bytes=config.max_message_bytes,
            )

        self.grpc = receiver(GrpcReceiver, config.grpc_address)
        self.grpc.start()
        if config.http_address is not None:
            self.http = receiver(HttpReceiver, config.http_address)
            self.http.start()
        path = socket_path(config.store)
        if path is not None:
            self.read_api = ReadApi(config.store, path, self.readiness)
            if not self.read_api.start():
                self.read_api = None
        if config.metrics_address is not None:
            self.health = HealthServer(metrics, config.metrics_address, self.problem)
            self.health.start()

    def problem(self) -> str | None:
        """Why the sealer is not ready to take records now, or None (for /readyz)."""
        if self.pipeline is None or self.store is None:
            return "starting"
        problem = self.pipeline.problem()
        if problem is not None:
            return problem
        try:
            self.store.select("SELECT 1")
        except AuditError as exc:
            return f"the store does not answer: {exc}"
        return None

    def _pause_merges(self, paused: bool) -> None:
        """While the store's disk is nearly full, no merges (sealer/disk.py)."""
        if self.store is None:
            return
        try:
            self.store.pause_merges(paused)
            log.warning("background merges of the store %s", "paused" if paused else "resumed")
        except AuditError as exc:
            log.error("could not %s background merges: %s", "pause" if paused else "resume", exc)

    def readiness(self) -> dict[str, object]:
        """What `otel-audit status` shows of the running sealer: ready or why not, and the
        store's free disk space against --min-free-disk."""
        problem = self.problem()
        disk = self.disk
        return {
            "ready": problem is None,
            "problem": problem,
            "store_free_bytes": None if disk is None else disk.free_bytes,
            "min_free_disk_bytes": None if disk is None else disk.min_free_bytes,
            "witnesses": None if self.witnesses is None else dict(self.witnesses.cosigned),
            "timestamps": None if self.timestamper is None else self.timestamper.status(),
        }

    def stop(self) -> None:
        try:
            if self.health is not None:
                self.health.stop()
            if self.read_api is not None:
                self.read_api.stop()
            if self.http is not None:
                self.http.stop()
            if self.grpc is not None:
                self.grpc.stop(self.config.shutdown_grace_seconds)
            if self.workers is not None:
                self.workers.stop()
            if self.pipeline is not None:
                self.pipeline.stop()
            if self.checkpointer is not None:
                self.checkpointer.stop()  # may raise if the store is down: no final checkpoint
            if self.witnesses is not None:
                self.witnesses.stop()  # the final checkpoint to the witnesses
            if self.timestamper is not None:
                self.timestamper.stop()
        finally:
            if self.journal is not None:
                self.journal.close()
            if self.store is not None:
                self.store.close()


def _signed_size(store: Store, origin: str) -> int:
    """The tree size of the newest checkpoint stored: journal segments below it may go."""
    latest = store.latest_checkpoint(origin)
    return 0 if latest is None else latest.tree_size
