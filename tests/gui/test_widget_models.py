"""Model chooser: switching models, missing weights, downloads, devices, the plugin entry."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from napari_openmedlab.models import registry
from napari_openmedlab.models.weights import WeightsError

pytestmark = pytest.mark.gui


def test_switching_models_reloads_and_reruns(make_widget, tmp_path):
    viewer, w = make_widget()
    assert w.runner.engine.name == "seeded-region"
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    weights = tmp_path / "cache" / "sam_med3d_turbo.pth"
    weights.write_bytes(b"not really SAM-Med3D")
    assert w.set_model("sam-med3d-turbo", device="cpu")
    assert w.wait_for_prediction(10)
    engine = w.runner.engine
    assert engine.name == "sam-med3d-turbo" and engine.calls == 1  # the object ran again on it
    assert engine.resets >= 1
    assert w.session.model_info["checkpoint_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert w.session.model_info["device"] == "cpu"
    assert "Weights present" in w.models.weights_label.text()
    assert "not supported" in w.models.note_label.text() and not w.box_button.isEnabled()
    record = w.commit()
    assert record["model"] == "sam-med3d-turbo" and record["checkpoint"] == str(weights)
    assert w.set_model("seeded-region")
    w.wait_for_prediction(10)
    assert w.runner.engine.name == "seeded-region"
    assert [e.name for e in w.engines.made][-2:] == ["sam-med3d-turbo", "seeded-region"]


def test_missing_weights_show_download_and_file_chooser(make_widget):
    viewer, w = make_widget()
    assert not w.set_model("sam-vit-b")  # no exception, no engine
    w.wait_for_prediction(10)
    assert w.runner.engine is None
    panel = w.models
    assert panel.download_button.isVisibleTo(panel) and "375 MB" in panel.download_button.text()
    assert panel.choose_button.isVisibleTo(panel)
    assert "missing" in panel.weights_label.text() and "needs its weights" in w.status_text
    assert not w.set_model("sam-med2d")  # no direct download: where to get it, and the chooser
    assert not panel.download_button.isVisibleTo(panel) and panel.choose_button.isVisibleTo(panel)
    assert "SAM-Med2D" in panel.weights_label.text()
    assert w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(2)
    assert "No model is loaded" in w.status_text


def test_a_checkpoint_file_loads(make_widget, tmp_path):
    viewer, w = make_widget()
    ckpt = tmp_path / "my_medsam.pth"
    ckpt.write_bytes(b"weights")
    assert w.set_model("medsam", checkpoint=ckpt)
    w.wait_for_prediction(10)
    assert w.runner.engine.name == "medsam" and str(ckpt) in w.models.weights_label.text()
    assert w.models.window_combo.isVisibleTo(w.models)  # 2D models see a window
    w.models.window_combo.setCurrentText("CT bone (W1800 L400)")
    assert w.runner.settings["window"] == "bone"
    assert tuple(w.session.image_layer.contrast_limits) == (-500.0, 1300.0)
    viewer.dims.order = (1, 0, 2)  # coronal slices: the click's prompts carry the axis
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    assert w.session.request(reset=False) is not None
    assert w.session.state.prompts().slice_axis == 1


def test_window_presets_match_the_2d_engine():
    from napari_openmedlab._widgets.worker import guard_triton

    guard_triton()  # earlier tests created OpenGL contexts (see guard_triton)
    preprocess = pytest.importorskip("napari_openmedlab.models.sam_med2d.preprocess")
    from napari_openmedlab._widgets.model_panel import WINDOW_PRESETS

    for label, (name, width_level) in WINDOW_PRESETS.items():
        if name not in (None, "mri"):
            assert preprocess.CT_WINDOWS[name] == width_level, label


def test_settings_reach_the_engine_only_when_changed():
    from napari_openmedlab._widgets.worker import apply_settings

    class Engine2D:
        sets = 0
        _window = None
        slice_axis = 0

        @property
        def window(self):
            return self._window

        @window.setter
        def window(self, value):
            self.sets += 1
            self._window = value

    engine = Engine2D()
    for _ in range(3):
        apply_settings(engine, {"window": "bone", "slice_axis": 2, "unknown": 1})
    assert engine.sets == 1 and engine.window == "bone"


def test_download_with_progress_then_load(make_widget, tmp_path, monkeypatch, qtbot):
    source = tmp_path / "served.pth"
    source.write_bytes(b"x" * 3_000_000)
    spec = dataclasses.replace(registry.MODELS["sam-vit-b"], url=source.as_uri(), size_bytes=3_000_000)
    monkeypatch.setitem(registry.MODELS, "sam-vit-b", spec)
    viewer, w = make_widget()
    assert not w.set_model("sam-vit-b")
    seen = []
    w.models.downloader.progress.connect(lambda r, t: seen.append((r, t)))
    w.models.download_button.click()
    qtbot.waitUntil(
        lambda: w.runner.engine is not None and w.runner.engine.name == "sam-vit-b", timeout=10000
    )
    assert seen and seen[-1] == (3_000_000, 3_000_000)
    assert (tmp_path / "cache" / "sam_vit_b_01ec64.pth").is_file()


def test_load_errors_are_shown_not_raised(make_napari_viewer):
    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget

    def broken(name, checkpoint=None, device="auto"):
        raise WeightsError("checkpoint truncated")

    viewer = make_napari_viewer()
    viewer.add_image(__import__("numpy").zeros((4, 8, 8), "float32"), name="tiny")
    w = SegmentationWidget(viewer, engine_factory=broken)
    w.set_model("seeded-region")
    assert w.wait_for_prediction(10)
    assert "Could not load seeded-region" in w.status_text and "truncated" in w.status_text
    assert w.runner.engine is None
    w.cleanup()


def test_widget_opens_from_the_plugin_manifest(make_napari_viewer):
    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-openmedlab", "Interactive segmentation")
    assert isinstance(widget, SegmentationWidget)
    assert [m for m in registry.MODELS] == [
        widget.models.model_combo.itemText(i) for i in range(widget.models.model_combo.count())
    ]
    widget.runner.wait_idle(10)


def test_encoder_and_threads_settings_reach_the_engine(make_widget):
    """The model panel's encoder/threads become engine settings applied before the next click."""
    from napari_openmedlab._widgets.worker import apply_settings
    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
    from tests.engines.test_sam_med3d_engine import FakeSam3D

    viewer, w = make_widget()
    panel = w.models
    assert not panel.encoder_combo.isVisibleTo(panel)  # the weight-free engine has no encoder
    assert panel.speed == {"encoder": "fast", "cpu_threads": 0}
    panel.encoder_combo.setCurrentText("reference")
    panel.threads_spin.setValue(1)
    assert w.runner.settings["encoder"] == "reference" and w.runner.settings["cpu_threads"] == 1
    engine = SamMed3DEngine(FakeSam3D(), "cpu")
    apply_settings(engine, w.runner.settings)
    assert engine.encoder == "reference" and engine.cpu_threads == 1
