"""Benchmark: 47 overlapping structures on a 512 x 512 x 300 CT grid (the SegRap2023 class table).

Prints

* memory: the structure set's masks (sparse: bounding box + bit-packed patch) against one dense
  boolean volume per structure and against one uint8 label map; the saved ``.omlss`` size; the
  display layers the widget keeps;
* headless: a commit into one structure, an undo, an autosave generation (all 47 structures);
* widget (napari, needs a display: run under ``xvfb-run``): switching the selected structure, and
  scrolling slices with the structure layers shown against the image alone (the baseline, same run).

    xvfb-run -a python benchmarks/bench_structures.py [--no-widget] [--switches 94] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_openmedlab.annotation import AnnotationSession, Commit, StructureSet, StructureSetAutosave, Undo  # noqa: E402
from napari_openmedlab.annotation.label_classes import load_preset  # noqa: E402
from napari_openmedlab.annotation.masks import SparseMask  # noqa: E402
from napari_openmedlab.engines.base import Prediction  # noqa: E402
from napari_openmedlab.io import Geometry, Volume  # noqa: E402

SHAPE = (300, 512, 512)
SPACING_XYZ = (0.5, 0.5, 1.0)  # mm: a head-and-neck CT


def ellipsoid(center, radii):
    """An ellipsoid as (bbox, patch), built inside its own box only."""
    lo = [max(0, int(c - r)) for c, r in zip(center, radii)]
    hi = [min(n, int(c + r) + 1) for c, r, n in zip(center, radii, SHAPE)]
    zz, yy, xx = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), center, radii)) <= 1.0
    return (*lo, *hi), inside


def segrap_like(rng) -> StructureSet:
    """47 structures named as SegRap2023, sizes from a few voxels-wide nerves to the brain; the
    GTVs sit inside other structures, and neighbours overlap as contours of real plans do."""
    classes = load_preset("SegRap2023")
    ss = StructureSet(Geometry(SPACING_XYZ), SHAPE)
    for c in classes:
        if c.name == "Brain":
            radii = (60, 140, 110)  # voxels (z, y, x): a 12 x 14 x 11 cm ellipsoid, about 970 cm3
            center = (220, 256, 256)
        elif c.name.startswith("GTV"):
            radii = tuple(rng.uniform(8, 25, 3))
            center = (rng.uniform(80, 180), rng.uniform(200, 320), rng.uniform(180, 330))
        else:
            radii = tuple(rng.uniform(4, 40, 3))
            center = (rng.uniform(60, 260), rng.uniform(150, 360), rng.uniform(130, 380))
        bbox, patch = ellipsoid(center, radii)
        ss.add(c.name, SparseMask(SHAPE, bbox, patch), c.color, label_id=c.id)
    return ss


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def headless(ss: StructureSet) -> None:
    voxels = int(np.prod(SHAPE))
    sparse = ss.nbytes()
    overlap_pairs = sum(
        1
        for i, a in enumerate(ss)
        for b in list(ss)[i + 1 :]
        if all(max(a.mask.bbox[k], b.mask.bbox[k]) < min(a.mask.bbox[k + 3], b.mask.bbox[k + 3]) for k in range(3))
    )
    print(f"grid {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} ({voxels / 1e6:.1f} M voxels), {len(ss)} structures, "
          f"{overlap_pairs} pairs with overlapping boxes")
    print(f"memory  sparse masks (bbox + bit-packed patch) : {sparse / 2**20:8.1f} MB")
    print(f"memory  dense bool volume per structure        : {len(ss) * voxels / 2**20:8.1f} MB  "
          f"({len(ss) * voxels / sparse:.0f}x the sparse masks)")
    print(f"memory  one uint8 label map (loses overlaps)   : {voxels / 2**20:8.1f} MB")
    flat = ss.to_label_map()
    lost = sum(flat.lost_counts.values())
    print(f"label map flattening: {len(flat.lost)} structures lose {lost} voxels to smaller ones")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = ss.save(Path(tmp) / "plan.omlss")
        t_save = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = StructureSet.load(path)
        t_load = time.perf_counter() - t0
        assert back.to_bytes() == ss.to_bytes()
        print(f"file    .omlss {path.stat().st_size / 2**20:.1f} MB; save {t_save:.3f} s, load {t_load:.3f} s, bit-exact")

        volume = Volume(np.broadcast_to(np.int16(0), SHAPE), Geometry(SPACING_XYZ))  # only its grid is used
        store = StructureSetAutosave(Path(tmp) / "autosave")
        session = AnnotationSession(volume, ss.copy(), autosave=store)
        bbox, patch = ellipsoid((150, 250, 250), (20, 30, 30))
        times = {"commit (with autosave)": [], "undo (with autosave)": [], "autosave alone": []}
        for _ in range(3):
            session.handle({"type": "point", "zyx": [150, 250, 250]})
            session.set_prediction(session.generation, Prediction(bbox, patch, SHAPE))
            t0 = time.perf_counter()
            session.handle(Commit("Parotid_L", "add"))
            times["commit (with autosave)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            session.handle(Undo())
            times["undo (with autosave)"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            store.save(session.structures)
            times["autosave alone"].append(time.perf_counter() - t0)
        for k, v in times.items():
            print(f"session {k:24s}: median {statistics.median(v):.3f} s")


def widget(ss: StructureSet, switches: int, steps: int) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget
    from napari_openmedlab.engines.base import Engine
    from napari_openmedlab.layers import image_layer_data

    class Idle(Engine):  # the benchmark measures the view, not a model
        name = "idle"

        def _set_volume(self, volume, progress):
            pass

        def _predict(self, prompts, progress, cancel):
            raise RuntimeError("not used")

    rss0 = rss_mb()
    rng = np.random.default_rng(0)
    image = Volume((rng.integers(-100, 100, SHAPE[1:], dtype=np.int16)[None] * np.ones((SHAPE[0], 1, 1), np.int16)),
                   Geometry(SPACING_XYZ), {"source": "/virtual/ct512.nii.gz"})
    viewer = napari.Viewer(show=True)
    data, kwargs, _ = image_layer_data(image, name="ct")
    viewer.add_image(data, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OPENMEDLAB_RECOVERY_DIR"] = tmp
        w = SegmentationWidget(viewer, engine_factory=lambda *a, **k: Idle())
        viewer.window.add_dock_widget(w)
        w.wait_for_prediction(30)
        t0 = time.perf_counter()
        w.session.replace_structures(ss.copy())
        w.refresh_structures()
        QApplication.processEvents()
        t_show = time.perf_counter() - t0
        rss2 = rss_mb()
        names = ss.names()
        viewer.dims.set_current_step(0, 150)
        QApplication.processEvents()
        work, total = [], []
        for i in range(switches):
            name = names[(i * 7) % len(names)]
            t0 = time.perf_counter()
            w.structure_list.select_name(name)  # as a click in the list
            t1 = time.perf_counter()
            QApplication.processEvents()  # the canvas repaints
            work.append(t1 - t0)
            total.append(time.perf_counter() - t0)
        assert w.session.selected == names[((switches - 1) * 7) % len(names)]
        repaint = []
        for _ in range(10):  # the baseline: one repaint of the same canvas, nothing changed but a refresh
            t0 = time.perf_counter()
            viewer.layers["ct"].refresh()
            QApplication.processEvents()
            repaint.append(time.perf_counter() - t0)
        display = sum(x.data.nbytes for x in w.session.helper_layers() + [w.session.labels_layer] if hasattr(x.data, "nbytes"))
        print(f"widget  show 47 structures (first full draw): {t_show:.2f} s; display layers (structures, "
              f"outlines, selected, preview, points) {display / 2**20:.0f} MB; process RSS +{rss2 - rss0:.0f} MB "
              f"with napari, the widget and the {image.array.nbytes / 2**20:.0f} MB image")
        print(f"widget  switch selected structure ({switches}x): median {1000 * statistics.median(work):.1f} ms, "
              f"max {1000 * max(work):.1f} ms (target <= 100 ms); with the canvas repaint median "
              f"{1000 * statistics.median(total):.1f} ms, max {1000 * max(total):.1f} ms")
        print(f"widget  baseline: one repaint of the image after a refresh: median {1000 * statistics.median(repaint):.1f} ms")

        def scroll() -> float:
            t = []
            for z in range(100, 100 + steps):
                t0 = time.perf_counter()
                viewer.dims.set_current_step(0, z)
                QApplication.processEvents()
                t.append(time.perf_counter() - t0)
            return statistics.median(t)

        structure_layers = [x for x in viewer.layers if x is not viewer.layers["ct"]]
        for x in structure_layers:
            x.visible = False
        base = scroll()
        for x in structure_layers:
            x.visible = True
        with_structures = scroll()
        print(f"widget  slice scroll median: image alone {1000 * base:.1f} ms, with structure layers "
              f"{1000 * with_structures:.1f} ms ({with_structures / base:.2f}x the image alone)")
        w.cleanup()
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-widget", action="store_true")
    parser.add_argument("--switches", type=int, default=94)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    ss = segrap_like(np.random.default_rng(14))
    headless(ss)
    if not args.no_widget:
        widget(ss, args.switches, args.steps)


if __name__ == "__main__":
    main()
