"""Archiving before expiry: each old month of a log as an evidence bundle that verify-bundle
checks offline, proving every Seq of the month (a contiguous run), written read-only."""

from __future__ import annotations

from pathlib import Path

from backend.store import Store
from otel_audit.bundle import verify_bundle

from .conftest import run_cli
from .test_retention import KEY, _seal_months


def test_archive_old_months(tmp_path: Path) -> None:
    store = Store.open(f"chdb://{tmp_path / 'store'}")
    store.ensure_schema()
    store.command("ALTER TABLE otel_audit.logs REMOVE TTL")  # the fake clock seals long-expired months
    _seal_months(store, tmp_path / "anchors", [(2017, 1), (2017, 2), (2026, 11)])
    dsn = store.dsn
    store.close()
    out = tmp_path / "archive"

    def archive(*key: str):  # type: ignore[no-untyped-def]
        return run_cli("archive", "--store", dsn, *key, "--before", "2026-01", "--out", str(out))

    done = archive("--key", KEY.verifier().serialize())
    assert done.returncode == 0, done.stdout + done.stderr
    folder = out / "retention.example%2Faudit"
    assert sorted(p.name for p in folder.iterdir()) == ["201701.bundle", "201702.bundle"]
    for name, seqs in [("201701.bundle", (0, 49)), ("201702.bundle", (50, 99))]:
        report = verify_bundle((folder / name).read_bytes(), [KEY.verifier()])
        assert report.ok and report.ranges == {KEY.name: [seqs]}, report.findings
        assert oct((folder / name).stat().st_mode & 0o777) == "0o444"
    again = archive("--key", KEY.verifier().serialize())
    assert again.returncode == 0 and again.stdout.count("already archived") == 2
    checked = run_cli("verify-bundle", str(folder / "201702.bundle"), "--key", KEY.verifier().serialize())
    assert checked.returncode == 0 and f"{KEY.name}: Seq 50..99" in checked.stdout
    assert archive().returncode == 2  # no key
