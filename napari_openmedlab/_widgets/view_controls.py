"""Axial / coronal / sagittal / 3D views the way a radiologist reads them, with orientation letters.

Our layers are placed in physical millimetres, so napari's world axes are always (z, y, x) of the
LPS frame: z increases towards the patient's head (S), y towards the back (P), x towards the
patient's left (L), whatever the file's voxel order. A view is therefore only a choice of which two
world axes are shown and which way each one points on the screen:

==========  ===============  ======================  =====================================
view        shown (vert,hor)  screen                  reads as
==========  ===============  ======================  =====================================
axial       (y, x)            P down, L right         anterior up, patient's right on the left
coronal     (z, x)            S up, L right           superior up, patient's right on the left
sagittal    (z, y)            S up, P right           superior up, anterior on the left
==========  ===============  ======================  =====================================

napari's default camera draws the vertical axis growing downwards, which put superior at the
bottom of the coronal and sagittal views; ``camera.orientation2d`` turns it up.

The letters are four napari text overlays on the canvas edges; they follow every change of the
shown axes or of the camera orientation (also ones made with napari's own transpose/roll buttons)
and hide in the 3D view, where a fixed edge has no single anatomical direction.
"""

from __future__ import annotations

from dataclasses import dataclass

from qtpy.QtWidgets import QButtonGroup, QGroupBox, QHBoxLayout, QPushButton

# world axis (of the last three) -> (letter where it decreases, letter where it increases)
_AXIS_LETTERS = {0: ("I", "S"), 1: ("A", "P"), 2: ("R", "L")}
_EDGES = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left", "right": "middle_right"}
_OVERLAY_PREFIX = "openmedlab_orientation_"


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


@dataclass(frozen=True)
class ViewSpec:
    name: str
    label: str
    shortcut: str  # napari key-binding spelling
    ndisplay: int
    shown: tuple[int, int]  # world axes (of the last three) shown vertically, horizontally
    vertical: str  # "up" or "down": the screen direction in which the vertical axis grows

    @property
    def shortcut_text(self) -> str:
        return self.shortcut.replace("-", "+")


VIEWS: dict[str, ViewSpec] = {
    v.name: v
    for v in (
        ViewSpec("axial", "Axial", "Alt-1", 2, (1, 2), "down"),
        ViewSpec("coronal", "Coronal", "Alt-2", 2, (0, 2), "up"),
        ViewSpec("sagittal", "Sagittal", "Alt-3", 2, (0, 1), "up"),
        ViewSpec("3d", "3D", "Alt-4", 3, (1, 2), "down"),
    )
}


def show_view(viewer, name: str) -> None:
    """Show the ``name`` view (axial, coronal, sagittal or 3d) of the volumes in ``viewer``."""
    spec = VIEWS[name]
    ndim = viewer.dims.ndim
    if ndim < 3:
        return
    lead = ndim - 3  # leading axes (time, channel) stay in front and are never shown
    hidden = ({0, 1, 2} - set(spec.shown)).pop()
    order = [*range(lead), lead + hidden, lead + spec.shown[0], lead + spec.shown[1]]
    if spec.ndisplay == 3:
        order = list(range(ndim))
    viewer.dims.ndisplay = spec.ndisplay
    viewer.dims.order = tuple(order)
    camera(viewer).orientation2d = (spec.vertical, "right")
    viewer.reset_view()


def current_view(viewer) -> str | None:
    """The name of the view ``viewer`` shows now, or None for any other arrangement."""
    if viewer.dims.ndim < 3:
        return None
    if viewer.dims.ndisplay == 3:
        return "3d"
    lead = viewer.dims.ndim - 3
    shown = tuple(a - lead for a in viewer.dims.order[-2:])
    vertical, horizontal = (str(o) for o in camera(viewer).orientation2d)
    for spec in VIEWS.values():
        if spec.ndisplay == 2 and spec.shown == shown and spec.vertical == vertical and horizontal == "right":
            return spec.name
    return None


