"""Where a sealed run's CPU goes: the rate and the CPU per record of `serve` and its workers.

Run by hand (Linux: it reads /proc), e.g. to compare two commits on the same machine, one
run after the other, the older one from a worktree (the `serve` process it starts runs the
code on PYTHONPATH):

    .venv/bin/python bench/bench_sealed_cpu.py --records 150000 [--journal off]
    git worktree add /tmp/old <rev>
    PYTHONPATH=/tmp/old .venv/bin/python bench/bench_sealed_cpu.py --records 150000

It feeds a real `otel-audit serve` over OTLP/gRPC exactly as bench_ingest.py does (requests
of --batch records from --producers producers) and prints the acknowledged rate, the CPU
time per record of the sealer process, of its sealing workers and of this client, and the
sealer's CPU by thread name (chDB names its threads: MergeMutate, ThreadPool, ...).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_ingest import SealedRun, make_requests, record_count

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(stat_path: str) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    with open(stat_path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _workers_cpu(pid: int) -> float:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return sum(_cpu(f"/proc/{child}/stat") for child in children)


def _threads_cpu(pid: int) -> Counter[str]:
    by_name: Counter[str] = Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm:
                name = comm.read().strip()
            by_name[name] += _cpu(f"/proc/{pid}/task/{tid}/stat")
        except OSError:  # the thread ended meanwhile
            pass
    return by_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--journal", choices=("on", "off"), default="on", help="off: serve --journal off")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="otel-audit-bench-"))
    requests = make_requests(args.records, args.batch)
    run = SealedRun(workdir, args.producers, journal=args.journal == "on")
    try:
        run.rate(requests[:4])  # warm up (not counted)
        pid = run.proc.pid
        sealer, workers, threads = _cpu(f"/proc/{pid}/stat"), _workers_cpu(pid), _threads_cpu(pid)
        client = time.process_time()
        rate = run.rate(requests)
        client = time.process_time() - client
        sealer = _cpu(f"/proc/{pid}/stat") - sealer
        workers = _workers_cpu(pid) - workers
        threads = _threads_cpu(pid) - threads
        n = record_count(requests)
        print(f"{n} records, requests of {args.batch}, {args.producers} producers, {os.cpu_count()} cores")
        print(f"sealed ingest (acknowledged) : {rate:10,.0f} records/s")
        for name, seconds in (("sealer process", sealer), ("sealing workers", workers), ("client", client)):
            print(f"CPU, {name:22s}: {seconds / n * 1e6:10.1f} us/record")
        busiest = ", ".join(f"{name} {seconds / n * 1e6:.1f} us" for name, seconds in threads.most_common(5))
        print(f"sealer CPU by thread        : {busiest}")
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
