"""Every interactive figure of issue #12 in one run: the benchmarks one after the other, each
with its baseline alternating inside it, with the machine's load printed before and after each.

    python benchmarks/bench_interactive.py [--quick]

Runs, in order (each in its own process, so one's memory does not slow the next):

* ``bench_sam_med3d_defaults.py``: SAM-Med3D with the defaults vs the engine before #12, large
  and small objects, streaming, a liver-sized object, one core kept busy, the encoder alone;
* ``bench_sam_med2d_propagation.py``: SAM-Med2D through 30 slices, defaults vs before;
* ``bench_weight_free.py``: the weight-free engine on 512 x 512 x 300 vs the one it replaced.

``--quick`` runs one round of each (a smoke test; the docs quote the full run). The output is
what ``docs/benchmarks.md`` quotes; say with it whether other work shared the machine (the load
averages printed here tell).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = {
    "SAM-Med3D with the defaults": (["bench_sam_med3d_defaults.py", "--rounds", "2"],
                                    ["bench_sam_med3d_defaults.py", "--rounds", "1"]),
    "SAM-Med2D propagation": (["bench_sam_med2d_propagation.py", "--rounds", "3"],
                              ["bench_sam_med2d_propagation.py", "--rounds", "1"]),
    "weight-free engine": (["bench_weight_free.py", "--repeat", "3"],
                           ["bench_weight_free.py", "--repeat", "1", "--cases", "synthetic"]),
}


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of each (smoke test)")
    parser.add_argument("--only", help="run only the benchmarks whose title contains this")
    args = parser.parse_args(argv)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {_machine()}", flush=True)
    failed = 0
    for title, (full, quick) in RUNS.items():
        if args.only and args.only.lower() not in title.lower():
            continue
        command = [sys.executable, str(HERE / (quick if args.quick else full)[0]),
                   *(quick if args.quick else full)[1:]]
        print(f"\n## {title}  (load average before: {_load()})", flush=True)
        t0 = time.perf_counter()
        result = subprocess.run(command, cwd=HERE.parent, text=True, capture_output=True)
        print(result.stdout.rstrip(), flush=True)
        if result.returncode:
            failed += 1
            print(f"FAILED (exit {result.returncode}):\n{result.stderr[-2000:]}", flush=True)
        print(f"({time.perf_counter() - t0:.0f} s; load average after: {_load()})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
