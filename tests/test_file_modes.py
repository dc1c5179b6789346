"""What otel-audit creates is private whatever the umask: no file or directory under the data
directory (signer key, embedded store, anchors) is readable or writable by group or others,
even when the process starts with umask 000."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_audit.anchors import LATEST, origin_dir, write_anchor
from otel_audit.note import SignerKey

from .conftest import CLI, run_cli, startup_text
from .producers import send_audit_events

KEY = SignerKey.from_seed("modes.example/audit", b"\x03" * 32)


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The test process (and every command it starts) with umask 000, as a careless unit file
    or container might run it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _shared(root: Path) -> list[str]:
    """Every file or directory under root that group or others may read or write, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue  # a link's own mode is always 0777 and never used; its target is walked
        if mode & 0o066:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


def test_anchors_are_0600_in_folders_0700_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    anchors = tmp_path / "new" / "anchors"
    folder = origin_dir(anchors, KEY.name)
    folder.mkdir(parents=True)  # a crash left a world-writable temporary file behind
    (folder / f"{LATEST}.tmp").write_text("half")
    (folder / f"{LATEST}.tmp").chmod(0o666)
    folder.chmod(0o700)
    write_anchor(anchors, KEY.name, 7, "note\n")
    fresh = tmp_path / "fresh"
    write_anchor(fresh / "anchors", KEY.name, 7, "note\n")
    assert _shared(fresh) == []
    assert stat.S_IMODE((folder / LATEST).stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / f"{7:020d}.checkpoint").stat().st_mode) == 0o600


@pytest.mark.integration
def test_serve_verify_and_search_create_only_private_files_under_umask_000(
    tmp_path: Path, umask_000: None
) -> None:
    env = {
        **os.environ,
        "OTEL_AUDIT_GRPC": "127.0.0.1:0",
        "OTEL_AUDIT_HTTP": "127.0.0.1:0",
        "OTEL_AUDIT_METRICS": "127.0.0.1:0",
        "OTEL_AUDIT_CHECKPOINT_INTERVAL": "0.5",
        "OTEL_AUDIT_WORKERS": "0",
    }
    proc = subprocess.Popen(
        [*CLI, "serve"],  # every default: ./otel-audit-data/
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        text = startup_text(proc)
        vkey = re.search(r"verifier key: (\S+)", text).group(1)  # type: ignore[union-attr]
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        send_audit_events(f"127.0.0.1:{port}", 20)
        assert run_cli("search", "--limit", "5", cwd=tmp_path).returncode == 0  # through the socket
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    data = tmp_path / "otel-audit-data"
    assert (data / "store").is_dir() and list(
        origin_dir(data / "anchors", "otel-audit.local/audit").iterdir()
    )
    assert run_cli("verify", "--key", vkey, cwd=tmp_path).returncode == 0  # opens the store itself
    assert run_cli("search", "--limit", "5", cwd=tmp_path).returncode == 0
    assert _shared(data) == []
