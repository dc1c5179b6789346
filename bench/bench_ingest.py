"""Sealed ingest vs. a plain clickhouse-connect insert, and verification speed, in one run.

Run by hand (not part of the test suite):

    make bench ARGS="--records 300000 --rounds 5"

1. Builds the records once with the OTel SDK's own OTLP encoder, as ExportLogsServiceRequests of
   --batch records (the SDK's BatchLogRecordProcessor default export size is 512).
2. Sealed: a real `otel-audit serve` on an embedded store in a temp dir; every request goes
   over OTLP/gRPC from --producers concurrent producers; the rate counts records whose Export
   call was acknowledged, i.e. committed to ClickHouse. A second sealer, the same but with
   `--journal off`, gives the journal's cost (sealer/journal.py: one fsync per group commit).
3. Baselines, with clickhouse-connect on the same embedded engine (another data directory),
   into a table with the Collector exporter's otel_logs columns, one INSERT per request:
   (1) plain insert of rows mapped beforehand (not timed); (2) naive unsealed ingest, which
   decodes each request and maps its records (the unsealed counterpart of the sealer).
   The three run in interleaved rounds so that a machine that slows down (this one is a VM)
   slows all of them alike; medians are printed.
4. Verification of the sealed log, fast (default) and --deep, records/s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import clickhouse_connect
import grpc
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.log_verifier import verify_origin  # noqa: E402
from backend.migrations import known  # noqa: E402
from backend.partitions import PARTITION_KEY  # noqa: E402
from backend.store import Store  # noqa: E402
from otel_audit.columns import DERIVED_COLUMNS  # noqa: E402
from otel_audit.derivation import derived_row, shared_columns  # noqa: E402
from otel_audit.note import SignerKey  # noqa: E402
from otel_audit.value_strings import attributes_as_map  # noqa: E402
from tests.conftest import CLI  # noqa: E402


def make_requests(total: int, batch: int) -> list:
    resource = Resource.create({"service.name": "orders", "deployment.environment": "bench"})
    scope = InstrumentationScope("otel_audit", "0.1.0")
    now = time.time_ns()
    requests = []
    for start in range(0, total, batch):
        logs = []
        for i in range(start, min(total, start + batch)):
            record = LogRecord(
                timestamp=now + i,
                observed_timestamp=now + i,
                body=f"order {i} placed by trader-{i % 50}",
                severity_text="INFO",
                severity_number=SeverityNumber.INFO,
                attributes={
                    "user.id": f"trader-{i % 50}",
                    "audit.action": "order.place",
                    "audit.outcome": "success",
                    "audit.resource": f"order/{i}",
                    "client.address": "10.1.2.3",
                },
                event_name="audit",
            )
            logs.append(ReadableLogRecord(record, resource, scope))
        requests.append(encode_logs(logs))
    return requests


def plain_rows(requests: list) -> list[list[tuple]]:
    """The records as otel_logs rows, mapped the way the Collector's exporter maps them."""
    batches = []
    for request in requests:
        rows = []
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                shared = shared_columns(rl, sl)
                for rec in sl.log_records:
                    cols = derived_row(shared, rec, attributes_as_map(rec.attributes), "", 0, 0, "")
                    rows.append(cols[3:-1])  # drop Origin, Seq, SealedAt and Producer
        batches.append(rows)
    return batches


def record_count(requests: list) -> int:
    return sum(len(sl.log_records) for r in requests for rl in r.resource_logs for sl in rl.scope_logs)


class SealedRun:
    """A real `otel-audit serve` on an embedded store, fed over OTLP/gRPC by `producers`."""

    def __init__(
        self,
        workdir: Path,
        producers: int,
        name: str = "sealed",
        journal: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.key_path = workdir / f"{name}.key"
        self.key_path.write_text(SignerKey.generate("bench.example/audit").serialize() + "\n")
        self.proc = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--key",
                str(self.key_path),
                "--store",
                f"chdb://{workdir / name}",
                "--anchor-dir",
                str(workdir / f"{name}-anchors"),
                "--journal",
                str(workdir / f"{name}-journal") if journal else "off",
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "off",
                "--metrics",
                "off",
                "--checkpoint-interval",
                "5",
                *extra,  # e.g. --tsa (bench/bench_trusted_time.py)
            ],
            cwd=workdir,
            stderr=subprocess.PIPE,
            text=True,
        )
        port = None
        for line in self.proc.stderr:  # type: ignore[union-attr]
            match = re.search(r"listening on [\d.]+:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "serve did not start"
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # type: ignore[union-attr]
        self.producers = producers
        self.stubs = [LogsServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}")) for _ in range(producers)]

    def rate(self, requests: list) -> float:
        """Records/s whose Export calls were acknowledged (committed)."""

        def send(i: int) -> None:
            for request in requests[i :: self.producers]:
                self.stubs[i].Export(request, timeout=120)

        start = time.perf_counter()
        with ThreadPoolExecutor(self.producers) as pool:
            list(pool.map(send, range(self.producers)))
        return record_count(requests) / (time.perf_counter() - start)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)


