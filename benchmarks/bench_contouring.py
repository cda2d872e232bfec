"""Contouring operations on a CT-sized grid: margins, booleans, interpolation, clean-up.

    PYTHONPATH=. python benchmarks/bench_contouring.py [--repeats 3] [--no-baseline]

Grid: 512 x 512 x 300 voxels of 0.98 x 0.98 x 2.5 mm (a head-and-neck or thorax CT). Structures:
a parotid-sized ellipsoid (about 28 cm3), a PTV-sized one beside it, and a body-sized elliptic
cylinder with a wavy outline over 280 slices (a trunk, about 83 L). Interpolation runs on a
liver-sized ellipsoid spanning 49 slices, drawn every 4th slice, or only on two slices 40 apart. Every figure is the best of
``--repeats`` runs (wall and CPU seconds; on a shared machine the CPU time is the steadier one).

The baseline, measured in the same run, is scipy's exact Euclidean distance transform
(``ndimage.distance_transform_edt`` with the voxel spacing) on the same box plus margin: what an
isotropic or anisotropic margin costs with the usual tool (it cannot do asymmetric margins).

"UI stall" runs each operation on a worker thread while the main thread ticks every 10 ms, and
reports the longest gap between ticks beyond the 10 ms: what a napari window would freeze for.
"""

from __future__ import annotations

import argparse
import platform
import threading
import time

import numpy as np
from scipy import ndimage

from napari_openmedlab.annotation.contouring import (
    Margin,
    fill_holes,
    interpolate_slices,
    intersection,
    keep_largest,
    margin,
    smooth,
    subtract,
    union,
)
from napari_openmedlab.annotation.contouring.margins import reach_voxels
from napari_openmedlab.annotation.masks import SparseMask, bbox_slices
from napari_openmedlab.io import Geometry

