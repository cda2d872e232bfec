"""Fixtures for the napari GUI tests (run under ``xvfb-run``; they need a display with OpenGL)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

sys.path.insert(0, str(Path(__file__).parent))

from standin import factory  # noqa: E402

from napari_openmedlab.io import Geometry, Volume  # noqa: E402
from napari_openmedlab.layers import image_layer_data  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Recovery folder and weights cache under tmp_path, never the user's."""
    monkeypatch.setenv("OPENMEDLAB_RECOVERY_DIR", str(tmp_path / "recovery"))
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()


def phantom(shape=(24, 48, 48)) -> Volume:
    """Two bright balls in a dark box, on an oblique-free but flipped and anisotropic grid."""
    zz, yy, xx = np.indices(shape)
    a = np.full(shape, -100, np.int16)
    a[(zz - 12) ** 2 * 4 + (yy - 16) ** 2 + (xx - 16) ** 2 <= 64] = 200
    a[(zz - 12) ** 2 * 4 + (yy - 32) ** 2 + (xx - 34) ** 2 <= 36] = 400
    geometry = Geometry((0.8, 0.9, 2.0), (40.0, -30.0, 12.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return Volume(a, geometry, {"source": "/virtual/phantom.nii.gz"})


@pytest.fixture
def make_widget(make_napari_viewer):
    """``make_widget(volume=None, **engine_kwargs)`` -> (viewer, widget) with a stand-in engine."""
    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget

    made = []

    def make(volume: Volume | None = None, show: bool = False, model: str = "seeded-region", **engine_kwargs):
        viewer = make_napari_viewer(show=show)
        data, kwargs, _ = image_layer_data(volume or phantom(), name="phantom")
        viewer.add_image(data, **kwargs)
        engines = factory(**engine_kwargs)
        widget = SegmentationWidget(viewer, engine_factory=engines)
        widget.engines = engines
        viewer.window.add_dock_widget(widget, name="segmentation")
        widget.set_model(model)
        assert widget.wait_for_prediction(10)
        made.append(widget)
        return viewer, widget

    yield make
    for widget in made:
        widget.runner.cancel()
        widget.runner.wait_idle(10)
        widget.wait_for_autosave(10)