def edge_letters(viewer) -> dict[str, str] | None:
    """Anatomical letter on each canvas edge (``top``, ``bottom``, ``left``, ``right``) of the 2D
    view, or None in 3D or for data with fewer than three axes."""
    dims = viewer.dims
    if dims.ndisplay != 2 or dims.ndim < 3:
        return None
    lead = dims.ndim - 3
    v_axis, h_axis = (a - lead for a in dims.order[-2:])
    if v_axis < 0 or h_axis < 0:
        return None
    vertical, horizontal = (str(o) for o in camera(viewer).orientation2d)
    v_low, v_high = _AXIS_LETTERS[v_axis]
    h_low, h_high = _AXIS_LETTERS[h_axis]
    top, bottom = (v_high, v_low) if vertical == "up" else (v_low, v_high)
    left, right = (h_high, h_low) if horizontal == "left" else (h_low, h_high)
    return {"top": top, "bottom": bottom, "left": left, "right": right}


def keep_superior_up(viewer) -> None:
    """After the shown axes change (our buttons, napari's transpose/roll), point the vertical axis
    the radiological way: superior up when z is shown vertically, anterior up otherwise."""
    dims = viewer.dims
    if dims.ndisplay != 2 or dims.ndim < 3:
        return
    v_axis = dims.order[-2] - (dims.ndim - 3)
    if v_axis < 0:
        return
    wanted = ("up" if v_axis == 0 else "down", "right")
    if tuple(str(o) for o in camera(viewer).orientation2d) != wanted:
        camera(viewer).orientation2d = wanted


class OrientationLetters:
    """Keeps four text overlays on the canvas edges in step with the view."""

    def __init__(self, viewer) -> None:
        from napari.components.overlays import TextOverlay

        self.viewer = viewer
        overlays = viewer.canvas.overlays
        self.overlays = {}
        for edge, position in _EDGES.items():
            key = _OVERLAY_PREFIX + edge
            if key not in overlays:
                overlays[key] = TextOverlay(position=position, font_size=14, color="yellow")
            self.overlays[edge] = overlays[key]
        self._sources = (viewer.dims.events.order, viewer.dims.events.ndisplay, camera(viewer).events.orientation)
        for event in self._sources:
            event.connect(self.update)
        self.update()

    def update(self, *_) -> None:
        letters = edge_letters(self.viewer)
        for edge, overlay in self.overlays.items():
            overlay.text = letters[edge] if letters else ""
            overlay.visible = bool(letters)

    def detach(self) -> None:
        for event in self._sources:
            event.disconnect(self.update)
        for edge in self.overlays:
            self.viewer.canvas.overlays.pop(_OVERLAY_PREFIX + edge, None)
        self.overlays = {}


class ViewControls(QGroupBox):
    """Four view buttons (exclusive, following the viewer) plus their napari key bindings."""

    def __init__(self, viewer, parent=None) -> None:
        super().__init__("View", parent)
        self.viewer = viewer
        self.buttons: dict[str, QPushButton] = {}
        self._group = QButtonGroup(self)
        self._group.setExclusive(False)  # no button is checked for an arrangement of the user's own
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 4, 4, 4)
        for spec in VIEWS.values():
            button = QPushButton(spec.label)
            button.setCheckable(True)
            button.setToolTip(f"{spec.label} view ({spec.shortcut_text})")
            button.clicked.connect(lambda _=False, n=spec.name: self.show_view(n))
            self._group.addButton(button)
            row.addWidget(button)
            self.buttons[spec.name] = button
        self.letters = OrientationLetters(viewer)
        self._bound = []
        for spec in VIEWS.values():
            viewer.bind_key(spec.shortcut, self._key_handler(spec.name), overwrite=True)
            self._bound.append(spec.shortcut)
        viewer.dims.events.order.connect(self._on_order)
        self._sources = (viewer.dims.events.order, viewer.dims.events.ndisplay, camera(viewer).events.orientation)
        for event in self._sources:
            event.connect(self._sync_buttons)
        keep_superior_up(viewer)
        self._sync_buttons()

    def _on_order(self, *_) -> None:
        keep_superior_up(self.viewer)

    def _key_handler(self, name: str):
        def handler(_viewer):
            self.show_view(name)

        handler.__doc__ = f"napari-openmedlab: {VIEWS[name].label} view"
        return handler

    def show_view(self, name: str) -> None:
        show_view(self.viewer, name)
        self._sync_buttons()

    def _sync_buttons(self, *_) -> None:
        shown = current_view(self.viewer)
        for name, button in self.buttons.items():
            button.setChecked(name == shown)

    def detach(self) -> None:
        self.viewer.dims.events.order.disconnect(self._on_order)
        for event in self._sources:
            event.disconnect(self._sync_buttons)
        for key in self._bound:
            self.viewer.bind_key(key, None)
        self._bound = []
        self.letters.detach()
