"""Tampering with the real embedded store by SQL: every change is caught and located.

One log is built once by a real `otel-audit serve` (several checkpoints, anchors on disk);
each test works on its own copy of the store and anchor directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.store import Store
from otel_audit.anchors import read_anchors
from otel_audit.chain import CHAIN_START, chain_next
from otel_audit.merkle import hash_leaf
from otel_audit.note import SignerKey

from .conftest import run_cli, start_sealer
from .producers import send_audit_events

pytestmark = pytest.mark.integration
RECORDS = 300


@pytest.fixture(scope="module")
def sealed_log(tmp_path_factory) -> tuple[Path, SignerKey]:
    workdir = tmp_path_factory.mktemp("sealed")
    key = SignerKey.generate("tamper.example/audit")
    sealer = start_sealer(workdir, key)
    for part in range(3):  # three sends, each followed by a checkpoint
        send_audit_events(sealer.endpoint, RECORDS // 3, start=part * RECORDS // 3)
        sealer.wait_for_output(rf"checkpoint \S+ size {(part + 1) * RECORDS // 3}\b")
    assert sealer.stop() == 0
    return workdir, key


@pytest.fixture(params=["fast", "deep"])
def copy(sealed_log, tmp_path, request) -> tuple[Path, SignerKey]:
    """A copy of the sealed log; verify() checks it the fast (default) or the --deep way."""
    workdir, key = sealed_log
    (tmp_path / "mode").write_text(request.param)
    shutil.copytree(workdir / "store", tmp_path / "store", symlinks=True)  # chDB links are relative
    shutil.copytree(workdir / "anchors", tmp_path / "anchors")
    return tmp_path, key


def sql(workdir: Path, *statements: str) -> None:
    store = Store.open(f"chdb://{workdir / 'store'}")
    try:
        for statement in statements:
            store.command(statement)
    finally:
        store.close()


def verify(workdir: Path, key: SignerKey, vkey: str | None = None) -> tuple[int, dict]:
    deep = ["--deep"] if (workdir / "mode").read_text() == "deep" else []
    result = run_cli(
        "verify",
        "--store",
        f"chdb://{workdir / 'store'}",
        "--key",
        vkey or key.verifier().serialize(),
        "--anchor-dir",
        str(workdir / "anchors"),
        "--json",
        *deep,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def kinds_at(report: dict) -> set[tuple[str, int | None]]:
    return {(f["kind"], f["first_seq"]) for f in report["findings"]}


def mutate(where: str, assignment: str) -> str:
    return f"ALTER TABLE otel_audit.logs UPDATE {assignment} WHERE {where} SETTINGS mutations_sync = 2"


def test_untouched_copy_verifies(copy):
    code, report = verify(*copy)
    assert code == 0 and report["records"] == RECORDS and report["signed_size"] == RECORDS
    assert report["checkpoints_verified"] >= 3 and report["anchors_verified"] >= 3
    assert report["warnings"] == [] and report["notes"] == []


@pytest.mark.parametrize(
    ("assignment", "column"),
    [
        ("Body = 'nothing happened'", "Body"),
        ("LogAttributes = mapUpdate(LogAttributes, map('user.id', 'someone-else'))", "LogAttributes"),
        ("ServiceName = 'other'", "ServiceName"),
        ("Timestamp = Timestamp + 1", "Timestamp"),
        ("ObservedTimestamp = ObservedTimestamp - 1", "ObservedTimestamp"),
        ("EventName = ''", "EventName"),
        ("SeverityNumber = 1", "SeverityNumber"),
        ("ResourceAttributes = map()", "ResourceAttributes"),
        ("TimestampTime = TimestampTime + 3600", "TimestampTime"),
    ],
)
def test_an_updated_column_is_caught_at_its_seq(copy, assignment, column):
    sql(copy[0], mutate("Seq = 17", assignment))
    code, report = verify(*copy)
    assert code == 1
    assert kinds_at(report) == {("column", 17)}
    assert column in report["findings"][0]["message"]


def test_a_deleted_row_is_reported_missing(copy):
    sql(copy[0], "ALTER TABLE otel_audit.logs DELETE WHERE Seq = 42 SETTINGS mutations_sync = 2")
    code, report = verify(*copy)
    assert code == 1
    assert ("missing", 42) in kinds_at(report)
    assert all(f["first_seq"] is None or f["first_seq"] >= 42 for f in report["findings"])


def test_a_forged_inserted_row_is_reported_as_duplicate(copy):
    sql(
        copy[0],
        "INSERT INTO otel_audit.logs SELECT * REPLACE ('forged' AS Body) FROM otel_audit.logs WHERE Seq = 10",
    )
    code, report = verify(*copy)
    assert code == 1 and ("duplicate", 10) in kinds_at(report)


def test_reordered_rows_are_caught(copy):
    sql(
        copy[0],
        "CREATE TABLE otel_audit.swap AS otel_audit.logs",
        "INSERT INTO otel_audit.swap SELECT * REPLACE (if(Seq = 5, 6, 5) AS Seq) "
        "FROM otel_audit.logs WHERE Seq IN (5, 6)",
        "ALTER TABLE otel_audit.logs DELETE WHERE Seq IN (5, 6) SETTINGS mutations_sync = 2",
        "INSERT INTO otel_audit.logs SELECT * FROM otel_audit.swap",
    )
    code, report = verify(*copy)
    assert code == 1
    assert {("column", 5), ("column", 6)} <= kinds_at(report)
    assert all("Seq" in f["message"] for f in report["findings"] if f["kind"] == "column")


def test_a_rewritten_entry_with_its_hash_is_caught(copy):
    sql(
        copy[0],
        mutate("Seq = 99", "Entry = replaceOne(Entry, 'placed', 'voided')"),
        mutate("Seq = 99", "LeafHash = SHA256(concat(char(0), Entry))"),
    )
    code, report = verify(*copy)
    assert code == 1
    assert ("chain_hash", 99) in kinds_at(report) and ("column", 99) in kinds_at(report)


def test_a_consistent_rewrite_of_the_whole_tail_is_caught_by_the_signed_root(copy):
    """The attacker rewrites Seq 150 and recomputes every hash after it: only the signature stops them."""
    workdir, key = copy
    store = Store.open(f"chdb://{workdir / 'store'}")
    try:
        described = store.client.query("DESCRIBE otel_audit.logs").result_rows
        names = [c[0] for c in described]
        nanos = {c[0] for c in described if c[1].startswith("DateTime64")}
        select = [f"toUnixTimestamp64Nano({n}) AS {n}" if n in nanos else n for n in names]
        rows = store.client.query(
            f"SELECT {', '.join(select)} FROM otel_audit.logs ORDER BY Seq",
            column_formats={"Entry": "bytes"},
        ).result_rows
        entry_i, leaf_i, chain_i, seq_i, body_i = (
            names.index(n) for n in ("Entry", "LeafHash", "ChainHash", "Seq", "Body")
        )
        chain = CHAIN_START
        forged = []
        for row in rows:
            row = list(row)
            if row[seq_i] == 150:
                row[entry_i] = row[entry_i].replace(b"order 150 placed", b"order 150 voided")
                row[body_i] = "order 150 voided"
            row[leaf_i] = hash_leaf(row[entry_i])
            chain = chain_next(chain, row[leaf_i])
            row[chain_i] = chain
            forged.append(row)
        store.command("TRUNCATE TABLE otel_audit.logs")
        store.client.insert("otel_audit.logs", forged, column_names=names)
    finally:
        store.close()
    code, report = verify(workdir, key)
    assert code == 1
    roots = [f for f in report["findings"] if f["kind"] == "root"]
    assert roots and roots[0]["first_seq"] == 100 and roots[0]["last_seq"] == 199
    assert not [f for f in report["findings"] if f["kind"] in ("leaf_hash", "chain_hash")]
    columns = [(f["first_seq"], f["last_seq"]) for f in report["findings"] if f["kind"] == "column"]
    # The fast path also sees that the columns differ from what was sealed; the deep path
    # compares columns with the (rewritten) entries only.
    assert columns == ([] if report["mode"] == "deep" else [(100, 199)])


def test_truncating_the_tail_and_its_checkpoints_is_caught_by_the_anchors(copy):
    sql(
        copy[0],
        "ALTER TABLE otel_audit.logs DELETE WHERE Seq >= 250 SETTINGS mutations_sync = 2",
        "ALTER TABLE otel_audit.checkpoints DELETE WHERE TreeSize > 250 SETTINGS mutations_sync = 2",
    )
    code, report = verify(*copy)
    assert code == 1
    truncated = [f for f in report["findings"] if f["kind"] == "truncated"]
    assert truncated and truncated[0]["first_seq"] == 250 and truncated[-1]["last_seq"] == RECORDS - 1


def test_a_forged_checkpoint_note_is_caught(copy):
    sql(
        copy[0],
        "ALTER TABLE otel_audit.checkpoints UPDATE Note = replaceOne(Note, '\\n200\\n', '\\n201\\n') "
        "WHERE TreeSize = 200 SETTINGS mutations_sync = 2",
    )
    code, report = verify(*copy)
    assert code == 1 and any(f["kind"] == "signature" and "200" in f["message"] for f in report["findings"])


def test_the_wrong_key_fails_every_signature(copy):
    workdir, key = copy
    other = SignerKey.generate(key.name).verifier().serialize()
    code, report = verify(workdir, key, other)
    assert code == 1 and report["checkpoints_verified"] == 0
    assert {f["kind"] for f in report["findings"]} == {"signature"}


def test_a_corrupt_anchor_file_is_named(copy):
    workdir, key = copy
    anchors, _ = read_anchors(workdir / "anchors", key.name)
    anchors[0].path.write_text("garbage\n")
    code, report = verify(workdir, key)
    assert code == 1 and any(
        f["kind"] == "anchor" and anchors[0].path.name in f["message"] for f in report["findings"]
    )


def test_rows_deleted_across_a_checkpoint_are_one_missing_range_never_a_reversed_one(copy):
    """Seq 50..149 deleted, across the checkpoint at 100: that checkpoint's root cannot be
    recomputed, which the missing range already says; it is no `truncated` Seq 300..99."""
    sql(
        copy[0], "ALTER TABLE otel_audit.logs DELETE WHERE Seq BETWEEN 50 AND 149 SETTINGS mutations_sync = 2"
    )
    code, report = verify(*copy)
    assert code == 1
    assert [(f["kind"], f["first_seq"], f["last_seq"]) for f in report["findings"]] == [("missing", 50, 149)]


def test_deleted_and_reordered_rows_give_ranges_in_order(copy):
    sql(
        copy[0],
        "ALTER TABLE otel_audit.logs DELETE WHERE Seq BETWEEN 150 AND 210 SETTINGS mutations_sync = 2",
        "CREATE TABLE otel_audit.swap AS otel_audit.logs",
        "INSERT INTO otel_audit.swap SELECT * REPLACE (if(Seq = 30, 250, 30) AS Seq) "
        "FROM otel_audit.logs WHERE Seq IN (30, 250)",
        "ALTER TABLE otel_audit.logs DELETE WHERE Seq IN (30, 250) SETTINGS mutations_sync = 2",
        "INSERT INTO otel_audit.logs SELECT * FROM otel_audit.swap",
    )
    code, report = verify(*copy)
    assert code == 1 and ("missing", 150) in kinds_at(report)
    for finding in report["findings"]:
        if finding["first_seq"] is not None and finding["last_seq"] is not None:
            assert finding["first_seq"] <= finding["last_seq"], finding


def _keep_anchors(workdir: Path, key: SignerKey, drop_newest: int) -> list[int]:
    """Delete the newest anchors (and point latest.checkpoint at the newest one left, as an
    intruder would); the tree sizes anchored before (those of the stored checkpoints), newest last."""
    anchors, _ = read_anchors(workdir / "anchors", key.name)
    numbered = sorted(
        {a.checkpoint.tree_size: a for a in anchors if a.path.name != "latest.checkpoint"}.items()
    )
    for _, anchor in numbered[len(numbered) - drop_newest :]:
        anchor.path.unlink()
    kept = numbered[len(numbered) - drop_newest - 1][1]
    (kept.path.parent / "latest.checkpoint").write_text(kept.path.read_text())
    return [size for size, _ in numbered]


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_no_anchors_is_a_plain_warning(copy, how):
    workdir, key = copy
    if how == "missing":
        shutil.rmtree(workdir / "anchors")
    else:
        for path in (workdir / "anchors").rglob("*.checkpoint"):
            path.unlink()
    code, report = verify(workdir, key)
    assert code == 0 and report["anchors_verified"] == 0
    [warning] = report["warnings"]
    assert ("does not exist" if how == "missing" else "holds no anchor of tamper.example/audit") in warning
    assert "nothing outside the database proves that the log was not rolled back" in warning
    text = run_cli("verify", "--store", f"chdb://{workdir / 'store'}", "--key", key.verifier().serialize(),
                   "--anchor-dir", str(workdir / "anchors"))  # fmt: skip
    assert text.returncode == 0 and "\nWARNING: " in text.stdout and "rolled back" in text.stdout


def test_newest_anchors_deleted_while_the_store_holds_their_checkpoints_fails(copy):
    workdir, key = copy
    sizes = _keep_anchors(workdir, key, drop_newest=2)
    code, report = verify(workdir, key)
    assert code == 1
    assert [(f["kind"], f["first_seq"], f["last_seq"]) for f in report["findings"]] == [
        ("unanchored", sizes[-3], sizes[-1] - 1)
    ]


def test_only_the_newest_anchor_missing_is_a_crash_between_store_and_anchor(copy):
    workdir, key = copy
    sizes = _keep_anchors(workdir, key, drop_newest=1)
    code, report = verify(workdir, key)
    assert code == 0 and report["warnings"] == []
    [note] = report["notes"]
    assert f"the newest checkpoint (tree size {sizes[-1]}) has no anchor yet" in note


LOST_PARTS = {  # the rows deleted, as SQL and as the Seq numbers it selects
    "the tail": ("Seq >= 150", set(range(150, RECORDS))),
    "a middle range and the tail": (
        "Seq >= 120 AND Seq < 180 OR Seq >= 250",
        set(range(120, 180)) | set(range(250, RECORDS)),
    ),
    "a range across a checkpoint and the last rows": (
        "Seq >= 90 AND Seq < 110 OR Seq >= 290",
        set(range(90, 110)) | set(range(290, RECORDS)),
    ),
}


@pytest.mark.parametrize("deleted", LOST_PARTS)
def test_rows_lost_with_their_checkpoints_kept_give_ranges_in_order(copy, deleted):
    """What a full disk left (parts lost, every checkpoint still there): every finding's range
    runs forward and together they name each lost Seq; no traceback."""
    where, lost = LOST_PARTS[deleted]
    sql(copy[0], f"ALTER TABLE otel_audit.logs DELETE WHERE {where} SETTINGS mutations_sync = 2")
    code, report = verify(*copy)
    assert code == 1, report
    named: set[int] = set()
    for finding in report["findings"]:
        first, last = finding["first_seq"], finding["last_seq"]
        if first is not None and last is not None:
            assert first <= last, finding
            named.update(range(first, last + 1))
    assert lost <= named, sorted(lost - named)[:10]
