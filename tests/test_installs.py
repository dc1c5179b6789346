"""Each install of pyproject.toml in a fresh venv, as its user gets it (README: Install).

One wheel of the repository is built per session; each venv installs it with one extra, from
the package registry, with nothing of this checkout on its path (PYTHONPATH is dropped and
the commands run outside the repository). The application's venv (`[sdk]`) runs the README's
SDK snippet against a real sealer started from the test environment; the examiner's venv (the
base install) checks the evidence bundle exported from that sealer and must reach the same
verdict as the full `otel-audit verify-bundle`, without the engine, gRPC or the server.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_audit import offline_cli
from otel_audit.bundle import entry_path
from otel_audit.note import SignerKey
from sealer import cli as sealer_cli

from .conftest import Sealer, run_cli, start_sealer

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODULES = ("chdb", "clickhouse_connect", "aiohttp", "prometheus_client", "tenacity")


@dataclass(frozen=True)
class Venv:
    path: Path

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
        """A command of this venv, with nothing of the checkout or the test venv on its path."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return subprocess.run(
            [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
        )

    def importable(self, modules: tuple[str, ...], cwd: Path) -> dict[str, bool]:
        probe = (
            "import importlib, json, sys\n"
            "def can(name):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ImportError:\n"
            "        return False\n"
            "    return True\n"
            "print(json.dumps({name: can(name) for name in sys.argv[1:]}))\n"
        )
        done = self.run(self.bin("python"), "-c", probe, *modules, cwd=cwd)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository as a wheel, built from a copy so the checkout gets no build/ files."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "*_cache", ".data"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(work), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (built,) = work.glob("otel_audit-*.whl")
    return built


def make_venv(wheel: Path, where: Path, extra: str | None) -> Venv:
    """A fresh venv with the wheel (and the extra) installed by the test venv's own pip."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    venv = Venv(where)
    requirement = f"{wheel}[{extra}]" if extra else str(wheel)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv.bin("python")), "install", "--quiet", requirement],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return venv


@pytest.fixture(scope="module")
def sdk_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(wheel, tmp_path_factory.mktemp("sdk") / "venv", "sdk")


@pytest.fixture(scope="module")
def verifier_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    return make_venv(wheel, tmp_path_factory.mktemp("verifier") / "venv", None)


def readme_sdk_snippet() -> str:
    """The first Python example of README's "Sending audit events": the SDK's."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Sending audit events") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def sealer_fed_by_the_sdk(
    sdk_venv: Venv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Sealer, str]]:
    """A real sealer (the test venv's) that the README snippet, run in the sdk venv, fed."""
    workdir = tmp_path_factory.mktemp("sealer")
    sealer = start_sealer(workdir, SignerKey.generate("installs.example/audit"))
    try:
        script = readme_sdk_snippet().replace("127.0.0.1:4317", sealer.endpoint)
        script += 'print("undelivered:", len(undelivered))\n'
        done = sdk_venv.run(sdk_venv.bin("python"), "-c", script, cwd=workdir)
        yield sealer, done.stdout + done.stderr
    finally:
        sealer.stop()


