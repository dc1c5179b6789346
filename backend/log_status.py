"""The log at a glance, as `otel-audit status` shows it: size, newest checkpoint and its age,
anchors, producers, and the running sealer's readiness."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from otel_audit.anchors import latest_anchor
from otel_audit.checkpoint import read_unverified

from .producer_report import producer_report
from .store import LOGS, Store


@dataclass
class LogStatus:
    origin: str
    records: int
    last_seq: int | None
    unsigned_records: int
    checkpoint_tree_size: int | None
    checkpoint_age_seconds: float | None
    anchored_tree_size: int | None
    timestamped_tree_size: int | None  # the checkpoint of the newest RFC 3161 token stored
    timestamp_age_seconds: float | None  # since that token's time
    producers: dict[str, int]  # producer name ("" when anonymous) -> records
    producer_instances: int
    warnings: list[str]

    def lines(self) -> list[str]:
        if self.checkpoint_tree_size is None:
            signed = "no checkpoint yet"
        else:
            signed = f"checkpoint at {self.checkpoint_tree_size}, {self.checkpoint_age_seconds} s old"
        if self.anchored_tree_size is None:
            anchored = "no anchor read (pass --anchor-dir)"
        else:
            anchored = f"anchored up to {self.anchored_tree_size}"
        if self.timestamped_tree_size is not None:
            size, age = self.timestamped_tree_size, self.timestamp_age_seconds
            anchored += f"; newest time-stamp token over {size}, {age} s old"
        producers = ", ".join(f"{name or '(anonymous)'} {n}" for name, n in self.producers.items()) or "none"
        return [
            f"log {self.origin}: {self.records} records; {signed}; {anchored}",
            f"  producers: {producers}; SDK instances seen: {self.producer_instances}",
            *(f"  warning: {line}" for line in self.warnings),
        ]


def log_status(store: Store, origin: str, anchor_dir: Path | None) -> LogStatus:
    count, _, last = store.seq_range(origin)
    size = age = None
    stored = store.latest_checkpoint(origin)
    if stored is not None:
        signed = read_unverified(stored.note).checkpoint  # status is a glance, keyless; `verify` checks
        size, age = signed.tree_size, round((time.time_ns() - signed.sealed_at_ns) / 1e9, 1)
    anchor = latest_anchor(anchor_dir, origin) if anchor_dir else None
    token = next(iter(store.timestamps(origin, latest_only=True)), None)  # unverified: a glance
    report = producer_report(store, origin)
    by_name = store.select(
        f"SELECT Producer, count() FROM {LOGS} WHERE Origin = {{o:String}} GROUP BY Producer ORDER BY 1",
        {"o": origin},
    )
    return LogStatus(
        origin=origin,
        records=count,
        last_seq=last if count else None,
        unsigned_records=count - (size or 0),
        checkpoint_tree_size=size,
        checkpoint_age_seconds=age,
        anchored_tree_size=anchor.checkpoint.tree_size if anchor else None,
        timestamped_tree_size=token.tree_size if token else None,
        timestamp_age_seconds=round((time.time_ns() - token.gen_time_ns) / 1e9, 1) if token else None,
        producers={str(name): int(n) for name, n in by_name},
        producer_instances=len(report.instances),
        warnings=report.lines(),
    )


def sealer_line(sealer: object) -> str:
    """The running sealer's readiness (sealer/service.py `readiness`), as `status` prints it."""
    if not isinstance(sealer, dict):
        return "sealer: not reached (status read the store directly; a running sealer's /readyz says more)"
    free, minimum = sealer.get("store_free_bytes"), sealer.get("min_free_disk_bytes")
    disk = ""
    if isinstance(free, int) and isinstance(minimum, int):
        disk = f"; store disk: {free >> 20} MiB free, refusing records below {minimum >> 20} MiB"
    state = "ready" if sealer.get("ready") else f"NOT READY: {sealer.get('problem')}"
    witnesses = sealer.get("witnesses")
    if isinstance(witnesses, dict):
        cosigned = ", ".join(f"{n} at tree size {s}" for n, s in sorted(witnesses.items())) or "none yet"
        disk += f"; witnesses cosigned: {cosigned}"
    return f"sealer: {state}{disk}" + "".join(_tsa_lines(sealer.get("timestamps")))


def _tsa_lines(tsas: object) -> list[str]:
    """Each TSA of the running sealer (sealer/timestamper.py `status`): its newest token, or why not."""
    lines = []
    for tsa in tsas if isinstance(tsas, list) else []:
        newest = (
            "no token yet"
            if tsa["tree_size"] is None
            else (f"newest token over checkpoint {tsa['tree_size']}, {tsa['age_seconds']} s old")
        )
        problem = f"; DOWN: {tsa['problem']}" if tsa["problem"] else ""
        lines.append(f"\n  TSA {tsa['url']}: {newest}{problem}")
    return lines