class PlainRun:
    """clickhouse-connect inserts into a table with the Collector exporter's otel_logs columns."""

    def __init__(self, workdir: Path) -> None:
        self.client = clickhouse_connect.get_client(dsn=f"chdb://{workdir / 'plain'}")
        schema = known()[0].sql  # 001_schema, its rules filled in (backend/partitions.py)
        # Our logs table minus the seal columns, ordered and partitioned as otel_logs is.
        ddl = re.search(r"CREATE TABLE IF NOT EXISTS otel_audit.logs(.*?);", schema, re.S).group(1)  # type: ignore[union-attr]
        ddl = re.sub(r"--[^\n]*", "", ddl)
        keep = [
            ln
            for ln in ddl.splitlines()
            if not re.match(r"\s*(Origin|Seq |SealedAt|Entry|LeafHash|ChainHash)", ln)
        ]
        ddl = "\n".join(keep).replace(
            "ORDER BY (Origin, Seq)", "ORDER BY (ServiceName, TimestampTime, Timestamp)"
        )
        ddl = ddl.replace(f"PARTITION BY {PARTITION_KEY}", "PARTITION BY toDate(TimestampTime)")
        self.client.command("CREATE DATABASE IF NOT EXISTS bench")
        self.client.command(f"CREATE TABLE bench.otel_logs {ddl}")
        self.names = DERIVED_COLUMNS[3:-1]  # the otel_logs columns: no seal, no Producer

    def insert_rate(self, batches: list[list[tuple]]) -> float:
        """(1) insert only: rows mapped beforehand, not timed, one INSERT per request."""
        start = time.perf_counter()
        for rows in batches:
            self.client.insert("bench.otel_logs", rows, column_names=self.names)
        return sum(map(len, batches)) / (time.perf_counter() - start)

    def naive_rate(self, raw_requests: list[bytes]) -> float:
        """(2) naive unsealed ingest: decode each request, map its records, INSERT it."""
        start = time.perf_counter()
        n = 0
        for raw in raw_requests:
            rows = plain_rows([ExportLogsServiceRequest.FromString(raw)])[0]
            self.client.insert("bench.otel_logs", rows, column_names=self.names)
            n += len(rows)
        return n / (time.perf_counter() - start)


def bench_verify(workdir: Path, key_path: Path, deep: bool) -> tuple[float, int, bool]:
    key = SignerKey.parse(key_path.read_text()).verifier()
    store = Store.open(f"chdb://{workdir / 'sealed'}")
    start = time.perf_counter()
    report = verify_origin(store, key, workdir / "sealed-anchors", deep=deep)
    elapsed = time.perf_counter() - start
    store.close()
    return report.records / elapsed, report.records, report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="otel-audit-bench-"))
    sealed_run = bare_run = None
    try:
        requests = make_requests(args.records, args.batch)
        print(
            f"{args.records} records, {len(requests)} requests of {args.batch}, "
            f"{args.producers} producers, {os.cpu_count()} cores, {args.rounds} interleaved rounds"
        )
        rounds = [requests[i :: args.rounds] for i in range(args.rounds)]
        plain_run = PlainRun(workdir)
        sealed_run = SealedRun(workdir, args.producers)
        bare_run = SealedRun(workdir, args.producers, "bare", journal=False)
        plain_run.insert_rate(plain_rows(requests[:2]))  # warm up all (not timed)
        sealed_run.rate(requests[:2])
        bare_run.rate(requests[:2])
        rates: dict[str, list[float]] = {"plain": [], "naive": [], "sealed": [], "bare": []}
        for i, part in enumerate(rounds):  # interleaved, so a slower or faster machine hits all alike
            rates["plain"].append(plain_run.insert_rate(plain_rows(part)))
            rates["naive"].append(plain_run.naive_rate([r.SerializeToString() for r in part]))
            pair = (("sealed", sealed_run), ("bare", bare_run))
            for name, run in pair if i % 2 else pair[::-1]:  # neither always goes first
                rates[name].append(run.rate(part))
        sealed_run.stop()
        bare_run.stop()
        sealed_run = bare_run = None
        plain_run.client.close()  # one embedded engine per process: free it for verify
        med = {name: statistics.median(values) for name, values in rates.items()}
        ratio_plain = statistics.median(s / p for s, p in zip(rates["sealed"], rates["plain"]))
        ratio_naive = statistics.median(s / n for s, n in zip(rates["sealed"], rates["naive"]))
        print(f"plain insert, rows prebuilt      : {med['plain']:10,.0f} records/s (median)")
        print(f"naive unsealed ingest            : {med['naive']:10,.0f} records/s (decode + map + insert)")
        print(f"sealed ingest (OTLP gRPC, acked) : {med['sealed']:10,.0f} records/s")
        ratio_journal = statistics.median(s / b for s, b in zip(rates["sealed"], rates["bare"]))
        print(f"sealed ingest, --journal off     : {med['bare']:10,.0f} records/s")
        print(f"ratio with / without the journal : {ratio_journal:10.2f} (median of per-round ratios)")
        print(f"ratio sealed / plain insert      : {ratio_plain:10.2f} (median of per-round ratios)")
        print(f"ratio sealed / naive ingest      : {ratio_naive:10.2f}")
        for deep in (False, True):
            rate, n, ok = bench_verify(workdir, workdir / "sealed.key", deep)
            name = "verify --deep" if deep else "verify (fast, default)"
            print(f"{name:33s}: {rate:10,.0f} records/s ({n} records, ok={ok})")
    finally:
        for run in (sealed_run, bare_run):
            if run is not None:
                run.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
