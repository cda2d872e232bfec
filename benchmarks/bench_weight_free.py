"""Benchmark: per-click latency of the weight-free ``seeded-region`` engine, new and old side by side.

Each click is timed with the engine (``napari_openmedlab/engines/seeded.py``) and with the frozen
baseline it replaced (``benchmarks/_seeded_before.py``), alternating in one run, so the ratio
holds whatever else the machine is doing. Also reported per click: the peak memory allocated
(tracemalloc, a separate untimed call) against one boolean array of the whole volume.

Cases:

* ``ct``: ../shared/data/totalseg-ct/ct.nii.gz (122x101x30, 3 mm); five organs, five simulated
  largest-error clicks each (the clicks of the evaluation), every ``predict`` timed;
* ``synthetic``: a 512x512x300 int16 CT-like volume (0.7x0.7x1.0 mm, body, two organs, noise);
  a positive click, a second positive click, a negative click, each timed ``--repeat`` times.

    python benchmarks/bench_weight_free.py [--cases ct,synthetic] [--repeat 3]

Prints median and max latency per case and engine (CPU only; no weights needed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data"

from _seeded_before import SeededRegionEngine as BaselineEngine  # noqa: E402

from napari_openmedlab.engines import Prompts  # noqa: E402
from napari_openmedlab.engines.seeded import SeededRegionEngine  # noqa: E402
from napari_openmedlab.evaluation.clicks import ClickSimulator  # noqa: E402
from napari_openmedlab.evaluation.metrics import dice  # noqa: E402
from napari_openmedlab.io import Geometry, Volume, read_volume  # noqa: E402

ORGANS = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver", 6: "stomach"}


ENGINES = {"new": SeededRegionEngine, "old": BaselineEngine}


def timed(engine, prompts, repeat: int):
    """Best of ``repeat`` timings of one predict, and the prediction."""
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        prediction = engine.predict(prompts)
        best = min(best, time.perf_counter() - t0)
    return best, prediction


def peak_bytes(engine, prompts) -> int:
    tracemalloc.start()
    try:
        engine.predict(prompts)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_ct(repeat: int) -> dict[str, list[float]]:
    ct = read_volume(DATA / "totalseg-ct" / "ct.nii.gz")
    seg = read_volume(DATA / "totalseg-ct" / "seg.nii.gz").array
    engines = {k: E() for k, E in ENGINES.items()}
    for e in engines.values():
        e.set_volume(ct)
    times: dict[str, list[float]] = {k: [] for k in engines}
    for organ, name in ORGANS.items():
        gt = seg == organ
        sims = {k: ClickSimulator(ct.geometry.spacing_zyx, seed=0) for k in engines}
        prompts = {k: Prompts() for k in engines}
        preds: dict = {k: None for k in engines}
        for _ in range(5):
            for k, engine in engines.items():  # alternate: each engine follows its own clicks
                click = sims[k].next_click(gt, preds[k])
                if click is None:
                    continue
                prompts[k] = prompts[k].add_point(click.zyx, click.positive)
                seconds, prediction = timed(engine, prompts[k], repeat)
                times[k].append(seconds)
                preds[k] = prediction.to_mask()
        print(f"  {name:14s} dice after 5 clicks: " + ", ".join(
            f"{k} {dice(gt, preds[k]):.3f}" for k in engines))
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


def bench_synthetic(repeat: int) -> dict[str, list[float]]:
    t0 = time.perf_counter()
    volume, liver = synthetic_ct()
    print(f"  built 512x512x300 volume in {time.perf_counter() - t0:.1f} s")
    full_mask_bytes = volume.array.size  # one boolean array of the whole volume
    engines = {k: E() for k, E in ENGINES.items()}
    for k, engine in engines.items():
        t0 = time.perf_counter()
        engine.set_volume(volume)
        print(f"  {k}: set_volume {time.perf_counter() - t0:.3f} s")
    sz, sy, sx = volume.geometry.spacing_zyx
    clicks = [((150 / sz, 160 / sy, 140 / sx), True), ((120 / sz, 150 / sy, 120 / sx), True),
              ((140 / sz, 230 / sy, 250 / sx), False)]
    prompts, times = Prompts(), {k: [] for k in engines}
    for i, (zyx, positive) in enumerate(clicks, 1):
        prompts = prompts.add_point(zyx, positive)
        for k, engine in engines.items():
            seconds, prediction = timed(engine, prompts, repeat)
            times[k].append(seconds)
            peak = peak_bytes(engine, prompts)
            print(f"  click {i} ({'+' if positive else '-'}) {k}: {seconds:.3f} s, peak allocation "
                  f"{peak / 1e6:.0f} MB = {peak / full_mask_bytes:.2f} x a boolean volume, "
                  f"patch {prediction.patch.size / 1e6:.1f} M voxels, dice vs the liver ellipsoid "
                  f"{dice(liver, prediction.to_mask()):.3f}")
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
        for k, values in times.items():
            print(f"  {k}: per-click latency median {statistics.median(values):.3f} s, "
                  f"max {max(values):.3f} s over {len(values)} clicks")
        ratio = statistics.median(times["old"]) / statistics.median(times["new"])
        print(f"  median old / new: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
