"""Clicks -> worker -> preview -> commit -> undo/redo, through the widget's public methods."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_openmedlab._widgets import layer_tools as lt
from napari_openmedlab.engines.base import Box

pytestmark = pytest.mark.gui


def test_point_preview_commit_undo_redo(make_widget):
    viewer, w = make_widget()
    s = w.session
    world = s.geometry.index_to_world([12, 16, 16])
    assert w.add_point(world)
    assert w.wait_for_prediction(10)
    preview = s.preview_layer.data
    assert preview[12, 16, 16] == 1 and preview.sum() > 50
    assert "Preview" in w.status_text and "s" in w.status_text
    np.testing.assert_array_equal(s.points_layer.data, [[12, 16, 16]])

    w.select_class(3)
    record = w.commit()
    labels = s.labels_layer.data
    assert record["class_id"] == 3 and (labels == 3).sum() == record["voxels_changed"] > 50
    assert s.state.empty and preview.sum() == 0 and len(s.points_layer.data) == 0

    w.undo()  # the commit: labels back to empty, the object and its prompts come back
    assert labels.sum() == 0
    assert len(s.points_layer.data) == 1 and preview.sum() > 50
    w.redo()
    assert (labels == 3).sum() == record["voxels_changed"]
    w.undo()
    w.undo()  # selecting id 3 made the structure label_3: its own step
    assert s.structures.names() == []
    w.undo()  # the click itself
    assert len(s.points_layer.data) == 0 and preview.sum() == 0
    w.redo()
    assert len(s.points_layer.data) == 1 and preview.sum() > 50  # cached preview, no new run


def test_negative_click(make_widget):
    viewer, w = make_widget(radius=30, tolerance=400)  # one click grows over both balls
    s = w.session
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    both = s.preview_layer.data.sum()
    w.set_negative(True)  # the toggle; Shift/right click do the same on the canvas
    w.add_point_voxel((12, 32, 34))
    w.wait_for_prediction(10)
    assert s.state.labels.tolist() == [1, 0]
    assert s.preview_layer.data[12, 32, 34] == 0 and s.preview_layer.data.sum() < both
    np.testing.assert_allclose(s.points_layer.face_color[1][:3], (1.0, 0.15, 0.15), atol=0.01)
    w.set_negative(False)

    w.select_class(2)
    w.commit()
    labels = s.labels_layer.data
    assert (labels == 2).sum() > 0 and labels[12, 32, 34] == 0


def test_refine_replaces_the_structure(make_widget):
    viewer, w = make_widget()
    s = w.session
    rough = np.zeros(s.volume.shape, np.uint8)
    rough[10:14, 30:34, 30:34] = 4  # a rough label to refine, opened as the structures
    layer = viewer.add_labels(rough, name="rough", **lt.placement(s.image_layer))
    w.set_target_layer(layer)
    assert s.structures.names() == ["label_4"]
    assert w.refine(4)
    assert s.state.refine_id == 4 and w.structure_list.selected_name() == "label_4"
    assert s.preview_layer.data.sum() == 4 * 4 * 4
    w.add_point_voxel((12, 32, 34))  # the engine gets the mask prompt plus the click
    w.wait_for_prediction(10)
    w.commit()
    ball = s.volume.array == 400
    assert (layer.data == 4).sum() >= ball.sum() and (layer.data[ball] == 4).all()
    assert not w.refine(77) and "no structure has label 77" in w.status_text


def test_napari_paint_acts_on_the_selected_structure_and_undoes(make_widget, qtbot):
    viewer, w = make_widget()
    s = w.session
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    w.commit()
    w.add_structure("Other")
    w.select_structure("label_1")
    edit = s.edit_layer
    edit.brush_size = 1
    before = s.structures.mask("label_1").copy()
    edit.paint((12, 40, 5), 1, refresh=True)  # napari's own brush, on the selected structure
    assert s.structures.mask("label_1")[12, 40, 5], w.status_text
    assert not s.structures.mask("Other").any()
    assert s.labels_layer.data[12, 40, 5] == 1
    assert s.history.undo_descriptions[-1] == "paint label_1"
    w.undo()
    np.testing.assert_array_equal(s.structures.mask("label_1"), before)
    assert edit.data[12, 40, 5] == 0 and s.labels_layer.data[12, 40, 5] == 0
    w.lock("label_1")
    edit.paint((12, 40, 5), 1, refresh=True)  # refused: the stroke is taken back
    assert "locked" in w.status_text
    qtbot.waitUntil(lambda: edit.data[12, 40, 5] == 0)
    np.testing.assert_array_equal(s.structures.mask("label_1"), before)


def test_newer_prompt_supersedes_and_ui_stays_responsive(make_widget, qtbot):
    viewer, w = make_widget(delay=1.0)
    gaps, last = [], [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(beat)
    timer.start(10)
    w.add_point_voxel((12, 16, 16))
    qtbot.wait(100)
    w.add_point_voxel((12, 17, 16))  # supersedes the first, which is cancelled
    assert w.wait_for_prediction(10)
    timer.stop()
    engine = w.runner.engine
    assert engine.calls == 2
    assert w.session.state.preview is not None and len(w.session.state.points) == 2
    assert max(gaps[1:]) < 0.1, f"UI thread stalled {max(gaps):.3f} s"
    assert len(gaps) > 50


def test_commit_waits_for_the_running_prediction(make_widget):
    viewer, w = make_widget(delay=0.3)
    w.add_point_voxel((12, 16, 16))
    assert w.commit() is None and "when the running prediction ends" in w.status_text
    w.wait_for_prediction(10)
    assert (w.session.labels_layer.data == 1).sum() > 50


def test_boxes_only_for_2d_models(make_widget, tmp_path):
    viewer, w = make_widget(boxes=True)
    w.models.set_model("sam-med3d-turbo")
    assert "not supported" in w.models.note_label.text()
    assert not w.add_box(Box(0, 12, 10, 10, 20, 20)) and "does not take boxes" in w.status_text
    (tmp_path / "cache" / "sam-med2d_b.pth").write_bytes(b"stand-in weights")
    assert w.set_model("sam-med2d")
    w.wait_for_prediction(10)
    assert w.box_button.isEnabled() and w.models.window_combo.isVisibleTo(w.models)
    w.activate_box_tool()
    boxes = w.session.boxes_layer
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    boxes.add_rectangles(np.array([[12, 10, 10], [12, 10, 20], [12, 20, 20], [12, 20, 10]]))
    assert w.wait_for_prediction(10)
    for _ in range(3):  # the box is taken on the next event-loop turn
        w.wait_for_prediction(10)
    assert w.session.state.boxes == (Box(0, 12, 10.0, 10.0, 20.0, 20.0),)
    assert w.session.preview_layer.data[12, 15, 15] == 1
    assert len(boxes.data) == 1


def test_deleting_the_target_or_the_image(make_widget, qtbot):
    viewer, w = make_widget()
    old_target = w.session.labels_layer
    viewer.layers.remove(old_target)
    qtbot.waitUntil(
        lambda: w.session.labels_layer is not old_target and w.session.labels_layer in viewer.layers
    )
    assert _segment_once(w) > 0
    viewer.layers.remove(w.session.image_layer)
    qtbot.waitUntil(lambda: "current object" not in viewer.layers and "prompts" not in viewer.layers)
    assert w.session.image_layer is None and "choose an image" in w.status_text
    assert not w.add_point_voxel((1, 1, 1))


def _segment_once(w):
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    record = w.commit()
    return record["voxels_changed"]


def test_a_failed_prediction_is_reported_and_not_committed(make_widget):
    viewer, w = make_widget()
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    w.add_point_voxel((0, 16, 16))  # the engine refuses this one
    w.wait_for_prediction(10)
    assert "Prediction failed" in w.status_text and "slice 0" in w.status_text
    assert w.commit() is None and "does not show the last prompt" in w.status_text
    w.undo()
    assert w.commit()["voxels_changed"] > 0
