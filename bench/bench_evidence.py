"""Evidence speed on a large log: inclusion proofs, search, export with proofs.

Run by hand (not part of the test suite):

    .venv/bin/python bench/bench_evidence.py --records 10000000

1. Builds (once; reused from --data on later runs) a sealed log of --records records with the
   sealer's own pipeline and checkpointer, in process: 30 days of events, 1,000 users, 20
   services, 12 actions, timestamps increasing with Seq as in a live log. The checkpointer
   stores the tree nodes (tiles) as the real sealer does.
2. Measures, each against a baseline run in the same process on the same store:
   - one inclusion proof (C2SP tlog-proof, checked against the signed root) for random
     records; baseline: the root recomputed from every leaf hash, which is what a proof
     without stored tree nodes would cost;
   - search for one user's events for one day; baseline: the same query with the skip
     indexes and part statistics switched off, i.e. a scan of the whole table;
   - export of ~100k records with proofs into a bundle; baseline: reading the same entries
     with no proofs and no bundle.
Targets (issue 3): proof < 50 ms, search < 200 ms, export of 100k < 10 s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.evidence import (  # noqa: E402
    ORDER,
    Search,
    export,
    inclusion_proof,
    search,
)
from backend.store import LOGS, Store, select_list  # noqa: E402
from otel_audit.merkle import CompactRange  # noqa: E402
from otel_audit.note import SignerKey  # noqa: E402
from sealer.checkpointer import Checkpointer  # noqa: E402
from sealer.pipeline import Pipeline, PublishedLog  # noqa: E402
from sealer.prepare import Prepared, Rules, prepare_request  # noqa: E402
from sealer.recovery import recover  # noqa: E402

DAY_NS = 86_400 * 10**9
START_NS = 1_772_496_000 * 10**9  # 2026-03-03T00:00Z
DAYS, USERS, SERVICES = 30, 1000, 20
ACTIONS = [
    f"{noun}.{verb}"
    for noun in ("order", "account", "position")
    for verb in ("create", "read", "update", "delete")
]
KEY = SignerKey.from_seed("bench.example/audit", b"\x42" * 32)


def _records(first: int, count: int, total: int) -> Prepared:
    """Records first..first+count-1 as one request (one ResourceLogs each: services take turns)."""
    request = ExportLogsServiceRequest()
    step = DAYS * DAY_NS // total
    rng = random.Random(first)
    for i in range(first, first + count):
        user, action = f"user-{rng.randrange(USERS)}", ACTIONS[i % len(ACTIONS)]
        attributes = {
            "user.id": user,
            "audit.action": action,
            "audit.outcome": "failure" if i % 17 == 0 else "success",
            "audit.resource": f"{action.split('.')[0]}/{i}",
        }
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.add(key="service.name").value.string_value = f"svc-{i % SERVICES}"
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = "otel_audit"
        record = scope_logs.log_records.add(
            time_unix_nano=START_NS + i * step, body=AnyValue(string_value=f"{user} {action} #{i}")
        )
        for k, v in attributes.items():
            record.attributes.add(key=k).value.string_value = v
    return prepare_request(request.SerializeToString(), Rules())


def build(data: Path, total: int) -> None:
    store = Store.open(f"chdb://{data / 'store'}")
    store.ensure_schema()
    state = recover(store, KEY.name, KEY.verifier(), data / "anchors")
    if state.size >= total:
        store.close()
        return
    print(f"building a log of {total:,} records in {data} (once) ...", flush=True)
    published = PublishedLog(state)
    checkpointer = Checkpointer(store, KEY, data / "anchors", published.current, 3600)
    pipeline = Pipeline(store, published, on_commit=checkpointer.record_column_hashes)
    pipeline.start()
    began = time.perf_counter()
    batch = 20_000
    for first in range(state.size, total, batch):
        pipeline.seal(_records(first, min(batch, total - first), total))
        if (first // batch) % 50 == 0:
            print(f"  {first:,} sealed, {first / (time.perf_counter() - began):,.0f} rec/s", flush=True)
            checkpointer.checkpoint_now()
    pipeline.stop()
    checkpointer.checkpoint_now()
    store.close()
    print(f"built in {time.perf_counter() - began:.0f} s", flush=True)


def _median_ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, max {max(samples) * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--data", type=Path, help="where the log is kept (default bench/.data/evidence-N)")
    parser.add_argument("--proofs", type=int, default=50)
    parser.add_argument("--export-days", type=int, default=6, help="days of one service to export")
    args = parser.parse_args()
    data = (args.data or ROOT / "bench" / ".data" / f"evidence-{args.records}").resolve()
    build(data, args.records)
    store = Store.open(f"chdb://{data / 'store'}")
    origin, key = KEY.name, KEY.verifier()
    size = store.latest_checkpoint(origin).tree_size  # type: ignore[union-attr]
    stored = sum(store.node_count(origin, h) for h in range(4, 64, 4))
    print(f"log: {size:,} records, tree nodes stored: {stored:,} (heights 4, 8, 12, ...)")

    rng = random.Random(7)
    inclusion_proof(store, origin, 0, key)  # warm the engine's caches once
    timings = []
    for _ in range(args.proofs):
        seq = rng.randrange(size)
        began = time.perf_counter()
        inclusion_proof(store, origin, seq, key)
        timings.append(time.perf_counter() - began)
    began = time.perf_counter()
    sample = min(size, 1_000_000)
    blob = store.leaf_hashes(origin, 0, sample)
    CompactRange().extend(blob[i : i + 32] for i in range(0, len(blob), 32))
    rehash = (time.perf_counter() - began) * size / sample
    proof_ms = statistics.median(timings) * 1000
    print(f"inclusion proof: {_median_ms(timings)}  (target < 50 ms)")
    print(f"  baseline, root rehashed from every leaf: {rehash:.1f} s (extrapolated from 1M)")
    print(f"  ratio baseline / proof: {rehash * 1000 / proof_ms:,.0f}x")

    day = START_NS + 10 * DAY_NS
    timings, baseline, found = [], [], 0
    for user in rng.sample(range(USERS), 10):
        query = Search(since_ns=day, until_ns=day + DAY_NS, actor=f"user-{user}")
        began = time.perf_counter()
        rows, _ = search(store, query, 100_000)
        timings.append(time.perf_counter() - began)
        found += len(rows)
        where, params = query.where()
        began = time.perf_counter()
        store.select(
            f"SELECT {select_list()} FROM {LOGS} WHERE {where} {ORDER} "
            "SETTINGS use_skip_indexes = 0, use_statistics_for_part_pruning = 0",
            params,
        )
        baseline.append(time.perf_counter() - began)
    each = found / len(timings)
    print(f"search one user, one day: {_median_ms(timings)}, {each:.0f} records each  (target < 200 ms)")
    print(
        f"  baseline, the same query as a full scan (no skip indexes or statistics): {_median_ms(baseline)}"
    )
    print(f"  ratio baseline / search: {statistics.median(baseline) / statistics.median(timings):.1f}x")

    query = Search(
        service="svc-3", since_ns=START_NS + 3 * DAY_NS, until_ns=START_NS + (3 + args.export_days) * DAY_NS
    )
    where, params = query.where()
    began = time.perf_counter()
    plain = store.select(f"SELECT Seq, Entry FROM otel_audit.logs WHERE {where} ORDER BY Timestamp", params)
    plain_s = time.perf_counter() - began
    began = time.perf_counter()
    done = export(store, query, [key])
    export_s = time.perf_counter() - began
    megabytes = len(done.bundle) / 1e6
    print(f"export with proofs: {done.records:,} records in {export_s:.2f} s, bundle {megabytes:.1f} MB")
    print(f"  ({done.records / export_s:,.0f} records/s; target 100k in < 10 s)")
    print(f"  baseline, the same entries read with no proofs: {len(plain):,} in {plain_s:.2f} s")
    print(f"  ratio export / baseline: {export_s / plain_s:.1f}x")
    store.close()


if __name__ == "__main__":
    main()
