"""Write docs/view_{axial,coronal,sagittal}.png: the sample CT in the three views, with the letters.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_views.py
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from skimage.io import imsave

from napari_openmedlab._widgets.view_controls import ViewControls
from napari_openmedlab.cli.view import open_viewer

HERE = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    viewer = napari.Viewer(show=True, title="napari-openmedlab")
    viewer.window.resize(1000, 800)
    open_viewer([], dock_widget=False, viewer=viewer)
    organs = viewer.layers["organs"]
    organs.visible = True
    organs.opacity = 0.35
    controls = ViewControls(viewer)
    liver = np.argwhere(organs.data == 5).mean(axis=0)  # slice through the liver's centre
    world = organs.data_to_world(liver)
    for name in ("axial", "coronal", "sagittal"):
        controls.show_view(name)
        viewer.dims.set_point(range(3), world)
        image = viewer.screenshot(canvas_only=True, flash=False)
        imsave(HERE / f"view_{name}.png", image, check_contrast=False)
        print(HERE / f"view_{name}.png", image.shape)
    controls.detach()
    viewer.close()


if __name__ == "__main__":
    main()
