"""The long fuzz campaign over both receivers, by hand (the short one runs in the suite):

    .venv/bin/python bench/fuzz.py --examples 20000            # survey: tally every wrong answer
    .venv/bin/python bench/fuzz.py --examples 600 --shrink     # stop at a case's first failure, shrink it

One real `otel-audit serve` in a temp dir; --examples hypothesis examples spread over the
cases of tests/campaign/fuzz.py (extreme records in and beyond the store's time range over
gRPC and HTTP protobuf/gzip/JSON, mutated encodings, inexact gzip, JSON that is not OTLP),
each sent beside a canary producer's good records. The survey counts every wrong answer by
kind and goes on; --shrink lets hypothesis stop at a case's first failure and print the
minimal failing example. Then the sealer is stopped and every record answered OK looked up
in the store, and `verify` run. Prints the requests fuzzed, the canary's, and what was wrong.
--sizes full (default) sends "huge" values up to 3 MiB strings and 10,000 attributes; the
suite sends --sizes small.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

from tests.campaign.fuzz import Case, Target, WrongAnswers, cases  # noqa: E402
from tests.campaign.generate import FULL, SMALL  # noqa: E402


def kind_of(problem: str) -> str:
    """A wrong answer's kind: its message without numbers, ids and quoted details."""
    text = re.sub(
        r"\d{4,}|\b\d+(?= of \d)|(?<= of )\d+|(?<=want )\d+|(?<=rejected )\d+", "N", problem.splitlines()[0]
    )
    return re.sub(r"'[^']{40,}'", "'...'", text)[:160]


def run_case(
    target: Target, name: str, case: Case, examples: int, seed: int, shrink: bool, tally: Counter
) -> None:
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.generate)

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )
    @given(**case.strategies)
    def fuzz(**kwargs: object) -> None:
        if shrink:
            case.run(target, **kwargs)
            return
        try:
            case.run(target, **kwargs)
        except WrongAnswers as exc:
            for problem in exc.problems:
                tally[f"{name}: {kind_of(problem)}"] += 1

    started, before = time.monotonic(), target.ledger.requests
    try:
        fuzz()
    except WrongAnswers as exc:  # --shrink: the minimal failing example is in the notes
        for problem in exc.problems:
            tally[f"{name}: {kind_of(problem)}"] += 1
        print(f"== {name}: {exc}", *getattr(exc, "__notes__", []), sep="\n", flush=True)
    took = time.monotonic() - started
    print(
        f"-- {name}: {target.ledger.requests - before} requests (canary included) in {took:.0f} s", flush=True
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="in all, spread over the cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shrink", action="store_true", help="stop each case at its first failure, shrunk")
    parser.add_argument("--sizes", choices=("full", "small"), default="full")
    parser.add_argument("--case", action="append", help="run only the cases whose name contains this")
    args = parser.parse_args()
    chosen = {
        name: case
        for name, case in cases(FULL if args.sizes == "full" else SMALL).items()
        if not args.case or any(part in name for part in args.case)
    }
    tally: Counter[str] = Counter()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="otel-audit-fuzz-") as workdir:
        target = Target(Path(workdir))
        try:
            for name, case in chosen.items():
                run_case(
                    target, name, case, max(1, args.examples // len(chosen)), args.seed, args.shrink, tally
                )
            problems = target.finish(timeout=120)
        finally:
            target.kill()
    sent = target.ledger.sent
    canary = [s for s in sent if s.what == "canary"]
    print(f"requests fuzzed: {len(sent) - len(canary)}; canary requests: {len(canary)}, ", end="")
    print(f"answered OK: {sum(s.answer.accepted_all for s in canary)}")
    print(f"answers by status: {dict(Counter(s.answer.status for s in sent if s.what != 'canary'))}")
    print(f"wrong answers: {sum(tally.values())}")
    for kind, count in tally.most_common():
        print(f"  {count:6d}  {kind}")
    print(f"after the run: {len(problems)} problems")
    for problem in Counter(kind_of(p.message) for p in problems).most_common(20):
        print(f"  {problem[1]:6d}  {problem[0]}")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0 if not tally and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
