"""Views the right way up: superior at the top of coronal and sagittal views, whatever the voxel order.

A synthetic volume holds three bright balls, placed in *physical* space: superior (brightest),
anterior and the patient's right (dimmest). It is written with three direction matrices (LPS,
RAS-like as NIfTI converters store it, and one with x and z reversed), shown through our layer
placement, and each view's canvas is grabbed to see where the balls land on screen.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab._widgets.view_controls import VIEWS, ViewControls, edge_letters
from napari_openmedlab.io import Geometry, Volume
from napari_openmedlab.layers import image_layer_data

pytestmark = pytest.mark.gui

DIRECTIONS = {
    "LPS": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "RAS": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "x and z reversed": (-1, 0, 0, 0, 1, 0, 0, 0, -1),
}
# ball -> (offset from the centre in physical LPS mm (x, y, z), grey level 0..300)
BALLS = {"superior": ((0, 0, 12), 300), "anterior": ((0, -12, 0), 200), "right": ((-12, 0, 0), 100)}


def synthetic(direction, shape=(36, 36, 36)) -> Volume:
    geometry = Geometry((1.0, 1.0, 1.0), (5.0, -7.0, 3.0), direction)
    index_zyx = np.indices(shape).reshape(3, -1).astype(float)
    physical = np.asarray(direction, float).reshape(3, 3) @ index_zyx[::-1]  # (x, y, z) offsets
    physical -= physical.mean(axis=1, keepdims=True)
    array = np.zeros(index_zyx.shape[1], np.float32)
    for offset, value in BALLS.values():
        array[((physical - np.array(offset, float)[:, None]) ** 2).sum(0) <= 5.5**2] = value
    return Volume(array.reshape(shape), geometry, {"source": "/virtual/synthetic.nii.gz"})


def ball_positions(image: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """Centre (row, column) of each ball as a fraction of the canvas, from its grey level."""
    rgb = image[..., :3].astype(float)
    grey = rgb.mean(axis=-1)
    neutral = np.ptp(rgb, axis=-1) < 8  # the yellow orientation letters are not grey
    found = {}
    for name, (_, value) in BALLS.items():
        level = value / 300 * 255
        mask = neutral & (np.abs(grey - level) < 20)
        rows, cols = np.nonzero(mask)
        found[name] = (rows.mean() / grey.shape[0], cols.mean() / grey.shape[1]) if mask.sum() > 50 else None
    return found


@pytest.mark.parametrize("direction", list(DIRECTIONS), ids=list(DIRECTIONS))
def test_balls_land_where_a_radiologist_expects_them(direction, make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    data, kwargs, _ = image_layer_data(synthetic(DIRECTIONS[direction]), name="synthetic")
    kwargs.update(contrast_limits=(0, 300), colormap="gray", interpolation2d="nearest")
    viewer.add_image(data, **kwargs)
    controls = ViewControls(viewer)
    try:
        seen = {}
        for name in ("axial", "coronal", "sagittal"):
            controls.show_view(name)
            viewer.dims.current_step = tuple((len(r) - 1) // 2 for r in map(_steps, viewer.dims.range))
            seen[name] = ball_positions(viewer.screenshot(canvas_only=True, flash=False))
    finally:
        controls.detach()
    up, down, left, right = (lambda p: p[0] < 0.4), (lambda p: p[0] > 0.6), (lambda p: p[1] < 0.4), (lambda p: p[1] > 0.6)
    middle_row, middle_col = (lambda p: 0.4 <= p[0] <= 0.6), (lambda p: 0.4 <= p[1] <= 0.6)
    axial, coronal, sagittal = seen["axial"], seen["coronal"], seen["sagittal"]
    # axial: anterior up, the patient's right on the viewer's left; the superior ball is off-slice
    assert axial["superior"] is None
    assert up(axial["anterior"]) and middle_col(axial["anterior"]), axial
    assert left(axial["right"]) and middle_row(axial["right"]), axial
    # coronal: superior up, the patient's right on the viewer's left
    assert coronal["anterior"] is None
    assert up(coronal["superior"]) and middle_col(coronal["superior"]), coronal
    assert left(coronal["right"]) and middle_row(coronal["right"]), coronal
    # sagittal: superior up, anterior on the left
    assert sagittal["right"] is None
    assert up(sagittal["superior"]) and middle_col(sagittal["superior"]), sagittal
    assert left(sagittal["anterior"]) and middle_row(sagittal["anterior"]), sagittal
    assert not any(down(p) or right(p) for view in seen.values() for p in view.values() if p)


def _steps(r):
    return np.arange(r.start, r.stop + r.step / 2, r.step)


def test_letters_and_buttons_follow_the_view(make_napari_viewer):
    viewer = make_napari_viewer()
    data, kwargs, _ = image_layer_data(synthetic(DIRECTIONS["RAS"]), name="synthetic")
    viewer.add_image(data, **kwargs)
    controls = ViewControls(viewer)
    expected = {
        "axial": {"top": "A", "bottom": "P", "left": "R", "right": "L"},
        "coronal": {"top": "S", "bottom": "I", "left": "R", "right": "L"},
        "sagittal": {"top": "S", "bottom": "I", "left": "A", "right": "P"},
    }
    try:
        assert edge_letters(viewer) == expected["axial"]  # the view napari opens with
        for name, letters in expected.items():
            controls.show_view(name)
            assert edge_letters(viewer) == letters
            shown = {edge: o.text for edge, o in controls.letters.overlays.items()}
            assert shown == letters and all(o.visible for o in controls.letters.overlays.values())
            assert [n for n, b in controls.buttons.items() if b.isChecked()] == [name]
        controls.show_view("3d")
        assert viewer.dims.ndisplay == 3 and edge_letters(viewer) is None
        assert not any(o.visible for o in controls.letters.overlays.values())
        # napari's own transpose button gives a coronal arrangement: superior still goes up
        controls.show_view("axial")
        viewer.dims.order = (1, 0, 2)
        assert edge_letters(viewer) == expected["coronal"]
        assert controls.buttons["coronal"].isChecked()
        # the shortcuts are real napari key bindings and named in the tooltips
        bindings = {str(key): handler for key, handler in viewer.keymap.items()}
        for spec in (VIEWS["sagittal"], VIEWS["axial"]):
            bindings[spec.shortcut_text](viewer)
            assert controls.buttons[spec.name].isChecked()
        for spec in VIEWS.values():
            assert spec.shortcut_text in bindings
            assert spec.shortcut_text in controls.buttons[spec.name].toolTip()
    finally:
        controls.detach()
    assert not any(k.startswith("openmedlab_orientation_") for k in viewer.canvas.overlays)


def test_the_widget_has_the_view_buttons(make_widget):
    viewer, widget = make_widget()
    assert set(widget.view_controls.buttons) == {"axial", "coronal", "sagittal", "3d"}
    widget.view_controls.buttons["sagittal"].click()
    assert edge_letters(viewer)["top"] == "S" and edge_letters(viewer)["left"] == "A"
