"""Shared fixtures: a real `otel-audit serve` process on an embedded store in a temp dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.store import Store
from otel_audit.note import SignerKey
from sealer.config import ServeConfig
from sealer.service import SealerService

# How every test starts the `otel-audit` command line (sealer/cli), in a subprocess that runs
# this interpreter and inherits PYTHONPATH, so it runs the code under test.
CLI = (sys.executable, "-m", "sealer.cli")


@dataclass
class Sealer:
    """A running `otel-audit serve` subprocess and what a test needs to talk to it."""

    workdir: Path
    key: SignerKey
    port: int
    http_port: int
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/logs"

    @property
    def store(self) -> str:
        return f"chdb://{self.workdir / 'store'}"

    @property
    def anchor_dir(self) -> Path:
        return self.workdir / "anchors"

    @property
    def verifier_key(self) -> str:
        return self.key.verifier().serialize()

    def verify(self, *extra: str) -> subprocess.CompletedProcess:
        """`otel-audit verify` of this sealer's log, with its store, anchors and key."""
        return run_cli(
            "verify",
            "--store",
            self.store,
            "--anchor-dir",
            str(self.anchor_dir),
            "--key",
            self.verifier_key,
            *extra,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Kill serve if it still runs: a test's clean-up (a test of stopping calls `stop`)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait_for_output(self, pattern: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in list(self.output)):
                return
            time.sleep(0.05)
        raise AssertionError(f"serve never printed {pattern!r}; output:\n{''.join(self.output)}")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def startup_text(proc: subprocess.Popen) -> str:
    """What a starting `serve` printed on stderr, up to its "listening on" line: the key it
    made, the store and the addresses it took."""
    lines = []
    for line in proc.stderr:  # type: ignore[union-attr]
        lines.append(line)
        if "listening on" in line:
            break
    return "".join(lines)


def start_sealer(workdir: Path, key: SignerKey, *extra: str, interval: str = "0.5") -> Sealer:
    key_file = workdir / "signer.key"
    if not key_file.exists():
        key_file.write_text(key.serialize() + "\n")
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--key",
            str(key_file),
            "--store",
            f"chdb://{workdir / 'store'}",
            "--anchor-dir",
            str(workdir / "anchors"),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--checkpoint-interval",
            interval,
            *extra,
        ],
        cwd=workdir,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    output: list[str] = []
    port = http_port = None
    for line in proc.stderr:  # type: ignore[union-attr]
        output.append(line)
        match = re.search(r"OTLP/gRPC listening on [\d.]+:(\d+), OTLP/HTTP on https?://[\d.]+:(\d+)", line)
        if match:
            port, http_port = int(match.group(1)), int(match.group(2))
            break
    if port is None:
        proc.wait(timeout=30)
        raise AssertionError("serve did not start:\n" + "".join(output))
    sealer = Sealer(workdir, key, port, http_port, proc, output)
    threading.Thread(target=lambda: [output.append(ln) for ln in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    return sealer


def http_get(url: str) -> tuple[int, str]:
    """The status and body of a GET, an error status included (the health and metrics endpoints)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def service_in_process(tmp_path: Path, origin: str, **settings: object) -> Iterator[SealerService]:
    """A started SealerService in this process, on an embedded store under `tmp_path`: gRPC and
    the metrics endpoint on free ports, no OTLP/HTTP; `settings` are further ServeConfig fields.
    Stopped on the way out."""
    config = ServeConfig(
        store=f"chdb://{tmp_path / 'store'}",
        grpc_address="127.0.0.1:0",
        http_address=None,
        checkpoint_interval=60,
        anchor_dir=tmp_path / "anchors",
        metrics_address="127.0.0.1:0",
        **settings,  # type: ignore[arg-type]
    )
    service = SealerService(config, SignerKey.generate(origin))
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def signer_key() -> SignerKey:
    return SignerKey.generate("test.example/audit")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh embedded store with the schema applied, closed after the test."""
    s = Store.open(f"chdb://{tmp_path / 'store'}")
    s.ensure_schema()
    yield s
    s.close()


@pytest.fixture
def sealer(tmp_path: Path, signer_key: SignerKey) -> Iterator[Sealer]:
    running = start_sealer(tmp_path, signer_key)
    yield running
    running.kill()


def metrics_url(sealer: Sealer) -> str:
    for line in sealer.output:
        match = re.search(r"metrics and health on (http://[\d.]+:\d+)/metrics", line)
        if match:
            return match.group(1)
    raise AssertionError("serve printed no metrics address")