def with_entry_altered(bundle: bytes, name: str) -> bytes:
    """The bundle with the last byte of one entry flipped (an altered record)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(bundle)) as old, zipfile.ZipFile(out, "w") as new:
        for member in old.namelist():
            data = old.read(member)
            new.writestr(member, data[:-1] + bytes([data[-1] ^ 1]) if member == name else data)
    return out.getvalue()


def signed_size(sealer: Sealer) -> int:
    done = run_cli("status", "--store", sealer.store, "--json")
    assert done.returncode == 0, done.stderr
    logs = json.loads(done.stdout)["logs"]
    return int(logs[0]["checkpoint_tree_size"] or 0) if logs else 0


def test_the_sdk_install_runs_the_readme_snippet_against_a_sealer(sealer_fed_by_the_sdk) -> None:  # type: ignore[no-untyped-def]
    sealer, output = sealer_fed_by_the_sdk
    assert "undelivered: 0" in output, output
    done = run_cli("search", "--store", sealer.store, "--json")
    assert done.returncode == 0, done.stderr
    actions = sorted(json.loads(line)["action"] for line in done.stdout.splitlines())
    assert actions == ["order.cancel", "order.place"]


def test_the_sdk_install_has_nothing_of_the_server(sdk_venv: Venv, tmp_path: Path) -> None:
    found = sdk_venv.importable(
        ("otel_audit.sdk", "opentelemetry.exporter.otlp.proto.http", *SERVER_MODULES), tmp_path
    )
    assert found == {"otel_audit.sdk": True, "opentelemetry.exporter.otlp.proto.http": True} | {
        name: False for name in SERVER_MODULES
    }


def test_the_verifier_install_has_no_engine_grpc_server_or_sdk(verifier_venv: Venv, tmp_path: Path) -> None:
    modules = ("otel_audit.offline_cli", "grpc", "opentelemetry.sdk", "otel_audit.sdk", *SERVER_MODULES)
    found = verifier_venv.importable(modules, tmp_path)
    assert found == {name: name == "otel_audit.offline_cli" for name in modules}
    # (pip installs every console script with any install: `otel-audit` is there but needs [sealer])


def test_the_verifier_install_reaches_the_full_clis_verdict(  # type: ignore[no-untyped-def]
    verifier_venv: Venv, sealer_fed_by_the_sdk, tmp_path: Path
) -> None:
    sealer, _ = sealer_fed_by_the_sdk
    deadline = time.monotonic() + 60
    while signed_size(sealer) < 2:  # the two README events, once a checkpoint signs them
        assert time.monotonic() < deadline, "no checkpoint covered the SDK's events"
        time.sleep(0.2)
    good = tmp_path / "evidence.bundle"
    done = run_cli("export", "--store", sealer.store, "--key", sealer.verifier_key, "--out", str(good))
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "altered.bundle"
    bad.write_bytes(with_entry_altered(good.read_bytes(), entry_path(sealer.key.name, 0)))
    for bundle, code in ((good, 0), (bad, 1)):
        full = run_cli("verify-bundle", str(bundle), "--key", sealer.verifier_key)
        assert full.returncode == code, full.stdout + full.stderr
        assert full.stdout.startswith("OK: 2 of 2 records proven" if code == 0 else "FAILED"), full.stdout
        for command in (
            (verifier_venv.bin("otel-audit-verify"),),
            (verifier_venv.bin("python"), "-m", "otel_audit"),
        ):
            offline = verifier_venv.run(
                *command, "verify-bundle", bundle, "--key", sealer.verifier_key, cwd=tmp_path
            )
            assert (offline.returncode, offline.stdout) == (full.returncode, full.stdout), offline.stderr


def test_the_verifier_install_makes_keys(verifier_venv: Venv, tmp_path: Path) -> None:
    done = verifier_venv.run(
        verifier_venv.bin("otel-audit-verify"), "keygen", "--origin", "examiner.example/audit", "--out",
        tmp_path / "signer.key", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("examiner.example/audit+")
    assert (
        SignerKey.parse((tmp_path / "signer.key").read_text()).verifier().serialize() == done.stdout.strip()
    )


def test_both_command_lines_share_one_definition_of_the_offline_commands() -> None:
    """`otel-audit verify-bundle` and `otel-audit-verify verify-bundle` parse with the same
    argparse actions (and likewise keygen): one definition, so their flags cannot drift."""
    full, offline = sealer_cli.build_parser(), offline_cli.build_parser()
    for name, arguments in (("verify-bundle", offline_cli.VERIFY_BUNDLE_ARGUMENTS),
                            ("keygen", offline_cli.KEYGEN_ARGUMENTS)):  # fmt: skip
        shared = list(arguments._actions)
        for parser in (full, offline):
            (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            actions = sub.choices[name]._actions
            assert all(any(a is b for b in actions) for a in shared), name
