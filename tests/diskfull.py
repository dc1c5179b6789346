"""The disk-full experiment: a real `otel-audit serve` on a small file system of its own, fed
by several producers while a filler file takes all free space for a while, again and again.

Used by tests/test_diskfull.py (short) and bench/diskfull.py (long, by hand). It counts what
the producers were told was sealed (an Export answered OK with nothing rejected) and, after
the sealer was stopped and started again, how much of that the store still holds; and
whether /readyz said "not ready" while the disk was full and "ready" once it was freed.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from otel_audit.note import SignerKey

from .conftest import Sealer, metrics_url, run_cli, start_sealer

# What the sealer says when it finds that the store lost, or cannot read, acknowledged rows.
HALTED = ("were acknowledged but the store no longer has them", "the store cannot read rows it holds")


def mount_tmpfs(path: Path, megabytes: int) -> str | None:
    """Mount a tmpfs of `megabytes` at `path`; None, or why it could not be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run mount: {exc}"
    if done.returncode != 0:
        return f"mount -t tmpfs failed (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}"
    return None


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system is full; the bytes written."""
    chunk = bytes(1 << 20)
    written = 0
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096):  # the last MiB, page by page
            piece = chunk[:size]
            while True:
                try:
                    written += f.write(piece) or 0
                except OSError:  # ENOSPC
                    break
    return written


@dataclass
class Outcome:
    acked: int = 0  # records the producers were told were sealed
    refused_calls: int = 0  # Export calls answered with an error (retryable)
    lost: int = 0  # acked records not in the store after the restart
    stored: int = 0
    not_ready_during_fill: bool = False
    ready_after_fill: bool = False
    refusals: set[str] = field(default_factory=set)  # the distinct /readyz reasons seen
    errors: set[str] = field(default_factory=set)  # the distinct Export error messages
    restart: str = ""  # "" when the sealer restarted; else what it said
    verify: str = ""  # `otel-audit verify` output
    verify_ok: bool = False
    output: str = ""  # the first sealer's log
    halted: str = ""  # the first line of that log saying rows the store lost or cannot read


class _Producers:
    """Producer threads sending requests of `records` over OTLP/gRPC, each record tagged."""

    def __init__(self, endpoint: str, count: int, records: int) -> None:
        self._endpoint = endpoint
        self._records = records
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.acked: set[str] = set()
        self.refused = 0
        self.errors: set[str] = set()
        self._threads = [threading.Thread(target=self._run, args=(p,), daemon=True) for p in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, producer: int) -> None:
        with grpc.insecure_channel(self._endpoint) as channel:
            stub = LogsServiceStub(channel)
            call = 0
            while not self._stop.is_set():
                tags = [f"p{producer}-{call}-{i}" for i in range(self._records)]
                call += 1
                request = ExportLogsServiceRequest()
                scope = request.resource_logs.add().scope_logs.add()
                for tag in tags:
                    scope.log_records.add(body=AnyValue(string_value=tag))
                try:
                    response = stub.Export(request, timeout=20)
                except grpc.RpcError as exc:
                    with self._lock:
                        self.refused += 1
                        self.errors.add(f"{exc.code().name}: {(exc.details() or '')[:160]}")
                    time.sleep(0.05)  # as an exporter backs off (briefly: keep the test short)
                    continue
                if response.partial_success.rejected_log_records == 0:
                    with self._lock:
                        self.acked.update(tags)


class _Readiness:
    """Polls /readyz; what it answered while the disk was full, and after."""

    def __init__(self, base: str) -> None:
        self._url = base + "/readyz"
        self.full = threading.Event()  # set by the filler while the disk is full
        self.not_ready_during_fill = False
        self.reasons: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def probe(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self._url, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            status, text = self.probe()
            if status != 200:
                self.reasons.add(text.strip()[:200])
                if self.full.is_set():
                    self.not_ready_during_fill = True


def stored_bodies(sealer: Sealer) -> set[str]:
    done = run_cli("query", "--store", sealer.store, "SELECT Body FROM otel_audit.logs", "--format", "TSV")
    if done.returncode != 0:
        raise AssertionError(f"query failed: {done.stderr}")
    return set(done.stdout.split())


def run(
    workdir: Path,
    *,
    cycles: int,
    fill_seconds: float = 3.0,
    free_seconds: float = 2.0,
    producers: int = 4,
    records: int = 50,
    serve_args: tuple[str, ...] = (),
    progress: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """The experiment on a file system mounted at `workdir` (which it fills); its outcome."""
    key = SignerKey.generate("diskfull.example/audit")
    outcome = Outcome()
    sealer = start_sealer(workdir, key, "--workers", "0", *serve_args)
    health = _Readiness(metrics_url(sealer))
    senders = _Producers(sealer.endpoint, producers, records)
    try:
        health.start()
        senders.start()
        time.sleep(free_seconds)
        filler = workdir / "filler"
        for cycle in range(cycles):
            taken = fill(filler)
            health.full.set()
            time.sleep(fill_seconds)
            health.full.clear()
            filler.unlink()
            deadline = time.monotonic() + max(free_seconds, 15)
            while health.probe()[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            outcome.ready_after_fill = health.probe()[0] == 200
            progress(
                f"cycle {cycle + 1}/{cycles}: filled {taken >> 20} MiB; acked {len(senders.acked)}, "
                f"refused calls {senders.refused}; ready again: {outcome.ready_after_fill}"
            )
            if any(p in line for line in list(sealer.output) for p in HALTED):
                progress("the sealer halted: it found acknowledged rows the store lost")
                break
            time.sleep(free_seconds)
    finally:
        senders.stop()
        health.stop()
        sealer.stop()
        outcome.output = "".join(sealer.output)
        outcome.halted = next((line for line in sealer.output if any(p in line for p in HALTED)), "")
    outcome.acked = len(senders.acked)
    outcome.refused_calls = senders.refused
    outcome.errors = senders.errors
    outcome.not_ready_during_fill = health.not_ready_during_fill
    outcome.refusals = health.reasons
    try:
        again = start_sealer(workdir, key, "--workers", "0", *serve_args)
    except AssertionError as exc:  # it refused to start: the store is not what it signed
        outcome.restart = str(exc)[-2000:]
    else:
        again.stop()
    stored = stored_bodies(sealer)
    outcome.stored = len(stored)
    outcome.lost = len(senders.acked - stored)
    verified = sealer.verify()
    outcome.verify_ok = verified.returncode == 0
    outcome.verify = (verified.stdout + verified.stderr)[-2000:]
    return outcome
