"""Screenshot of napari showing the sample CT with its organ labels (docs/screenshot_sample_ct.png).

Run in a real window: ``xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot_sample.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_sample_ct.png"


def main(out: Path = OUT) -> None:
    viewer = napari.Viewer(show=True, title="napari-openmedlab: sample CT")
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("napari-openmedlab", "ct_with_organs")
    viewer.layers["organs"].opacity = 0.45
    viewer.dims.set_point(0, viewer.layers["sample CT"].data_to_world([16, 0, 0])[0])
    viewer.reset_view()
    viewer.layers.selection.active = viewer.layers["organs"]
    # hover status shows the organ name under the cursor; put it on the liver for the picture
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    viewer.close()
    print(f"saved {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
