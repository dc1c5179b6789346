"""The kill -9 soak: producers send while the sealer is killed at random moments and
restarted on the same store, again and again; then nothing acknowledged may be missing.

Each producer sends requests of `batch` records, every record with a unique id attribute
(store.ID_KEY), over its own transport (gRPC, OTLP/HTTP protobuf, gzip or JSON), and keeps
exactly which ids were acknowledged. A request that got no clear answer (the sealer died
under it) is sent again, with the same ids, until it is acknowledged, as an OTel exporter
retries: such a retry may seal a record twice (duplicates are allowed, and counted), but an
acknowledged id must be in the store. The kill schedule comes from a seeded random.Random,
so a run can be repeated; the moments themselves depend on the machine.

After every start the soak notes the size the sealer recovered (its "continues at Seq N"
line) and, just before the next kill, the newest anchored checkpoint: a start whose
recovered records were signed before it was killed "got a checkpoint".
"""

from __future__ import annotations

import itertools
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_audit.anchors import latest_anchor
from otel_audit.note import SignerKey
from tests.conftest import Sealer, start_sealer

from .clients import UNREACHABLE, Answer, GrpcClient, HttpClient, otlp_json
from .store import ID_KEY, seq_run, stored_ids

TRANSPORT_CYCLE = ("grpc", "http/protobuf", "grpc", "http/json", "grpc", "http/protobuf+gzip")


@dataclass(frozen=True)
class SoakConfig:
    kills: int = 3
    seed: int = 1
    producers: int = 4
    batch: int = 50
    min_uptime: float = 0.5  # seconds a sealer runs before it is killed: uniform in [min, max]
    max_uptime: float = 2.0
    checkpoint_interval: str = "10"  # the serve default
    workers: int | None = None  # sealing worker processes (None: serve's default)


@dataclass(frozen=True)
class Start:
    """One start of the sealer: the size it recovered, the newest anchored checkpoint when
    it started and when it was killed (None: the final, clean run)."""

    recovered: int
    anchored_at_start: int
    anchored_at_kill: int | None

    @property
    def had_unsigned(self) -> bool:
        return self.recovered > self.anchored_at_start

    @property
    def signed_before_kill(self) -> bool:
        return self.anchored_at_kill is not None and self.anchored_at_kill >= self.recovered


@dataclass
class SoakReport:
    config: SoakConfig
    starts: list[Start] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    retried: int = 0  # answers after which a request was sent again: none, UNAVAILABLE, 503, 429
    refusals: list[Answer] = field(default_factory=list)  # a good record refused: a defect
    stored: Counter[str] = field(default_factory=Counter)
    seq_contiguous: bool = False
    seq_count: int = 0
    clean_exit: int | None = None
    verify_exit: int | None = None
    verify_output: str = ""
    failed_start: str = ""  # the output of a restart that refused to start

    @property
    def kills(self) -> int:
        return sum(1 for s in self.starts if s.anchored_at_kill is not None)

    @property
    def lost(self) -> set[str]:
        return {i for i in self.acknowledged if self.stored[i] == 0}

    @property
    def duplicated(self) -> int:
        """Records sealed more than once (each extra copy counted)."""
        return sum(n - 1 for n in self.stored.values() if n > 1)

    @property
    def killed_starts(self) -> list[Start]:
        return [s for s in self.starts if s.anchored_at_kill is not None]

    @property
    def max_unsigned_at_kill(self) -> int:
        """The most acknowledged records left unsigned by a kill: what the next start
        recovered beyond the newest anchor at the kill."""
        sizes = [
            nxt.recovered - (cur.anchored_at_kill or 0)
            for cur, nxt in itertools.pairwise(self.starts)
            if cur.anchored_at_kill is not None
        ]
        return max(sizes, default=0)

    def summary(self) -> str:
        needing = [s for s in self.killed_starts if s.had_unsigned]
        return "\n".join(
            [
                f"kills survived:        {self.kills} of {self.config.kills} (seed {self.config.seed})",
                f"records acknowledged:  {len(self.acknowledged)}",
                f"acknowledged lost:     {len(self.lost)}",
                f"records duplicated:    {self.duplicated} (requests sent again: {self.retried})",
                f"good records refused:  {len(self.refusals)}",
                f"Seq contiguous:        {self.seq_contiguous} ({self.seq_count} records)",
                f"clean stop exit:       {self.clean_exit}; verify exit: {self.verify_exit}",
                f"starts that recovered unsigned records: {len(needing)}; signed them before the "
                f"next kill: {sum(s.signed_before_kill for s in needing)}",
                f"most records left unsigned by a kill: {self.max_unsigned_at_kill}",
            ]
            + ([f"a restart FAILED:\n{self.failed_start}"] if self.failed_start else [])
        )


def _record(record_id: str, n: int) -> LogRecord:
    now = time.time_ns()
    record = LogRecord(
        time_unix_nano=now,
        observed_time_unix_nano=now,
        severity_number=9,
        severity_text="INFO",
        event_name="audit.order.place",
        body=AnyValue(string_value=f"order {record_id} placed"),
    )
    for key, value in (
        ("user.id", f"trader-{n % 7}"),
        ("audit.action", "order.place"),
        ("audit.outcome", "success"),
        ("audit.resource", f"order/{record_id}"),
        (ID_KEY, record_id),
    ):
        record.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return record


