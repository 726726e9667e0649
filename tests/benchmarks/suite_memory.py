"""Peak memory of the test suite as the machine sees it: the summed RSS of the whole process tree.

Why not /usr/bin/time: its "maximum resident set size" is the largest single process, so a suite
that moves heavy tests into child processes (conftest's own_process marker) would look smaller than
it is while parent and child are both alive. This samples every process under the command four
times a second and reports the largest sum (sampling can miss a spike shorter than 0.25 s).

    python tests/benchmarks/suite_memory.py                      # the whole suite
    python tests/benchmarks/suite_memory.py -- -q tests/test_lrp.py -k zennit
    python tests/benchmarks/suite_memory.py --command "bash .ci/run"   # CI as it runs (venv + suite)
"""
from __future__ import annotations

import os
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every process on the machine (one pass over /proc)."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue   # the process ended while we looked
        tree.setdefault(ppid, []).append(int(name))
    return tree


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_rss_mb(root: int) -> tuple[float, int]:
    """Summed RSS of root and all its descendants, and how many processes that is."""
    tree, todo, total, count = _children(), [root], 0.0, 0
    while todo:
        pid = todo.pop()
        total += _rss_mb(pid)
        count += 1
        todo.extend(tree.get(pid, []))
    return total, count


def main(argv: list[str]) -> int:
    if argv[:1] == ["--command"] and len(argv) == 2:
        proc = subprocess.Popen(argv[1], shell=True)
    else:
        args = argv[argv.index("--") + 1:] if "--" in argv else ["-q"]
        proc = subprocess.Popen([sys.executable, "-m", "pytest", *args])
    peak, peak_count = 0.0, 0
    while proc.poll() is None:
        total, count = tree_rss_mb(proc.pid)
        if total > peak:
            peak, peak_count = total, count
        time.sleep(0.25)
    print(f"suite peak RSS (summed over the process tree, sampled every 0.25 s): {peak:.0f} MB "
          f"in {peak_count} process(es); exit {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
