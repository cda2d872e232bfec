"""Screenshot of the Contouring section on the sample CT (docs/screenshot_contouring.png).

A real window is needed (OpenGL): ``xvfb-run -a -s "-screen 0 1800x1100x24" python
scripts/screenshot_contouring.py [out.png]``. The sample CT's organ labels become the
session's structures; a 5 to 15 mm ring around the liver is applied (a structure of the session,
in the structure list) and an asymmetric margin around the spleen is left as the yellow preview,
driven through the panel's public methods.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_contouring.png"


def main(out: Path = OUT) -> None:
    os.environ.setdefault("OPENMEDLAB_RECOVERY_DIR", tempfile.mkdtemp(prefix="openmedlab-shot-"))
    import napari
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget

    viewer = napari.Viewer(show=True, title="napari-openmedlab: contouring")
    viewer.window._qt_window.resize(1750, 1050)
    viewer.open_sample("napari-openmedlab", "ct_with_organs")
    image, organs = viewer.layers[0], viewer.layers[1]
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Interactive segmentation", area="right")
    widget.set_model("seeded-region", device="cpu")
    widget.wait_for_prediction(120)
    widget.set_image_layer(image, organs)
    panel = widget.contouring
    names = panel.structure_set.names()
    liver = next(n for n in names if "liver" in n)
    spleen = next(n for n in names if "spleen" in n)

    panel.operation.setCurrentText("ring")
    panel.set_inputs([liver])
    panel.mm.setValue(5.0)
    panel.outer.setValue(15.0)
    panel.output.setText("liver_ring_5_15")
    panel.run(apply=True)
    panel.wait_idle(120)
    panel.operation.setCurrentText("margin")
    panel.set_inputs([spleen])
    panel.sides.setText("R5,L5,A10,P3,S7,I2")
    panel.output.setText("spleen_PRV")
    panel.run(apply=False)
    panel.wait_idle(120)
    print(panel.status.text())

    organs.opacity = 0.35
    viewer.dims.set_point(0, image.data_to_world([15, 0, 0])[0])
    viewer.reset_view()
    scroll = widget.findChild(QScrollArea)
    for _ in range(10):
        QApplication.processEvents()
    scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(path=str(out), canvas_only=False, flash=False)
    print(f"saved {out}")
    widget.cleanup()
    viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
