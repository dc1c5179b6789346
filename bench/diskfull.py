"""The disk-full experiment, long, by hand (needs root to mount a tmpfs):

    .venv/bin/python bench/diskfull.py --cycles 20 --runs 3

Each run mounts a tmpfs of --size MiB, runs a real `otel-audit serve` on it with --producers
producers sending steadily over OTLP/gRPC, fills the file system with a filler file for
--fill seconds and frees it for --free seconds, --cycles times; then stops the sealer,
starts it again, and counts the acknowledged records the store no longer has (tests/diskfull.py
does the work; tests/test_diskfull.py is the short version in `make test`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.diskfull import mount_tmpfs, run, unmount  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--size", type=int, default=400, help="MiB of the tmpfs")
    parser.add_argument("--fill", type=float, default=3.0, help="seconds the disk stays full")
    parser.add_argument("--free", type=float, default=2.0, help="seconds between fills")
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--records", type=int, default=50, help="records per Export call")
    parser.add_argument("--serve-arg", action="append", default=[], help="passed on to `serve`")
    args = parser.parse_args()
    total_lost = 0
    for number in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix="otel-audit-diskfull-") as tmp:
            mount = Path(tmp) / "fs"
            why = mount_tmpfs(mount, args.size)
            if why is not None:
                print(f"cannot run: {why}", file=sys.stderr)
                return 2
            try:
                outcome = run(
                    mount,
                    cycles=args.cycles,
                    fill_seconds=args.fill,
                    free_seconds=args.free,
                    producers=args.producers,
                    records=args.records,
                    serve_args=tuple(args.serve_arg),
                    progress=lambda line: print(f"  {line}", flush=True),
                )
            finally:
                unmount(mount)
        total_lost += outcome.lost
        print(
            f"run {number}: acked {outcome.acked}, lost {outcome.lost}, in the store {outcome.stored}; "
            f"refused calls {outcome.refused_calls}; not ready while full: {outcome.not_ready_during_fill}; "
            f"ready after: {outcome.ready_after_fill}; restart: {outcome.restart or 'ok'}; "
            f"verify: {'OK' if outcome.verify_ok else 'FAILED'}; "
            f"the sealer found lost rows: {'yes' if outcome.halted else 'no'}",
            flush=True,
        )
        if outcome.halted:
            print(f"  the sealer said: {outcome.halted.strip()[:400]}")
        for reason in sorted(outcome.refusals)[:5]:
            print(f"  /readyz said: {reason}")
        for error in sorted(outcome.errors)[:5]:
            print(f"  Export said: {error}")
        if not outcome.verify_ok:
            print("  verify: " + outcome.verify.strip().replace("\n", "\n    "))
        if outcome.lost or not outcome.verify_ok:
            saved = Path(tempfile.gettempdir()) / f"otel-audit-diskfull-run{number}.log"
            saved.write_text(outcome.output)
            print(f"  the sealer's log: {saved}")
    print(f"lost acknowledged records over {args.runs} run(s): {total_lost}")
    return 0 if total_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
