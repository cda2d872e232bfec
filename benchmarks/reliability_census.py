"""Census of the fault-and-bad-input cases: the table and the counts of docs/reliability.md.

Runs every case of ``tests/reliability`` (full disks on a real tmpfs when run as root), each in
its own Python process so that a crash (a segmentation fault, an abort) is seen as one, and
classifies what happened: clear error, correct, traceback (or crash), silent-wrong, data lost.

    python benchmarks/reliability_census.py [--markdown] [--only ID,ID]

Prints one line per case, then the counts; ``--markdown`` prints the table for the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "tests" / "reliability"
sys.path.insert(0, str(SUITE))
sys.path.insert(0, str(REPO))

from faults import OUTCOMES, Outcome, all_cases, can_mount, classify  # noqa: E402

CHILD = """
import json, os, sys
sys.path[:0] = [{suite!r}, {repo!r}]
from faults import all_cases
case = next(c for c in all_cases() if c.id == {id!r})
out = case.run(__import__("pathlib").Path({tmp!r}))
print("CENSUS-RESULT " + json.dumps(out.__dict__))
"""


def run_in_child(case, timeout: float = 300.0) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="census-") as tmp:
        env = dict(os.environ, OPENMEDLAB_CACHE_DIR=f"{tmp}/cache", OPENMEDLAB_RECOVERY_DIR=f"{tmp}/rec",
                   OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        code = CHILD.format(suite=str(SUITE), repo=str(REPO), id=case.id, tmp=tmp)
        try:
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return Outcome(1, "", "timed out")
        for line in proc.stdout.splitlines():
            if line.startswith("CENSUS-RESULT "):
                return Outcome(**json.loads(line[len("CENSUS-RESULT "):]))
        crash = f"exit {proc.returncode}" + (f" (signal {-proc.returncode})" if proc.returncode < 0 else "")
        return Outcome(proc.returncode or 1, "", f"{crash}: {proc.stderr.strip()[-500:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/reliability.md")
    parser.add_argument("--only", help="comma-separated case ids")
    args = parser.parse_args()
    cases = sorted(all_cases(), key=lambda c: c.group)  # stable: the suite's order within a group
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.id in wanted]
    mount = can_mount()
    results = []
    t0 = time.perf_counter()
    for case in cases:
        if case.needs_mount and not mount:
            results.append((case, "skipped (needs root)", Outcome(0)))
            continue
        out = run_in_child(case)
        result = classify(case, out)
        results.append((case, result, out))
        first = (out.message.strip().splitlines() or [""])[-1][:110]
        print(f"{result:13s} {case.id:38s} {first}", flush=True)
    counts = Counter(r for _, r, _ in results)
    print(f"\n{len(results)} cases in {time.perf_counter() - t0:.0f} s: "
          + ", ".join(f"{counts.get(k, 0)} {k}" for k in (*OUTCOMES, "skipped (needs root)")))
    if args.markdown:
        print("\n| group | case | expected | outcome | what the user reads |")
        print("|---|---|---|---|---|")
        for case, result, out in results:
            text = (out.message.strip().splitlines() or [""])[-1].replace("|", "\\|")
            text = text.replace(str(Path(tempfile.gettempdir())), "/tmp")[:140]
            expected = "clear error" if case.expect == "error" else "correct"
            print(f"| {case.group} | {case.what} | {expected} | {result} | {text} |")
    bad = sum(counts.get(k, 0) for k in ("traceback", "silent-wrong", "data lost"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
