"""Auto-segment the sample CT with a (random) nnU-Net folder, then refine one class with a click."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nnunet_folders as nf  # noqa: E402

from napari_openmedlab.io import read_volume  # noqa: E402

pytestmark = pytest.mark.gui

SAMPLE_CT = Path(__file__).resolve().parents[2] / "napari_openmedlab" / "sample_data" / "ct.nii.gz"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    # 2D, 64 x 64 patch at 6 mm: one tile per slice of the sample CT, so the run takes seconds
    return nf.plain_folder(tmp_path_factory.mktemp("model"), dim=2, patch=(64, 64), spacing=(6.0, 6.0))


def test_autoseg_then_one_click_of_refinement(make_widget, model_folder):
    ct = read_volume(SAMPLE_CT)
    viewer, w = make_widget(volume=ct)
    panel = w.autoseg
    assert not panel.run()  # no folder yet: a message, nothing started
    assert "model folder" in panel.status.text()

    panel.set_folder(model_folder)
    panel.device_combo.setCurrentText("cpu")
    assert panel.run()
    assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    assert panel.wait(120), "auto-segmentation did not finish"
    assert "Draft in" in panel.status.text(), panel.status.text()
    layer = panel.last_layer
    assert layer is w.session.labels_layer  # the draft is the target now
    assert tuple(layer.data.shape) == ct.shape
    assert [c.name for c in w.session.classes] == ["liver", "spleen"]
    assert panel.progress_bar.value() == 1000

    # refine the largest drafted class with one positive click inside it
    draft = np.array(layer.data)
    ids, counts = np.unique(draft[draft > 0], return_counts=True)
    label = int(ids[np.argmax(counts)])
    assert w.refine(label)
    inside = np.argwhere(draft == label)[len(np.argwhere(draft == label)) // 2]
    assert w.add_point_voxel(tuple(int(v) for v in inside))
    assert w.wait_for_prediction(30)
    record = w.commit()
    assert record is not None and record["class_id"] == label
    after = np.asarray(layer.data)
    assert after[tuple(inside)] == label
    assert not np.array_equal(after, draft)  # the click changed the drafted class
    w.undo()
    assert np.array_equal(np.asarray(layer.data), draft)  # and undo brings the draft back


def test_cancel_leaves_the_image_untouched(make_widget, model_folder):
    ct = read_volume(SAMPLE_CT)
    viewer, w = make_widget(volume=ct)
    panel = w.autoseg
    panel.set_folder(model_folder)
    panel.device_combo.setCurrentText("cpu")
    layers_before = len(viewer.layers)
    assert panel.run()
    panel.cancel()
    assert panel.wait(60)
    # cancel is set before the prediction starts, so the run always stops (at the latest after
    # preprocessing; mid-prediction stops are timed in tests/engines/test_autoseg.py)
    assert "cancelled" in panel.status.text(), panel.status.text()
    assert len(viewer.layers) == layers_before
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_bad_folder_is_one_line_in_the_panel(make_widget, tmp_path):
    viewer, w = make_widget()
    panel = w.autoseg
    panel.set_folder(tmp_path)
    assert panel.run()
    assert panel.wait(60)
    assert "not an nnU-Net results folder" in panel.status.text()
    assert panel.run_button.isEnabled()
