"""The long kill -9 soak, by hand (the short one runs in the test suite):

    .venv/bin/python bench/soak.py --kills 50 --seed 1

Starts a real `otel-audit serve` on an embedded store in a temp dir, drives it with
--producers concurrent producers over OTLP/gRPC and OTLP/HTTP (protobuf, gzip, JSON), kills it
with SIGKILL at seeded random moments and restarts it on the same store, --kills times; then
stops it cleanly and prints kills survived, records acknowledged, lost and duplicated, whether
Seq is contiguous, `verify`'s exit code, and how many restarts signed what they recovered
before the next kill. Exit 0 when nothing acknowledged was lost and the log verifies.
The logic is tests/campaign/soak.py, shared with tests/test_campaign_soak.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.campaign.soak import Soak, SoakConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--producers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=100, help="records per request")
    parser.add_argument(
        "--min-uptime", type=float, default=0.5, help="seconds, after the first acknowledgement"
    )
    parser.add_argument("--max-uptime", type=float, default=4.0)
    parser.add_argument("--checkpoint-interval", default="10", help="serve's --checkpoint-interval")
    parser.add_argument("--workers", type=int, default=None, help="serve's --workers (default: its own)")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it (default: a temp dir)")
    args = parser.parse_args()
    config = SoakConfig(
        kills=args.kills,
        seed=args.seed,
        producers=args.producers,
        batch=args.batch,
        min_uptime=args.min_uptime,
        max_uptime=args.max_uptime,
        checkpoint_interval=args.checkpoint_interval,
        workers=args.workers,
    )
    started = time.monotonic()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = Soak(args.keep, config).run()
    else:
        with tempfile.TemporaryDirectory(prefix="otel-audit-soak-") as workdir:
            report = Soak(Path(workdir), config).run()
    print(report.summary())
    print(f"took {time.monotonic() - started:.0f} s")
    if report.verify_exit not in (None, 0):
        print(report.verify_output)
    ok = not report.failed_start and not report.lost and report.seq_contiguous and report.verify_exit == 0
    return 0 if ok and not report.refusals else 1


if __name__ == "__main__":
    sys.exit(main())
