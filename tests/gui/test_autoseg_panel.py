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
    assert panel.progress_bar.value() == 1000

    # the draft entered the session's structure set: one structure per class found, in the list
    ss = w.session.model.structures
    names = ss.names()
    assert names and set(names) <= {"liver", "spleen"}, names
    assert panel.last_names == names
    assert [w.structure_list.table.item(i, 1).text() for i in range(len(names))] == names
    draft = {n: ss.structure(n).mask.dense().copy() for n in names}
    assert all(m.any() for m in draft.values())
    for n in names:  # the display shows the structure's voxels with its label id
        assert np.all(np.asarray(w.session.labels_layer.data)[draft[n]] > 0)
    w.undo()  # the whole draft is one undo step
    assert ss.names() == [] and w.structure_list.table.rowCount() == 0
    w.redo()
    assert ss.names() == names and all(np.array_equal(ss.structure(n).mask.dense(), draft[n]) for n in names)

    # refine the largest drafted structure with one positive click inside it; the others locked
    name = max(names, key=lambda n: draft[n].sum())
    for other in names:
        if other != name:
            assert w.lock(other)
    assert w.refine(name)
    inside = np.argwhere(draft[name])[len(np.argwhere(draft[name])) // 2]
    assert w.add_point_voxel(tuple(int(v) for v in inside))
    assert w.wait_for_prediction(30)
    record = w.commit()
    assert record is not None and record["class_name"] == name
    after = ss.structure(name).mask.dense()
    assert after[tuple(inside)]
    assert not np.array_equal(after, draft[name])  # the click changed the drafted structure
    for other in names:
        if other != name:
            assert np.array_equal(ss.structure(other).mask.dense(), draft[other])  # locked: untouched
    w.undo()
    assert np.array_equal(ss.structure(name).mask.dense(), draft[name])  # undo brings the draft back


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
    assert w.session.model.structures.names() == []  # nothing entered the structure set
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_bad_folder_is_one_line_in_the_panel(make_widget, tmp_path):
    viewer, w = make_widget()
    panel = w.autoseg
    panel.set_folder(tmp_path)
    assert panel.run()
    assert panel.wait(60)
    assert "not an nnU-Net results folder" in panel.status.text()
    assert panel.run_button.isEnabled()


def test_closing_the_widget_mid_run_stops_the_job_and_drops_its_news(make_widget, model_folder):
    ct = read_volume(SAMPLE_CT)
    viewer, w = make_widget(volume=ct)
    panel = w.autoseg
    panel.set_folder(model_folder)
    panel.device_combo.setCurrentText("cpu")
    assert panel.run()
    w.cleanup()  # what closing the dock widget does
    panel._thread.join(60)
    assert not panel.running
    assert w.session.model.structures.names() == []  # no draft arrived after the close