def audit_request(record_ids: list[str], service: str) -> ExportLogsServiceRequest:
    """A valid request of complete audit events, one per id (as store.ID_KEY)."""
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    records = [_record(i, n) for n, i in enumerate(record_ids)]
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=records)])]
    )


def soak_request(producer: int, first: int, batch: int) -> tuple[list[str], ExportLogsServiceRequest]:
    """Records first..first+batch-1 of `producer`, with their ids."""
    ids = [f"p{producer}-{n}" for n in range(first, first + batch)]
    return ids, audit_request(ids, f"soak-{producer}")


class Soak:
    """One soak run in `workdir` (it holds the store, the anchors and the key)."""

    def __init__(self, workdir: Path, config: SoakConfig, log: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.config = config
        self.key = SignerKey.generate("soak.example/audit")
        self.report = SoakReport(config)
        self._log = log
        self._sealer: Sealer | None = None
        self._generation = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acked_now = 0  # requests acknowledged by the running sealer

    def _extra(self) -> list[str]:
        return [] if self.config.workers is None else ["--workers", str(self.config.workers)]

    def _anchored(self) -> int:
        anchor = latest_anchor(self.workdir / "anchors", self.key.name)
        return 0 if anchor is None else anchor.checkpoint.tree_size

    def _start(self) -> tuple[Sealer, int, int]:
        """A sealer on the store, with the size it recovered and the newest anchor before it."""
        anchored = self._anchored()
        sealer = start_sealer(
            self.workdir, self.key, *self._extra(), interval=self.config.checkpoint_interval
        )
        sealer.wait_for_output(r"continues at Seq \d+")
        recovered = next(
            int(m.group(1)) for line in sealer.output if (m := re.search(r"continues at Seq (\d+)", line))
        )
        with self._lock:
            self._sealer = sealer
            self._generation += 1
            self._acked_now = 0
        return sealer, recovered, anchored

    def _wait_for_an_ack(self, timeout: float = 60) -> None:
        """Until the running sealer acknowledged a request: every kill is under load."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._acked_now:
                    return
            time.sleep(0.01)
        raise AssertionError(f"no request was acknowledged within {timeout} s of a start")

    def run(self) -> SoakReport:
        config, report = self.config, self.report
        rng = random.Random(config.seed)
        producers = [
            threading.Thread(target=self._produce, args=(i,), name=f"soak-producer-{i}", daemon=True)
            for i in range(config.producers)
        ]
        sealer: Sealer | None = None
        try:
            sealer, recovered, anchored = self._start()
            for thread in producers:
                thread.start()
            for kill in range(config.kills):
                self._wait_for_an_ack()
                time.sleep(rng.uniform(config.min_uptime, config.max_uptime))
                at_kill = self._anchored()
                with self._lock:
                    self._sealer = None
                sealer.proc.send_signal(signal.SIGKILL)
                sealer.proc.wait(timeout=60)
                report.starts.append(Start(recovered, anchored, at_kill))
                self._log(f"kill {kill + 1}: recovered {recovered}, anchored {anchored} -> {at_kill}")
                sealer = None
                sealer, recovered, anchored = self._start()
            report.starts.append(Start(recovered, anchored, None))
            time.sleep(config.min_uptime)
            self._stop.set()
            for thread in producers:
                thread.join(timeout=120)
            report.clean_exit = sealer.stop()
        except AssertionError as exc:  # a refused restart, or no progress: reported, not hidden
            report.failed_start = str(exc)
            return report
        finally:
            self._stop.set()
            if sealer is not None and sealer.proc.poll() is None:
                sealer.proc.kill()
                sealer.proc.wait()
        report.stored = stored_ids(sealer.store)
        run = seq_run(sealer.store)
        report.seq_contiguous, report.seq_count = run.contiguous, run.count
        verified = sealer.verify()
        report.verify_exit, report.verify_output = verified.returncode, verified.stdout + verified.stderr
        return report

    def _produce(self, producer: int) -> None:
        """Send until told to stop; a request without a clear answer is sent again (the
        final sealer answers it) before the producer stops."""
        transport = TRANSPORT_CYCLE[producer % len(TRANSPORT_CYCLE)]
        generation, client = -1, None
        for first in itertools.count(0, self.config.batch):
            if self._stop.is_set():
                break
            ids, request = soak_request(producer, first, self.config.batch)
            body = otlp_json(request) if transport == "http/json" else request.SerializeToString()
            attempts = 0
            while attempts < 2000:  # about 100 s of a sealer that does not answer
                attempts += 1
                with self._lock:
                    sealer, current = self._sealer, self._generation
                if sealer is None:
                    time.sleep(0.05)
                    continue
                if current != generation:
                    if client is not None:
                        client.close()
                    generation = current
                    client = (
                        GrpcClient(sealer.endpoint)
                        if transport == "grpc"
                        else HttpClient(sealer.http_endpoint)
                    )
                if isinstance(client, GrpcClient):
                    answer = client.send(body, timeout=20)
                else:
                    answer = client.send(body, transport, timeout=20)  # type: ignore[union-attr]
                if answer.accepted_all:
                    with self._lock:
                        self.report.acknowledged.update(ids)
                        self._acked_now += current == self._generation
                    break
                if answer.status == UNREACHABLE or answer.status in ("UNAVAILABLE", "503", "429"):
                    with self._lock:
                        self.report.retried += 1
                    time.sleep(0.05)
                    continue
                with self._lock:  # a good request refused for good: a defect; do not retry it
                    self.report.refusals.append(answer)
                break
        if client is not None:
            client.close()
