"""Benchmark: per-click latency of the weight-free ``seeded-region`` engine.

Cases:

* ``ct``: ../shared/data/totalseg-ct/ct.nii.gz (122x101x30, 3 mm); five organs, five simulated
  largest-error clicks each (the clicks of the evaluation), every ``predict`` timed;
* ``synthetic``: a 512x512x300 int16 CT-like volume (0.7x0.7x1.0 mm, body, two organs, noise);
  a positive click, a second positive click, a negative click, each timed ``--repeat`` times.

    python benchmarks/bench_weight_free.py [--cases ct,synthetic] [--repeat 3]

Prints median and max latency per case (CPU only; no weights needed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"

from napari_openmedlab.engines import Prompts, create_engine  # noqa: E402
from napari_openmedlab.evaluation.clicks import ClickSimulator  # noqa: E402
from napari_openmedlab.evaluation.metrics import dice  # noqa: E402
from napari_openmedlab.io import Geometry, Volume, read_volume  # noqa: E402

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach"}


def bench_ct(repeat: int) -> list[float]:
    ct = read_volume(DATA / "totalseg-ct" / "ct.nii.gz")
    seg = read_volume(DATA / "totalseg-ct" / "seg.nii.gz").array
    engine = create_engine("seeded-region")
    engine.set_volume(ct)
    times = []
    for organ, name in ORGANS.items():
        gt = seg == organ
        sim = ClickSimulator(ct.geometry.spacing_zyx, seed=0)
        prompts, pred = Prompts(), None
        for _ in range(5):
            click = sim.next_click(gt, pred)
            if click is None:
                break
            prompts = prompts.add_point(click.zyx, click.positive)
            best = np.inf
            for _ in range(repeat):
                t0 = time.perf_counter()
                prediction = engine.predict(prompts)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
            pred = prediction.to_mask()
        print(f"  {name:14s} dice after 5 clicks {dice(gt, pred):.3f}")
    return times


def synthetic_ct(shape=(300, 512, 512), spacing_zyx=(1.0, 0.7, 0.7), seed=0):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    sz, sy, sx = spacing_zyx
    a = np.full(shape, -1000, np.int16)
    body = ((y - shape[1] / 2) / 200.0) ** 2 + ((x - shape[2] / 2) / 230.0) ** 2 < 1
    a[np.broadcast_to(body, shape)] = 0
    liver = ((z * sz - 150) / 70) ** 2 + ((y * sy - 160) / 60) ** 2 + ((x * sx - 140) / 55) ** 2 < 1
    kidney = ((z * sz - 140) / 40) ** 2 + ((y * sy - 230) / 25) ** 2 + ((x * sx - 250) / 22) ** 2 < 1
    a[liver] = 55
    a[kidney] = 30
    rng = np.random.default_rng(seed)
    a += rng.normal(0, 15, shape).astype(np.int16)
    volume = Volume(a, Geometry(spacing=tuple(spacing_zyx[::-1])))
    return volume, liver


def bench_synthetic(repeat: int) -> list[float]:
    t0 = time.perf_counter()
    volume, liver = synthetic_ct()
    print(f"  built 512x512x300 volume in {time.perf_counter() - t0:.1f} s")
    engine = create_engine("seeded-region")
    t0 = time.perf_counter()
    engine.set_volume(volume)
    print(f"  set_volume {time.perf_counter() - t0:.3f} s")
    sz, sy, sx = volume.geometry.spacing_zyx
    clicks = [((150 / sz, 160 / sy, 140 / sx), True), ((120 / sz, 150 / sy, 120 / sx), True),
              ((140 / sz, 230 / sy, 250 / sx), False)]
    prompts, times = Prompts(), []
    for zyx, positive in clicks:
        prompts = prompts.add_point(zyx, positive)
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            prediction = engine.predict(prompts)
            runs.append(time.perf_counter() - t0)
        times.append(min(runs))
        print(f"  click {len(times)} ({'+' if positive else '-'}): {min(runs):.3f} s, "
              f"dice vs the liver ellipsoid {dice(liver, prediction.to_mask()):.3f}")
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="ct,synthetic")
    parser.add_argument("--repeat", type=int, default=3, help="runs per click (best is kept)")
    args = parser.parse_args(argv)
    for case in args.cases.split(","):
        print(f"{case}:")
        if case == "ct":
            if not (DATA / "totalseg-ct" / "ct.nii.gz").is_file():
                print(f"  skipped: {DATA / 'totalseg-ct'} not found")
                continue
            times = bench_ct(args.repeat)
        elif case == "synthetic":
            times = bench_synthetic(args.repeat)
        else:
            parser.error(f"unknown case {case!r}")
        print(f"  per-click latency: median {statistics.median(times):.3f} s, "
              f"max {max(times):.3f} s over {len(times)} clicks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
