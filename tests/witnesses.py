"""Test helper: real `otel-audit witness serve` processes on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from otel_audit.cosignature import CosignerKey, CosignerVerifierKey
from otel_audit.note import VerifierKey

from .conftest import CLI


@dataclass
class RunningWitness:
    name: str
    vkey: CosignerVerifierKey
    url: str  # the add-checkpoint URL
    proc: subprocess.Popen
    state: Path

    @property
    def prefix(self) -> str:
        return self.url.removesuffix("/add-checkpoint")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def start_witness(
    workdir: Path,
    name: str,
    logs: list[VerifierKey],
    key: CosignerKey | None = None,
    listen: str = "127.0.0.1:0",
) -> RunningWitness:
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = workdir / "witness.key"
    if key is None:
        key = CosignerKey.generate(name)
    key_file.write_text(key.serialize() + "\n")
    logs_file = workdir / "logs"
    logs_file.write_text("# logs this witness trusts\n" + "".join(k.serialize() + "\n" for k in logs))
    state = workdir / "state.json"
    proc = subprocess.Popen(
        [
            *CLI,
            *("witness", "serve", "--key", str(key_file), "--logs", str(logs_file)),
            *("--state", str(state), "--listen", listen),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:  # type: ignore[union-attr]
        seen.append(line)
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return RunningWitness(name, key.verifier(), match.group(1), proc, state)
    proc.wait(timeout=30)
    raise AssertionError("witness serve did not start:\n" + "".join(seen))
