"""Sealed ingest vs. a plain clickhouse-connect insert, and verification speed, in one run.

Run by hand (not part of the test suite):

    .venv/bin/python bench/bench_ingest.py [--records 200000] [--batch 512] [--producers 8]

1. Builds the records once with the OTel SDK's own OTLP encoder, as ExportLogsServiceRequests of
   --batch records (the SDK's BatchLogRecordProcessor default export size is 512).
2. Sealed: starts a real `otel-audit serve` on an embedded store in a temp dir and sends every
   request over OTLP/gRPC from --producers concurrent producers; the rate counts records whose
   Export call was acknowledged, i.e. committed to ClickHouse.
3. Baseline: the same records, converted to otel_logs rows beforehand (not timed), inserted with
   clickhouse-connect in batches of the same size into a table with the Collector exporter's
   otel_logs columns, on the same embedded engine in a fresh data directory.
4. Verification: `verify` logic over the sealed store, records/s.
Prints each figure and the ratio sealed / baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
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

from backend.readers import verify_origin  # noqa: E402
from backend.store import Store  # noqa: E402
from otel_audit.note import SignerKey  # noqa: E402


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
    from otel_audit.entry import Seal, _shared_columns, attributes_as_map, record_columns

    batches = []
    no_seal = Seal("", 0, 0)
    for request in requests:
        rows = []
        for rl in request.resource_logs:
            for sl in rl.scope_logs:
                shared = _shared_columns(rl, sl)
                for rec in sl.log_records:
                    cols = record_columns(shared, rec, no_seal, attributes_as_map(rec.attributes))
                    rows.append(cols[3:])  # drop Origin, Seq, SealedAt
        batches.append(rows)
    return batches


def bench_sealed(requests: list, producers: int, workdir: Path) -> tuple[float, Path]:
    key_path = workdir / "bench.key"
    key_path.write_text(SignerKey.generate("bench.example/audit").serialize() + "\n")
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_audit.cli", "serve", "--key", str(key_path),
         "--store", f"chdb://{workdir / 'sealed'}", "--anchor-dir", str(workdir / "anchors"),
         "--grpc", "127.0.0.1:0", "--checkpoint-interval", "5"],
        cwd=workdir, stderr=subprocess.PIPE, text=True, env=env,
    )
    port = None
    for line in proc.stderr:  # type: ignore[union-attr]
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    assert port, "serve did not start"
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # drain
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for _ in range(producers)]
    stubs = [LogsServiceStub(c) for c in channels]
    stubs[0].Export(requests[0], timeout=30)  # warm up (not timed)
    todo = requests[1:]

    def send(i: int) -> int:
        n = 0
        for request in todo[i::producers]:
            stubs[i].Export(request, timeout=60)
            n += sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(producers) as pool:
        sent = sum(pool.map(send, range(producers)))
    elapsed = time.perf_counter() - start
    proc.terminate()
    proc.wait(timeout=120)
    return sent / elapsed, key_path


def bench_plain(requests: list, workdir: Path) -> tuple[float, float]:
    """Two baselines into a table with the Collector exporter's otel_logs columns:
    (1) insert only: rows converted beforehand, not timed;
    (2) naive ingest: decode each OTLP request, map its records to rows, insert it."""
    raw_requests = [r.SerializeToString() for r in requests]
    batches = plain_rows(requests)
    client = clickhouse_connect.get_client(dsn=f"chdb://{workdir / 'plain'}")
    schema = (ROOT / "backend" / "sql" / "001_schema.sql").read_text()
    # The Collector exporter's otel_logs: our logs table minus the seal columns and index.
    ddl = re.search(r"CREATE TABLE IF NOT EXISTS otel_audit.logs(.*?);", schema, re.S).group(1)  # type: ignore[union-attr]
    ddl = re.sub(r"--[^\n]*", "", ddl)
    keep = [ln for ln in ddl.splitlines() if not re.match(
        r"\s*(Origin|Seq |SealedAt|Entry|LeafHash|ChainHash)", ln)]
    ddl = "\n".join(keep).replace("ORDER BY (Origin, Seq)", "ORDER BY (ServiceName, TimestampTime, Timestamp)")
    ddl = ddl.replace("PARTITION BY toYYYYMM(SealedAt)", "PARTITION BY toDate(TimestampTime)")
    client.command("CREATE DATABASE IF NOT EXISTS bench")
    client.command(f"CREATE TABLE bench.otel_logs {ddl}")
    from otel_audit.entry import DERIVED_COLUMNS

    names = DERIVED_COLUMNS[3:]
    client.insert("bench.otel_logs", batches[0], column_names=names)  # warm up
    start = time.perf_counter()
    n = 0
    for rows in batches[1:]:
        client.insert("bench.otel_logs", rows, column_names=names)
        n += len(rows)
    insert_only = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for raw in raw_requests[1:]:
        client.insert("bench.otel_logs", plain_rows([ExportLogsServiceRequest.FromString(raw)])[0],
                      column_names=names)
    naive = n / (time.perf_counter() - start)
    client.close()
    return insert_only, naive


def bench_verify(workdir: Path, key_path: Path, deep: bool) -> tuple[float, int, bool]:
    key = SignerKey.parse(key_path.read_text()).verifier()
    store = Store.open(f"chdb://{workdir / 'sealed'}")
    start = time.perf_counter()
    report = verify_origin(store, key, workdir / "anchors", deep=deep)
    elapsed = time.perf_counter() - start
    store.close()
    return report.records / elapsed, report.records, report.ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--skip", choices=["sealed", "plain", "verify"], action="append", default=[])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="otel-audit-bench-"))
    try:
        requests = make_requests(args.records, args.batch)
        print(f"{args.records} records, {len(requests)} requests of {args.batch}, "
              f"{args.producers} producers, {os.cpu_count()} cores")
        sealed = plain = naive = 0.0
        if "plain" not in args.skip:
            plain, naive = bench_plain(requests, workdir)
            print(f"plain insert, rows prebuilt     : {plain:10,.0f} records/s")
            print(f"naive unsealed ingest           : {naive:10,.0f} records/s  (decode + map + insert)")
        if "sealed" not in args.skip:
            sealed, key_path = bench_sealed(requests, args.producers, workdir)
            print(f"sealed ingest (OTLP gRPC, acked): {sealed:10,.0f} records/s")
            if plain:
                print(f"ratio sealed / plain insert     : {sealed / plain:10.2f}")
                print(f"ratio sealed / naive ingest     : {sealed / naive:10.2f}")
            if "verify" not in args.skip:
                for deep in (False, True):
                    rate, n, ok = bench_verify(workdir, key_path, deep)
                    name = "verify --deep" if deep else "verify (fast, default)"
                    print(f"{name:32s}: {rate:10,.0f} records/s ({n} records, ok={ok})")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
