"""Screenshot of the segmentation widget docked beside the sample CT (docs/screenshot_widget.png).

A real window is needed (OpenGL): ``xvfb-run -a -s "-screen 0 1800x1100x24" python
scripts/screenshot_widget.py [out.png]``. The picture shows one committed organ (the liver, from
four clicks) and the live preview of the next object (the spleen) with its click, segmented with
the weight-free ``seeded-region`` engine, driven through the widget's public methods.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_widget.png"


def _deep_voxels(mask: np.ndarray, n: int, apart: float = 12.0) -> list[tuple[int, int, int]]:
    """``n`` voxels well inside ``mask``, at least ``apart`` voxels from each other (deepest first)."""
    depth = ndimage.distance_transform_edt(mask)
    picks = []
    zz, yy, xx = np.indices(mask.shape, sparse=True)
    for _ in range(n):
        zyx = np.unravel_index(int(np.argmax(depth)), mask.shape)
        picks.append(tuple(int(v) for v in zyx))
        depth[(zz - zyx[0]) ** 2 + (yy - zyx[1]) ** 2 + (xx - zyx[2]) ** 2 < apart**2] = 0
    return picks


def main(out: Path = OUT) -> None:
    os.environ.setdefault("OPENMEDLAB_RECOVERY_DIR", tempfile.mkdtemp(prefix="openmedlab-shot-"))
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_openmedlab._sample_data import SAMPLE_SEG
    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget
    from napari_openmedlab.io import read_volume

    viewer = napari.Viewer(show=True, title="napari-openmedlab: interactive segmentation")
    viewer.window._qt_window.resize(1750, 1050)
    viewer.open_sample("napari-openmedlab", "ct")
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Interactive segmentation", area="right")
    widget.set_model("seeded-region", device="cpu")
    if not widget.wait_for_prediction(120) or widget.runner.engine is None:
        raise SystemExit(f"the seeded-region engine did not load: {widget.status_text}")
    widget.load_preset("TotalSegmentator")

    reference = read_volume(SAMPLE_SEG).array  # only to place the demo clicks inside the organs
    geometry = widget.session.geometry
    widget.select_class(5)  # liver
    liver = reference == 5
    for zyx in _deep_voxels(liver, 4):
        widget.add_point(geometry.index_to_world(zyx))
        widget.wait_for_prediction(120)
    widget.commit()
    written = widget.session.labels_layer.data == 5
    dice = 2 * (written & liver).sum() / (written.sum() + liver.sum())
    print(f"liver from 4 clicks: Dice {dice:.2f} against the TotalSegmentator reference")
    widget.select_class(1)  # spleen: left as a live preview with its click
    spleen = _deep_voxels(reference == 1, 1)[0]
    widget.add_point(geometry.index_to_world(spleen))
    widget.wait_for_prediction(120)

    viewer.dims.set_point(0, geometry.index_to_world(spleen)[0])
    viewer.reset_view()
    viewer.layers.selection.active = widget.session.points_layer
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out}; status: {widget.status_text}")
    widget.cleanup()
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
