"""What the user sees of the image, whatever the engine: window/level presets and an intensity readout.

The 2D models have their own *Window* chooser (what the network sees). This one only sets the image
layer's contrast, for every engine and modality: the CT presets in Hounsfield units (shown for CT
only, recognised by air at about -1000 HU), percentile and full-range windows for any image.

The readout under the presets shows the image's value under the mouse (``-45 HU`` for CT) and where
it is in millimetres, whichever layer is selected: napari's own status bar follows the selected layer,
which while segmenting is the prompts layer, so it stops showing intensities exactly when they matter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel

# label -> (width, level) in HU, or a rule name for any modality
DISPLAY_WINDOWS: dict[str, tuple[float, float] | str] = {
    "CT soft tissue (W400 L40)": (400.0, 40.0),
    "CT bone (W1800 L400)": (1800.0, 400.0),
    "CT lung (W1500 L-600)": (1500.0, -600.0),
    "CT brain (W80 L40)": (80.0, 40.0),
    "CT head and neck (W350 L40)": (350.0, 40.0),
    "CT liver (W150 L30)": (150.0, 30.0),
    "Automatic (1-99th percentile)": "percentile",
    "Full range": "full",
}
_CHOOSE = "Choose a window…"


def looks_like_ct(data) -> bool:
    """CT in HU holds air at about -1000; MR and PET intensities are not negative like that."""
    sample = np.asarray(data[:: max(1, data.shape[0] // 8)])
    return sample.size > 0 and float(sample.min()) <= -500 and float(sample.max()) >= 0


def window_limits(data, preset: tuple[float, float] | str) -> tuple[float, float]:
    """(low, high) contrast limits of ``preset`` for the image ``data``."""
    if isinstance(preset, tuple):
        width, level = preset
        return level - width / 2.0, level + width / 2.0
    sample = np.asarray(data[:: max(1, data.shape[0] // 16)], dtype=float)
    if preset == "percentile":
        low, high = np.percentile(sample, (1, 99))
    else:
        low, high = float(np.min(data)), float(np.max(data))
    return (float(low), float(high) if high > low else float(low) + 1.0)


class _RefreshingCombo(QComboBox):
    """Updates which entries apply (CT or not) each time it opens: the image may have changed."""

    def __init__(self, refresh) -> None:
        super().__init__()
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


class DisplayControls(QGroupBox):
    """Window presets for the image layer and the intensity readout; ``image_layer`` says which layer."""

    def __init__(self, viewer, image_layer: Callable[[], object | None], parent=None) -> None:
        super().__init__("Display", parent)
        self.viewer = viewer
        self._image_layer = image_layer
        self._ct_seen: tuple[int, bool] | None = None  # (id of the data, CT?) for the readout
        self.window_combo = _RefreshingCombo(self.refresh)
        self.window_combo.addItem(_CHOOSE)
        self.window_combo.addItems(list(DISPLAY_WINDOWS))
        self.window_combo.setToolTip(
            "Contrast of the image (any model): CT windows in HU, or percentiles for any modality. "
            "What the 2D models see is set in the Model section."
        )
        self.readout = QLabel("Move the mouse over the image to read its values.")
        self.readout.setWordWrap(True)
        self.readout.setToolTip("The image's value under the mouse, whichever layer is selected")
        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.addRow("Window", self.window_combo)
        form.addRow(self.readout)
        self.window_combo.activated.connect(lambda _: self.apply_window(self.window_combo.currentText()))
        viewer.mouse_move_callbacks.append(self._on_mouse_move)

    @property
    def image_layer(self):
        return self._image_layer()

    def _is_ct(self, layer) -> bool:
        key = id(layer.data)
        if self._ct_seen is None or self._ct_seen[0] != key:  # not recomputed at every mouse move
            self._ct_seen = (key, looks_like_ct(layer.data))
        return self._ct_seen[1]

    def refresh(self) -> None:
        """Offer the CT presets only for a CT image."""
        layer = self.image_layer
        ct = layer is not None and self._is_ct(layer)
        model = self.window_combo.model()
        for row, name in enumerate(DISPLAY_WINDOWS, start=1):
            item = model.item(row)
            if item is not None:
                item.setEnabled(ct or not isinstance(DISPLAY_WINDOWS[name], tuple))

    def apply_window(self, name: str) -> bool:
        """Set the image layer's contrast to the preset ``name``; False when it does not apply."""
        layer = self.image_layer
        if layer is None or name not in DISPLAY_WINDOWS:
            return False
        preset = DISPLAY_WINDOWS[name]
        if isinstance(preset, tuple) and not self._is_ct(layer):
            return False
        low, high = window_limits(layer.data, preset)
        layer.contrast_limits_range = (min(low, layer.contrast_limits_range[0]),
                                       max(high, layer.contrast_limits_range[1]))
        layer.contrast_limits = (low, high)
        self.window_combo.setCurrentText(name)
        return True

    # --- readout ----------------------------------------------------------------------------------
    def _on_mouse_move(self, viewer, event) -> None:
        self.update_readout(event.position, event.view_direction, event.dims_displayed)

    def update_readout(self, world_position, view_direction=None, dims_displayed=None) -> str:
        """Show the image's value at ``world_position`` (napari world, mm); returns the text."""
        layer = self.image_layer
        if layer is None:
            return self.readout.text()
        try:
            value = layer.get_value(
                world_position, view_direction=view_direction, dims_displayed=dims_displayed, world=True
            )
        except (IndexError, ValueError):
            value = None
        where = ", ".join(f"{float(v):.1f}" for v in list(world_position)[-3:])
        if value is None or (isinstance(value, float) and np.isnan(value)):
            text = f"{layer.name}: outside the image at ({where}) mm"
        else:
            unit = " HU" if self._is_ct(layer) else ""
            number = f"{float(value):.0f}" if float(value).is_integer() or unit else f"{float(value):.4g}"
            text = f"{layer.name}: {number}{unit} at ({where}) mm"
        self.readout.setText(text)
        return text

    def detach(self) -> None:
        if self._on_mouse_move in self.viewer.mouse_move_callbacks:
            self.viewer.mouse_move_callbacks.remove(self._on_mouse_move)
