"""A large SAM-Med3D object in the widget: each crop shows in the preview as soon as it is decoded.

The engine is the real SamMed3DEngine on a stand-in network (the engine tests' FakeSam3D, whose
encoder waits a little per crop), on a long rod that spans several crops.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _slow_engine_factory(delay: float):
    from napari_openmedlab._widgets.worker import guard_triton

    guard_triton()
    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
    from tests.engines.test_sam_med3d_engine import FakeSam3D

    made = []

    def make(name, checkpoint=None, device="auto"):
        network = FakeSam3D()
        forward = network.image_encoder.forward

        def slow(x):  # a crop's encoder run takes a while, as the real one does on a CPU
            time.sleep(delay * x.shape[0])
            return forward(x)

        network.image_encoder.forward = slow
        made.append(SamMed3DEngine(network, "cpu", encoder_batch=1))
        return made[-1]

    make.made = made
    return make


@pytest.mark.parametrize("painted", ["by index", "as a box"])
def test_first_click_on_a_large_object_shows_crop_after_crop(make_widget, tmp_path, qtbot, monkeypatch,
                                                             painted):
    from napari_openmedlab._widgets import layer_tools
    from tests.engines.test_sam_med3d_engine import _rod_volume

    if painted == "as a box":  # how pieces of real crops (7 M voxels) are drawn
        monkeypatch.setattr(layer_tools, "PAINT_BY_INDEX_MAX", 0)

    volume, rod = _rod_volume()
    viewer, w = make_widget(volume)
    (tmp_path / "cache" / "sam_med3d_turbo.pth").write_bytes(b"stand-in weights")
    w.engine_factory = _slow_engine_factory(0.3)
    assert w.set_model("sam-med3d-turbo", device="cpu") and w.wait_for_prediction(30)
    s = w.session

    def shown() -> int:
        return int(np.count_nonzero(np.asarray(s.preview_layer.data).any(axis=(1, 2))))

    w.add_point_voxel((150, 24, 24))
    qtbot.waitUntil(lambda: shown() > 0, timeout=20000)
    assert w.runner.busy  # the first crop is on screen while the extension crops still run
    partial_slices = shown()
    assert w.wait_for_prediction(60)
    engine = w.runner.engine
    assert len(s.state.preview.state["crops"]) >= 3 and engine.encoder_calls >= 3
    assert partial_slices < shown()
    # the final answer replaced the pieces: the layer shows exactly the session's preview
    np.testing.assert_array_equal(s.preview_layer.data.astype(bool), s.state.preview.to_mask())
    assert (s.preview_layer.data.astype(bool) & rod).sum() > 0.9 * rod.sum()
