"""Real mouse events on the canvas: clicks on 2D slices in any orientation, in 3D, and drags."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _canvas_pos(viewer, world_zyx):
    """Canvas pixel of a world point (through napari's vispy view transform)."""
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    view = viewer.window._qt_viewer.canvas.view
    transform = view.transform * view.scene.transform
    displayed = list(viewer.dims.displayed)
    p = np.asarray(transform.map(np.asarray(world_zyx, dtype=float)[displayed][::-1]))
    return p[:2] / p[3]


def _click(viewer, world_zyx, button=1, modifiers=(), drag=False):
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    pos = _canvas_pos(viewer, world_zyx)
    canvas.events.mouse_press(pos=pos, modifiers=modifiers, button=button)
    if drag:
        from vispy.app.canvas import MouseEvent

        canvas.events.mouse_move(
            pos=pos + 40,
            modifiers=modifiers,
            button=button,
            press_event=MouseEvent(pos=pos, type="mouse_press", button=button),
        )
    canvas.events.mouse_release(pos=pos + (40 if drag else 0), modifiers=modifiers, button=button)


def _camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9 / older


def _look_at(viewer, world_zyx):
    viewer.dims.point = tuple(world_zyx)
    displayed = list(viewer.dims.displayed)
    _camera(viewer).center = tuple(np.asarray(world_zyx)[displayed])
    return world_zyx


@pytest.mark.parametrize("order", [(0, 1, 2), (1, 0, 2), (2, 0, 1)], ids=["axial", "coronal", "sagittal"])
def test_clicks_on_slices_in_any_orientation(make_widget, order):
    viewer, w = make_widget()
    s = w.session
    viewer.dims.order = order
    target = np.array([12, 16, 16])
    world = _look_at(viewer, s.geometry.index_to_world(target))
    _click(viewer, world)
    assert w.wait_for_prediction(10)
    assert len(s.state.points) == 1 and s.state.labels.tolist() == [1]
    np.testing.assert_allclose(s.state.points[0], target, atol=1.0)
    assert s.preview_layer.data[tuple(target)] == 1

    _click(viewer, world, modifiers=("Shift",))  # negative
    _click(viewer, world, button=2)  # right click: negative too
    _click(viewer, world, drag=True)  # a pan, not a prompt
    w.wait_for_prediction(10)
    assert s.state.labels.tolist() == [1, 0, 0]


def test_no_clicks_while_painting_the_target(make_widget):
    viewer, w = make_widget()
    world = _look_at(viewer, w.session.geometry.index_to_world([12, 16, 16]))
    viewer.layers.selection.active = w.session.labels_layer
    _click(viewer, world)
    assert len(w.session.state.points) == 0
    w.click_check.setChecked(False)
    viewer.layers.selection.active = w.session.image_layer
    _click(viewer, world)
    assert len(w.session.state.points) == 0


def test_click_in_3d_picks_the_brightest_voxel_on_the_ray(make_widget):
    viewer, w = make_widget()
    s = w.session
    viewer.dims.ndisplay = 3
    s.image_layer.rendering = "mip"
    _camera(viewer).angles = (10, 20, 80)  # an oblique view
    world = _look_at(viewer, s.geometry.index_to_world([12, 32, 34]))
    _click(viewer, world)
    assert w.wait_for_prediction(10)
    assert len(s.state.points) == 1
    voxel = s.state.points[0]
    assert s.volume.array[tuple(voxel.astype(int))] == 400  # on the bright ball, not the background
    # the picked voxel lies on the view ray through the clicked point
    offset = s.geometry.index_to_world(voxel) - world
    direction = np.asarray(_camera(viewer).view_direction, dtype=float)
    direction /= np.linalg.norm(direction)
    assert np.linalg.norm(offset - offset.dot(direction) * direction) < 2.5  # mm, about a voxel
    assert s.preview_layer.data.sum() > 0
