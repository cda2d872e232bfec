"""Time to export the 31 organs of the shared DICOM series as RTSTRUCT and SEG, and to read them back.

    PYTHONPATH=. python benchmarks/bench_dicom_export.py [--repeats 3] [--data ../shared/data]

Steps, each the median (and best) of ``--repeats`` runs in this process:

* the corrected copy of the series (new UIDs; the shared series has empty ones), once;
* the label map resampled onto the series and split into 31 structures;
* contouring alone: ours (voxel edges) against marching squares at the 0.5 level
  (``skimage.measure.find_contours``, the generic approach) on the same masks, as the in-run
  baseline; for both, the worst per-slice area error on slices with >= 50 voxels;
* the whole RTSTRUCT export (contours, dataset, atomic write), SEG BINARY and SEG LABELMAP exports;
* importing the RTSTRUCT and the SEG back onto the series (with the round trip's worst Dice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon
from skimage.measure import find_contours

from napari_openmedlab.dicom_rt import import_structures, open_series, structures_on_series
from napari_openmedlab.dicom_rt.contours import mask_to_loops, signed_area
from napari_openmedlab.dicom_rt.rtstruct_write import write_rtstruct
from napari_openmedlab.dicom_rt.seg import write_seg


class Times(list):
    """Wall-clock seconds per run, with the process CPU seconds alongside (steadier on a busy machine)."""

    cpu: list


def timed(fn, repeats: int):
    times, out = Times(), None
    times.cpu = []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        times.cpu.append(time.process_time() - c)
    return out, times


def row(label: str, times: list[float], extra: str = "") -> None:
    cpu = getattr(times, "cpu", None)
    cpu_text = f"{statistics.median(cpu):7.3f} s CPU" if cpu else " " * 13
    print(f"{label:<44} {statistics.median(times):7.3f} s median {min(times):7.3f} s best {cpu_text}  {extra}")


def slices_of(structures):
    for s in structures:
        patch = s.mask.patch()
        for k in range(patch.shape[0]):
            if patch[k].any():
                yield patch[k]


def even_odd_area(loops, shape) -> float:
    canvas = np.zeros(shape, bool)
    for loop in loops:
        part = np.zeros(shape, bool)
        rr, cc = draw_polygon(loop[:, 0], loop[:, 1], shape)
        part[rr, cc] = True
        canvas ^= part
    return float(canvas.sum())


def worst_area_error(masks, contour_fn, scale: int = 4) -> float:
    """Worst |enclosed area - voxel area| / voxel area over slices with >= 50 voxels (fine raster)."""
    worst = 0.0
    for m in masks:
        if m.sum() < 50:
            continue
        # voxel i covers fine pixels i*scale .. i*scale+scale-1: corners land between fine centres
        loops = [(loop + 0.5) * scale - 0.5 for loop in contour_fn(m)]
        area = even_odd_area(loops, (m.shape[0] * scale + scale, m.shape[1] * scale + scale)) / scale**2
        worst = max(worst, abs(area - m.sum()) / m.sum())
    return worst


def marching_squares(mask):
    padded = np.pad(mask, 1).astype(float)
    return [c - 1 for c in find_contours(padded, 0.5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    args = parser.parse_args()
    d = Path(args.data) / "totalseg-dicom"
    if not d.is_dir():
        d = Path("/work/shared/data/totalseg-dicom")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"napari-openmedlab DICOM export benchmark; Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        series, _ = open_series(d / "series", tmp / "fixed")
        row("corrected copy of the series (20 files)", [time.perf_counter() - t])
        classes = {int(k): v for k, v in json.loads((d / "labels.json").read_text())["labels"].items()}
        structures, times = timed(lambda: structures_on_series(series, d / "seg.nii.gz", classes), args.repeats)
        row(f"label map -> {len(structures)} structures", times)
        masks = list(slices_of(structures))
        _, ours = timed(lambda: [mask_to_loops(m) for m in masks], args.repeats)
        _, base = timed(lambda: [marching_squares(m) for m in masks], args.repeats)
        err_ours = worst_area_error(masks, mask_to_loops)
        err_base = worst_area_error(masks, marching_squares)
        row(f"contours, voxel edges ({len(masks)} organ-slices)", ours, f"worst area error {100 * err_ours:.2f}%")
        row("contours, marching squares 0.5 (baseline)", base, f"worst area error {100 * err_base:.2f}%")
        print(f"{'  voxel edges vs marching squares':<44} {statistics.median(base) / statistics.median(ours):7.2f} x faster")
        exact = sum(abs(sum(signed_area(lp) for lp in mask_to_loops(m)) - m.sum()) for m in masks)
        print(f"{'  voxel edges: total area difference':<44} {exact:7.3f} voxels")
        _, times = timed(lambda: write_rtstruct(structures, series, tmp / "rt.dcm"), args.repeats)
        row(f"RTSTRUCT export, {len(structures)} organs (contours+write)", times, f"{(tmp / 'rt.dcm').stat().st_size / 1e6:.1f} MB")
        _, times = timed(lambda: write_seg(structures, series, tmp / "seg.dcm"), args.repeats)
        row("SEG export, BINARY", times, f"{(tmp / 'seg.dcm').stat().st_size / 1e6:.1f} MB")
        _, times = timed(lambda: write_seg(structures, series, tmp / "segl.dcm", labelmap=True), args.repeats)
        row("SEG export, LABELMAP", times, f"{(tmp / 'segl.dcm').stat().st_size / 1e6:.1f} MB")
        for name in ("rt.dcm", "seg.dcm"):
            result, times = timed(lambda name=name: import_structures(tmp / name, series), args.repeats)
            worst = min(
                2 * (result.structures.mask(a) & structures.mask(b)).sum()
                / (result.structures.mask(a).sum() + structures.mask(b).sum())
                for a, b in zip(result.structures.names(), structures.names(), strict=True)
            )
            row(f"import {name}", times, f"worst Dice {worst:.4f}")


if __name__ == "__main__":
    main()
