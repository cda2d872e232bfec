"""Propagate through volume: a 2D engine's one-slice answer carried through the sample CT.

The engine is the real Sam2DEngine whose slices are answered from the reference liver
(``standin2d.py``), so the 3D result is known; it runs behind the widget's public methods.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.key_bindings import KeyBinding
from scipy import ndimage
from standin2d import oracle_factory

from napari_openmedlab.engines.base import Box
from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def ct(shared_data):
    return read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")


@pytest.fixture(scope="module")
def liver(shared_data):
    return read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array == 5  # TotalSegmentator id


def _with_2d_engine(make_widget, tmp_path, ct, liver, delay=0.0):
    viewer, w = make_widget(ct)
    assert not w.propagate_button.isEnabled()  # the click stand-in has no propagate
    assert not w.propagate() and "2D models" in w.status_text
    (tmp_path / "cache" / "sam-med2d_b.pth").write_bytes(b"stand-in weights")
    w.engine_factory = oracle_factory(liver, delay)
    assert w.set_model("sam-med2d", device="cpu") and w.wait_for_prediction(60)
    assert w.propagate_button.isEnabled() and not w.cancel_propagation_button.isEnabled()
    return viewer, w, w.runner.engine


def _slices(data) -> list[int]:
    return np.flatnonzero(np.asarray(data).any(axis=(1, 2))).tolist()


def _dice(a, b) -> float:
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_box_propagate_commit_undo(make_widget, tmp_path, ct, liver, monkeypatch):
    viewer, w, engine = _with_2d_engine(make_widget, tmp_path, ct, liver)
    s = w.session
    z = int(np.argmax(liver.sum(axis=(1, 2))))
    rows, cols = np.nonzero(liver[z])
    assert not w.propagate() and "Nothing to propagate" in w.status_text
    assert w.add_box(Box(0, z, rows.min(), cols.min(), rows.max(), cols.max()))
    assert w.wait_for_prediction(30)
    preview = s.preview_layer.data
    assert _slices(preview) == [z]

    shown = []
    show_status = w.show_status
    monkeypatch.setattr(w, "show_status", lambda text: (shown.append(text), show_status(text)))
    assert w.propagate()
    assert w.wait_for_prediction(60)
    assert any("propagating" in t and "%" in t for t in shown)  # progress in the status line
    assert "Propagated" in w.status_text
    assert "MainThread" not in engine.threads  # the engine never ran on the UI thread
    covered = _slices(preview)
    assert len(covered) > 5 and z in covered
    assert _dice(preview.astype(bool), liver) > 0.9
    assert s.state.fresh and s.state.preview.state["annotated"] == [z]

    w.undo()  # back to the slice the propagation started from
    assert _slices(preview) == [z]
    w.redo()
    assert _slices(preview) == covered

    w.select_class(5)
    record = w.commit()
    labels = s.labels_layer.data
    assert record["class_id"] == 5 and record["voxels_changed"] == int((labels == 5).sum())
    assert _slices(labels == 5) == covered and preview.sum() == 0
    w.undo()  # the commit: labels cleared, the 3D object back in the preview
    assert labels.sum() == 0 and _slices(preview) == covered


def test_clicks_on_several_slices_propagate_from_the_prompts(make_widget, tmp_path, ct, liver):
    viewer, w, engine = _with_2d_engine(make_widget, tmp_path, ct, liver)
    s = w.session
    on = np.flatnonzero(liver.sum(axis=(1, 2)) > 200)
    z1, z2 = int(on[1]), int(on[-2])
    for z in (z1, z2):
        depth = ndimage.distance_transform_edt(liver[z])
        w.add_point_voxel((z, *np.unravel_index(np.argmax(depth), depth.shape)))
        assert w.wait_for_prediction(30)
    assert "different slices" in w.status_text  # one predict is one slice
    assert not s.state.fresh and w.commit() is None
    assert w.propagate() and w.wait_for_prediction(60)
    assert s.state.preview.state["annotated"] == [z1, z2]
    assert _dice(s.preview_layer.data.astype(bool), liver) > 0.9
    assert w.commit()["voxels_changed"] > 0


def test_cancel_escape_newer_prompt_and_commit_while_running(make_widget, tmp_path, ct, liver, qtbot):
    viewer, w, engine = _with_2d_engine(make_widget, tmp_path, ct, liver, delay=0.15)
    s = w.session
    z = int(np.argmax(liver.sum(axis=(1, 2))))
    depth = ndimage.distance_transform_edt(liver[z])
    y, x = np.unravel_index(np.argmax(depth), depth.shape)
    w.add_point_voxel((z, y, x))
    assert w.wait_for_prediction(30)
    one_slice = s.preview_layer.data.copy()

    def start():
        engine.asked.clear()
        assert w.propagate()
        assert w.cancel_propagation_button.isEnabled() and not w.propagate_button.isEnabled()
        qtbot.waitUntil(lambda: len(engine.asked) >= 3, timeout=20000)

    start()  # Escape stops the propagation and keeps the object
    viewer.keymap[KeyBinding.from_str("Escape")](viewer)
    assert w.wait_for_prediction(30)
    assert "Propagation cancelled" in w.status_text
    assert len(engine.asked) < liver.shape[0] - 2
    np.testing.assert_array_equal(s.preview_layer.data, one_slice)
    assert len(s.state.points) == 1 and w.propagate_button.isEnabled()

    start()  # the Cancel button does the same
    w.cancel_propagation_button.click()
    assert w.wait_for_prediction(30) and "Propagation cancelled" in w.status_text
    np.testing.assert_array_equal(s.preview_layer.data, one_slice)

    start()  # a newer prompt supersedes it: the new click's slice is shown, no propagation step
    w.add_point_voxel((z, y, x + 1))
    assert w.wait_for_prediction(30)
    assert "Preview" in w.status_text and _slices(s.preview_layer.data) == [z]
    assert len(s.state.points) == 2 and s.state.fresh

    start()  # commit while it runs: committed when it ends
    assert w.commit() is None and "when the running prediction ends" in w.status_text
    assert w.wait_for_prediction(60)
    written = s.labels_layer.data == 1
    assert len(_slices(written)) > 5 and _dice(written, liver) > 0.9

    viewer.keymap[KeyBinding.from_str("Escape")](viewer)  # nothing runs: Escape clears as before
    w.add_point_voxel((z, y, x))
    assert w.wait_for_prediction(30)
    viewer.keymap[KeyBinding.from_str("Escape")](viewer)
    assert s.state.empty


def test_propagated_slices_show_while_it_runs(make_widget, tmp_path, ct, liver, qtbot):
    from napari_openmedlab.engines.slice_cache import INTERACTIVE_PREFETCH

    viewer, w, engine = _with_2d_engine(make_widget, tmp_path, ct, liver, delay=0.2)
    s = w.session
    z = int(np.argmax(liver.sum(axis=(1, 2))))
    rows, cols = np.nonzero(liver[z])
    assert w.add_box(Box(0, z, rows.min(), cols.min(), rows.max(), cols.max()))
    assert w.wait_for_prediction(30)
    assert engine.prefetch == INTERACTIVE_PREFETCH  # the widget's default reached the engine
    assert w.propagate()
    # each slice the walk keeps is in the preview at once, long before the walk ends
    qtbot.waitUntil(lambda: len(_slices(s.preview_layer.data)) >= 3, timeout=20000)
    assert w.runner.propagating
    shown = _slices(s.preview_layer.data)
    assert shown == list(range(z - len(shown) + 1, z + 1))  # the box's slice, then down from it
    assert w.wait_for_prediction(60) and "Propagated" in w.status_text
    final = _slices(s.preview_layer.data)
    assert set(shown) < set(final)
    np.testing.assert_array_equal(s.preview_layer.data.astype(bool), s.state.preview.to_mask())
