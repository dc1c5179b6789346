"""Sealed ingest with a TSA (`serve --tsa`) against the same without, in one run.

Run by hand (not part of the test suite):

    PYTHONPATH=. python bench/bench_trusted_time.py --records 200000 --rounds 6

Two real `otel-audit serve` processes on embedded stores, one with `--tsa` pointing at a real
TSA (OpenSSL's `openssl ts -reply` behind tests/tsa.py's HTTP handler, on this machine), fed
the same OTLP/gRPC requests in interleaved rounds (which one goes first alternates), as
bench_ingest.py does. The ratio is the median of the per-round ratios; the budget is 5%
(ratio >= 0.95). `--timestamp-interval` defaults to 1 s here, 60 times the default, so that
the TSA thread works during every round; it also prints how many tokens the TSA issued, and
how many requests a day each TSA receives at the default interval.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_ingest import SealedRun, make_requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tsa import OpensslTsa, make_tsa_files  # noqa: E402

DEFAULT_INTERVAL = 60.0  # serve --timestamp-interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--timestamp-interval", type=float, default=1.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="otel-audit-bench-tsa-"))
    tsa = OpensslTsa(make_tsa_files(workdir / "authority")).start()
    runs: list[SealedRun] = []
    try:
        requests = make_requests(args.records, args.batch)
        print(
            f"{args.records} records, {len(requests)} requests of {args.batch}, {args.producers} producers, "
            f"{os.cpu_count()} cores, {args.rounds} interleaved rounds, timestamp interval "
            f"{args.timestamp_interval:g} s"
        )
        flags = ("--tsa", tsa.url, "--tsa-roots", str(tsa.files.ca_pem),
                 "--timestamp-interval", str(args.timestamp_interval))  # fmt: skip
        with_tsa = SealedRun(workdir, args.producers, "tsa", journal=False, extra=flags)
        runs.append(with_tsa)
        without = SealedRun(workdir, args.producers, "bare", journal=False)
        runs.append(without)
        with_tsa.rate(requests[:2])  # warm up (not timed)
        without.rate(requests[:2])
        rates: dict[str, list[float]] = {"tsa": [], "bare": []}
        for i, part in enumerate(requests[i :: args.rounds] for i in range(args.rounds)):
            pair = (("tsa", with_tsa), ("bare", without))
            for name, run in pair if i % 2 else pair[::-1]:
                rates[name].append(run.rate(part))
        for run in runs:
            run.stop()
        runs.clear()
        ratio = statistics.median(t / b for t, b in zip(rates["tsa"], rates["bare"]))
        print(
            f"sealed ingest with --tsa         : {statistics.median(rates['tsa']):10,.0f} records/s (median)"
        )
        print(f"sealed ingest without            : {statistics.median(rates['bare']):10,.0f} records/s")
        print(
            f"ratio with / without the TSA     : {ratio:10.3f} (median of per-round ratios; budget >= 0.95)"
        )
        print(f"tokens the TSA issued            : {tsa.requests:10d}")
        per_day = 86400 / DEFAULT_INTERVAL
        print(f"requests a day to each TSA at the default {DEFAULT_INTERVAL:g} s: {per_day:,.0f}")
    finally:
        for run in runs:
            run.stop()
        tsa.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