SHAPE = (300, 512, 512)
GEOMETRY = Geometry((0.98, 0.98, 2.5), (-250.0, -250.0, -375.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
ASYMMETRIC = Margin.sides(5, 5, 10, 3, 7, 2)


def ellipsoid(centre_mm, semi_mm) -> SparseMask:
    """An ellipsoid given in mm, built on its own box only."""
    spacing = GEOMETRY.spacing_zyx
    centre = np.array(centre_mm) / spacing
    semi = np.array(semi_mm) / spacing
    lo = np.floor(centre - semi).astype(int)
    hi = np.ceil(centre + semi).astype(int) + 1
    zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    patch = ((zz - centre[0]) / semi[0]) ** 2 + ((yy - centre[1]) / semi[1]) ** 2 + ((xx - centre[2]) / semi[2]) ** 2 <= 1
    return SparseMask(SHAPE, (*lo, *hi), patch)


def body() -> SparseMask:
    """An elliptic cylinder with a wavy outline (a patient's outline) on slices 10..289."""
    yy, xx = np.mgrid[:512, :512]
    angle = np.arctan2(yy - 256, xx - 256)
    r = np.hypot((yy - 256) / 170.0, (xx - 256) / 230.0)
    plane = r <= 1 + 0.04 * np.sin(5 * angle)
    dense = np.zeros(SHAPE, bool)
    dense[10:290] = plane
    dense[150, 250:260, 250:260] = False  # a small cavity
    return SparseMask.from_dense(dense)


def best(fn, repeats: int):
    out, wall, cpu = None, [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return out, min(wall), min(cpu)


def ui_stall(fn) -> float:
    """Longest main-thread tick delay (s, beyond the 10 ms tick) while ``fn`` runs on a thread."""
    done = threading.Event()
    worker = threading.Thread(target=lambda: (fn(), done.set()))
    worst = 0.0
    worker.start()
    last = time.perf_counter()
    while not done.is_set():
        time.sleep(0.01)
        now = time.perf_counter()
        worst = max(worst, now - last - 0.01)
        last = now
    worker.join()
    return worst


def edt_baseline(mask: SparseMask, spec: Margin) -> SparseMask:
    """The usual way: an exact EDT with the spacing on the box plus margin (symmetric margins only)."""
    lo, hi = reach_voxels(GEOMETRY, spec)
    box = tuple(max(0, mask.bbox[i] - lo[i]) for i in range(3)) + tuple(
        min(SHAPE[i], mask.bbox[i + 3] + hi[i]) for i in range(3))
    crop = mask.crop(box)
    mm = spec.isotropic_mm
    dist = ndimage.distance_transform_edt(~crop, sampling=GEOMETRY.spacing_zyx / mm)
    return SparseMask(SHAPE, box, dist <= 1 + 1e-6)  # the same tie tolerance as ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", action="store_true", help="skip the scipy EDT baseline")
    args = parser.parse_args()
    r = args.repeats
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"grid {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} at {GEOMETRY.spacing} mm, best of {r}")
    parotid = ellipsoid((150 * 2.5, 300 * 0.98, 150 * 0.98), (22, 20, 15))
    ptv = ellipsoid((155 * 2.5, 320 * 0.98, 170 * 0.98), (30, 25, 25))
    outline = body()
    print(f"parotid {parotid.count * np.prod(GEOMETRY.spacing) / 1000:.1f} cm3, "
          f"body {outline.count * np.prod(GEOMETRY.spacing) / 1e6:.1f} L")
    rows = []

    def row(name, fn, target=None, stall=True):
        _, wall, cpu = best(fn, r)
        gap = ui_stall(fn) if stall else float("nan")
        rows.append((name, wall, cpu, gap, target))
        mark = "" if target is None else ("  ok" if wall <= target else f"  OVER {target:g} s")
        print(f"{name:<46} {wall:8.3f} s wall {cpu:8.3f} s CPU  UI stall {gap * 1000:6.0f} ms{mark}",
              flush=True)

    iso5 = Margin.isotropic(5)
    row("margin 5 mm, parotid", lambda: margin(parotid, GEOMETRY, iso5), 0.2)
    row("margin R5 L5 A10 P3 S7 I2 mm, parotid", lambda: margin(parotid, GEOMETRY, ASYMMETRIC), 0.2)
    row("margin -5 mm (shrink), parotid", lambda: margin(parotid, GEOMETRY, Margin.isotropic(-5)), 0.2)
    row("margin 5 mm, body", lambda: margin(outline, GEOMETRY, iso5), 3.0)
    row("margin R5 L5 A10 P3 S7 I2 mm, body", lambda: margin(outline, GEOMETRY, ASYMMETRIC), 3.0)
    row("margin -5 mm (shrink), body", lambda: margin(outline, GEOMETRY, Margin.isotropic(-5)), 3.0)
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    tilted = Geometry(GEOMETRY.spacing, GEOMETRY.origin, (c, -s, 0, s, c, 0, 0, 0, 1))  # gantry-tilt-like
    row("margin R5 L5 A10 P3 S7 I2 mm, parotid, 10 deg oblique", lambda: margin(parotid, tilted, ASYMMETRIC))
    row("margin R5 L5 A10 P3 S7 I2 mm, body, 10 deg oblique", lambda: margin(outline, tilted, ASYMMETRIC))
    if not args.no_baseline:
        mine = margin(parotid, GEOMETRY, iso5)
        assert edt_baseline(parotid, iso5) == mine, "baseline and ours differ"
        row("  baseline: scipy EDT 5 mm, parotid", lambda: edt_baseline(parotid, iso5), stall=False)
        row("  baseline: scipy EDT 5 mm, body", lambda: edt_baseline(outline, iso5), stall=False)
    row("union parotid + PTV", lambda: union(parotid, ptv), 0.2)
    row("subtract PTV - parotid", lambda: subtract(ptv, parotid), 0.2)
    row("intersect body & PTV", lambda: intersection(outline, ptv), 0.2)
    row("ring 5-15 mm around PTV", lambda: subtract(margin(ptv, GEOMETRY, Margin.isotropic(15)),
                                                    margin(ptv, GEOMETRY, iso5)))

    organ = ellipsoid((150 * 2.5, 256 * 0.98, 256 * 0.98), (60, 90, 70))  # 49 slices, liver-sized
    z0, z1 = organ.bbox[0], organ.bbox[3]
    dense = np.zeros(SHAPE, bool)
    dense[bbox_slices(organ.bbox)] = organ.patch()
    drawn_every4 = dense.copy()
    keep = np.zeros(SHAPE[0], bool)
    keep[z0:z1:4] = True
    drawn_every4[~keep] = False
    drawn_ends = dense.copy()
    ends = np.zeros(SHAPE[0], bool)
    ends[[z0 + 4, z0 + 44]] = True
    drawn_ends[~ends] = False
    sparse4, sparse_ends = SparseMask.from_dense(drawn_every4), SparseMask.from_dense(drawn_ends)
    print(f"interpolation organ: {z1 - z0} slices, {organ.count * np.prod(GEOMETRY.spacing) / 1000:.0f} cm3")
    row(f"interpolate {z1 - z0} slices, drawn every 4th", lambda: interpolate_slices(sparse4, GEOMETRY, "z"), 1.0)
    row("interpolate 39 slices between 2 drawn 40 apart", lambda: interpolate_slices(sparse_ends, GEOMETRY, "z"), 1.0)
    row("smooth 2 mm, parotid", lambda: smooth(parotid, GEOMETRY, 2.0))
    row("smooth 2 mm, body", lambda: smooth(outline, GEOMETRY, 2.0))
    row("fill holes 3D, body", lambda: fill_holes(outline, "3d"))
    row("keep largest, body", lambda: keep_largest(outline))


if __name__ == "__main__":
    main()
