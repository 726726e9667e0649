"""The long fuzz run: `python tests/fuzz/run_fuzz.py --cases N [--seed S] [--json] [--keep DIR]`.

Draws about N cases with hypothesis, split over the families by weight (the Ctrl-C and progress
families run the bundled Lite0 for seconds per case, so they get few), runs each (CLI cases in a subprocess with a
time and memory limit, API cases in-process), and prints cases per family, counts per category and
one line per failing case. Same N and seed, same cases. Exit 1 when any case failed.

README's "Reliability" figures come from this script; tests/test_fuzz.py runs the same families
with a small fixed budget in CI.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from fuzz.api import api_cases  # noqa: E402
from fuzz.harness import CATEGORIES, FAILURES, shell_command  # noqa: E402
from fuzz.strategies import FAMILIES  # noqa: E402
from fuzz.workspace import execute  # noqa: E402

ALL = {**FAMILIES, "api": api_cases}
WEIGHTS = {"model": 3, "external": 1, "paddle": 1, "image": 2, "args": 3, "sidecar": 2, "preprocess": 1,
           "output": 1.5, "interrupt": 0.1, "progress": 0.01, "api": 3}


def budget(total: int, families: list[str]) -> dict[str, int]:
    weight = sum(WEIGHTS[f] for f in families)
    return {f: max(1, round(total * WEIGHTS[f] / weight)) for f in families}


def run_family(name: str, n: int, run_seed: int, keep: Path | None, log) -> list[dict]:
    records = []

    @seed(run_seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(ALL[name]())
    def one(plan):
        case, outcome = execute(plan, keep)
        rec = {"family": name, "category": outcome.category, "description": plan.description,
               "detail": outcome.detail, "seconds": round(outcome.seconds, 2),
               "peak_rss_mb": round(outcome.peak_rss_mb), "returncode": outcome.returncode}
        if case.argv is not None:
            rec["argv"] = case.argv
            if keep is not None and outcome.failed:
                rec["reproduce"] = shell_command(case)
        records.append(rec)
        if outcome.failed:
            log(f"[{name}] {outcome.category}: {plan.description} -- {outcome.detail}")
        elif len(records) % 25 == 0:
            log(f"[{name}] {len(records)}/{n} cases")

    one()
    return records


def table(records: list[dict], families: list[str]) -> str:
    counts = defaultdict(Counter)
    for r in records:
        counts[r["family"]][r["category"]] += 1
    seconds = Counter()
    for r in records:
        seconds[r["family"]] += r["seconds"]
    head = f"{'family':<11}{'cases':>7}{'seconds':>9}" + "".join(f"{c:>13}" for c in CATEGORIES)
    lines = [head, "-" * len(head)]
    total = Counter()
    for f in families:
        c = counts[f]
        total.update(c)
        lines.append(f"{f:<11}{sum(c.values()):>7}{seconds[f]:>9.0f}" + "".join(f"{c[k]:>13}" for k in CATEGORIES))
    lines.append("-" * len(head))
    lines.append(f"{'total':<11}{sum(total.values()):>7}{sum(seconds.values()):>9.0f}"
                 + "".join(f"{total[k]:>13}" for k in CATEGORIES))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=500, help="about this many cases in all (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", nargs="+", choices=sorted(ALL), default=list(ALL))
    p.add_argument("--json", action="store_true", help="print the counts and failures as JSON")
    p.add_argument("--keep", type=Path, help="move each failing case's folder here, to replay it")
    args = p.parse_args(argv)
    if args.cases < 1:
        p.error("--cases must be at least 1")
    start = time.monotonic()
    records = []
    for family, n in budget(args.cases, args.families).items():
        records += run_family(family, n, args.seed, args.keep, lambda s: print(s, file=sys.stderr, flush=True))
    failures = [r for r in records if r["category"] in FAILURES]
    if args.json:
        counts = {f: {"cases": sum(r["family"] == f for r in records),
                      "seconds": round(sum(r["seconds"] for r in records if r["family"] == f)),
                      **Counter(r["category"] for r in records if r["family"] == f)} for f in args.families}
        print(json.dumps({"seed": args.seed, "cases": len(records), "seconds": round(time.monotonic() - start),
                          "categories": dict(Counter(r["category"] for r in records)),
                          "families": counts, "failures": failures}, indent=2))
    else:
        print(f"onnxcam fuzz run: {len(records)} cases, seed {args.seed}, "
              f"{time.monotonic() - start:.0f} s\n")
        print(table(records, args.families))
        if failures:
            print(f"\n{len(failures)} failing cases:")
            for r in failures:
                print(f"  [{r['family']}] {r['category']}: {r['description']} -- {r['detail']}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
