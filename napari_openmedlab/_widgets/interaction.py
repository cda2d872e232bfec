"""Mouse and keyboard: canvas clicks become prompts, viewer hotkeys call the widget.

A click (press and release without dragging) on the canvas adds a prompt while the image, the
'prompts' layer (in pan/zoom mode) or the 'current object' layer is the active layer; with the
target Labels layer active, napari's brush, fill and eraser work as usual and clicks are not taken.
Left click: positive; Shift+click, right click, or the negative toggle: negative. In the 3D view the
click's ray is sampled as the image is rendered (brightest voxel for MIP, first voxel over the
threshold for iso-surfaces).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer

from ..annotation.picking import RENDERING_PICK, pick_along_ray

HOTKEYS = {
    "Control-Enter": "commit",
    "Control-Z": "undo",
    "Control-Shift-Z": "redo",
    "N": "toggle_negative",
    "Escape": "escape",
}
"""napari key binding -> widget method. (With the target Labels layer active, napari's own
Ctrl+Z / Ctrl+Shift+Z undo brush strokes instead, since layer bindings come first.) Escape
cancels a running propagation, else clears the current object."""

DRAG_PIXELS = 4


def pick_3d(session, position, view_direction, dims_displayed):
    """``(voxel, None)`` for a click in the 3D view, or ``(None, why not)``."""
    layer = session.image_layer
    start, end = layer.get_ray_intersections(position, view_direction, dims_displayed, world=True)
    if start is None:
        return None, "The click missed the volume."
    mode = RENDERING_PICK.get(str(layer.rendering), "max")
    voxel = pick_along_ray(session.volume.array, start, end, mode, getattr(layer, "iso_threshold", None))
    return (voxel, None) if voxel is not None else (None, "Nothing rendered under the click.")


def slice_axis(dims) -> int | None:
    """The image axis normal to the slice a 2D view shows (None in 3D); the image is the last 3 dims."""
    if dims.ndisplay != 2:
        return None
    hidden = [d - (dims.ndim - 3) for d in dims.not_displayed if d >= dims.ndim - 3]
    return int(hidden[-1]) if hidden else None


class ViewerInteraction:
    def __init__(self, widget, viewer) -> None:
        self.widget = widget
        self.viewer = viewer
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._bound = []
        for key, method in HOTKEYS.items():
            viewer.bind_key(key, self._handler(method), overwrite=True)
            self._bound.append(key)
        self._watched: list = []

    def _handler(self, method: str):
        def handler(_viewer):
            getattr(self.widget, method)()

        handler.__doc__ = f"napari-openmedlab: {method.replace('_', ' ')}"
        return handler

    def detach(self) -> None:
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        for key in self._bound:
            self.viewer.bind_key(key, None)
        self._bound = []
        self.unwatch()

    # --- clicks -----------------------------------------------------------------------------------
    def takes_clicks(self) -> bool:
        session = self.widget.session
        if not self.widget.click_enabled or session.image_layer is None:
            return False
        active = self.viewer.layers.selection.active
        if active is None or active is session.image_layer or active is session.preview_layer:
            return True
        return active is session.points_layer and active.mode == "pan_zoom"

    def _on_mouse(self, viewer, event):
        if event.button not in (1, 2) or not self.takes_clicks():
            return
        press = np.asarray(event.pos, dtype=float)
        position = np.asarray(event.position, dtype=float)
        view_direction = None if event.view_direction is None else np.asarray(event.view_direction)
        dims_displayed = list(event.dims_displayed)
        negative = event.button == 2 or "Shift" in event.modifiers
        yield
        while event.type == "mouse_move":
            if np.linalg.norm(np.asarray(event.pos, dtype=float) - press) > DRAG_PIXELS:
                return  # a pan, zoom or rotation, not a click
            yield
        if event.type == "mouse_release":
            positive = not (negative or self.widget.negative_mode)
            self.widget.click(position, positive, view_direction, dims_displayed)

    # --- layer edits (napari's own point tool, the box tool) --------------------------------------
    def watch(self, points_layer, boxes_layer) -> None:
        self.unwatch()
        for layer, slot in ((points_layer, self._points_changed), (boxes_layer, self._boxes_changed)):
            if layer is not None:
                layer.events.data.connect(slot)
                self._watched.append((layer, slot))

    def unwatch(self) -> None:
        for layer, slot in self._watched:
            layer.events.data.disconnect(slot)
        self._watched = []

    def _points_changed(self, event) -> None:
        if getattr(event, "action", None) != "added" or self.widget.session.syncing:
            return
        QTimer.singleShot(0, self._take_new_points)

    def _take_new_points(self) -> None:
        session = self.widget.session
        layer = session.points_layer
        if layer is None or session.syncing:
            return
        new = np.asarray(layer.data)[len(session.state.points) :]
        session.sync_points()  # the session redraws its own points
        for zyx in new:
            self.widget.add_point_voxel(zyx)

    def _boxes_changed(self, event) -> None:
        if getattr(event, "action", None) != "added" or self.widget.session.syncing:
            return
        QTimer.singleShot(0, self._take_new_box)

    def _take_new_box(self) -> None:
        from .layer_tools import box_from_corners

        session = self.widget.session
        layer = session.boxes_layer
        if layer is None or session.syncing or len(layer.data) <= len(session.state.boxes):
            return
        box = box_from_corners(layer.data[-1])
        session.sync_boxes()  # drop the drawn shape; the session draws accepted boxes itself
        if box is None:
            self.widget.show_status("Draw boxes on an axis-aligned slice (axial, coronal or sagittal).")
            return
        self.widget.add_box(box)
