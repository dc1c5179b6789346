"""What a stopped sealer's store holds, read through `otel-audit query` (the store's own
read path, in a process of its own: one process owns an embedded store at a time)."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass

from tests.conftest import CLI

ID_KEY = "campaign.id"  # the attribute every campaign record carries: its unique id


def query(store: str, sql: str) -> list[dict]:
    result = subprocess.run(
        [*CLI, "query", "--store", store, "--format", "JSONEachRow", sql],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"otel-audit query failed ({result.returncode}): {result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


PAGE = 500_000  # rows a query returns, well under `otel-audit query`'s result limit


def stored_ids(store: str) -> Counter[str]:
    """How many times each campaign id is in the log (read a page at a time: a long soak
    holds more ids than one `otel-audit query` may return)."""
    counts: Counter[str] = Counter()
    while True:
        rows = query(
            store,
            f"SELECT LogAttributes['{ID_KEY}'] AS id, count() AS n FROM otel_audit.logs "
            f"WHERE mapContains(LogAttributes, '{ID_KEY}') GROUP BY id ORDER BY id "
            f"LIMIT {PAGE} OFFSET {len(counts)}",
        )
        counts.update({row["id"]: int(row["n"]) for row in rows})
        if len(rows) < PAGE:
            return counts


@dataclass(frozen=True)
class SeqRun:
    """The log's Seq column summed up: contiguous means first 0, last count-1, no repeats."""

    count: int
    distinct: int
    first: int
    last: int

    @property
    def contiguous(self) -> bool:
        return self.count == 0 or (self.first == 0 and self.last == self.count - 1 == self.distinct - 1)


def seq_run(store: str) -> SeqRun:
    row = query(
        store,
        "SELECT count() AS n, uniqExact(Seq) AS d, min(Seq) AS lo, max(Seq) AS hi FROM otel_audit.logs",
    )[0]
    return SeqRun(int(row["n"]), int(row["d"]), int(row["lo"]), int(row["hi"]))
