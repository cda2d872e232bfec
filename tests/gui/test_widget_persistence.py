"""No lost work: autosave after each commit, restore on reopening, save, classes, hotkeys."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from app_model.types import KeyBinding

from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


def _segment(w, zyx=(12, 16, 16), class_id=2):
    w.select_class(class_id)
    w.add_point_voxel(zyx)
    assert w.wait_for_prediction(10)
    return w.commit()


def test_autosave_after_commit_and_restore_on_reopen(make_widget, tmp_path):
    viewer, w = make_widget()
    record = _segment(w)
    assert w.wait_for_autosave(30)
    folder = w.session.recovery.folder
    assert folder.parent == tmp_path / "recovery" and folder.name.startswith("phantom-")
    assert sorted(os.listdir(folder)) == ["gen-000001"]  # one generation per autosave
    folder = folder / "gen-000001"
    assert sorted(os.listdir(folder)) == ["labels.nii.gz", "prompt_log.json", "snapshot.json"]
    log = json.loads((folder / "prompt_log.json").read_text())
    entry = log["commits"][0]
    assert entry["model"] == "seeded-region" and entry["class_id"] == 2 and entry["class_name"] == "label_2"
    assert entry["points"][0]["voxel_zyx"] == [12, 16, 16] and entry["time"]
    np.testing.assert_allclose(
        entry["points"][0]["physical_lps_xyz_mm"],
        w.session.geometry.index_to_physical([12, 16, 16]),
        atol=1e-3,
    )
    assert "checkpoint_sha256" in entry
    saved = read_volume(folder / "labels.nii.gz")
    assert saved.geometry.same_grid(w.session.geometry)
    np.testing.assert_array_equal(saved.array, w.session.labels_layer.data)
    expected = w.session.labels_layer.data.copy()
    assert record["voxels_changed"] == (expected == 2).sum()

    viewer2, w2 = make_widget()  # the same image opened again, in a new viewer
    assert w2.session.has_autosave and w2.banner.isVisibleTo(w2)
    assert "1 commit" in w2.banner_label.text()
    assert w2.restore_autosave()
    np.testing.assert_array_equal(w2.session.labels_layer.data, expected)
    assert len(w2.session.records) == 1 and not w2.banner.isVisibleTo(w2)
    w2.undo()  # restoring is undoable
    assert w2.session.labels_layer.data.sum() == 0
    w2.discard_autosave()
    assert not w2.session.has_autosave


def test_undo_of_a_commit_updates_the_autosave(make_widget):
    viewer, w = make_widget()
    _segment(w)
    w.undo()
    assert w.wait_for_autosave(30)
    volume, log = w.session.recovery.load()
    assert volume.array.sum() == 0 and log["commits"] == []


def test_save_writes_labels_and_prompt_log(make_widget, tmp_path):
    viewer, w = make_widget()
    _segment(w, class_id=5)
    for name in ("out.nii.gz", "out2.nrrd", "out3.mha"):
        labels_path, log_path = w.save(tmp_path / name)
        back = read_volume(labels_path)
        assert back.geometry.same_grid(w.session.geometry)
        np.testing.assert_array_equal(back.array, w.session.labels_layer.data)
        assert json.loads(log_path.read_text())["commits"][0]["class_id"] == 5
    assert (tmp_path / "out.prompts.json").is_file() and (tmp_path / "out2.prompts.json").is_file()


def test_class_table_presets_import_export(make_widget, tmp_path):
    viewer, w = make_widget()
    w.load_preset("SegRap2023")
    assert w.classes.table.rowCount() == 47
    assert w.classes.table.item(46, 1).text() == "GTVnd"
    w.select_class(46)
    assert w.session.class_id == 46 and w.classes.selected_id() == 46
    layer = w.session.labels_layer
    np.testing.assert_allclose(layer.colormap.map(np.array([46]))[0], w.session.classes[45].rgba, atol=0.01)
    record = _segment(w, class_id=46)
    assert record["class_name"] == "GTVp"
    path = w.classes.export_json(tmp_path / "segrap.json")
    w.load_preset("TotalSegmentator")
    assert w.classes.table.rowCount() == 117
    w.classes.import_json(path)
    assert [c.name for c in w.session.classes][:3] == ["Brain", "BrainStem", "Chiasm"]
    w.select_class(300)  # an id beyond uint8: a new row, and the labels widen on commit
    _segment(w, zyx=(12, 32, 34), class_id=300)
    assert layer.data.dtype == np.uint16 and (layer.data == 300).sum() > 0


def test_hotkeys_are_bound_on_the_viewer(make_widget):
    viewer, w = make_widget()
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    keymap = viewer.keymap
    keymap[KeyBinding.from_str("Ctrl+Enter")](viewer)
    assert (w.session.labels_layer.data == 1).sum() > 0
    keymap[KeyBinding.from_str("Ctrl+Z")](viewer)
    assert w.session.labels_layer.data.sum() == 0
    keymap[KeyBinding.from_str("Ctrl+Shift+Z")](viewer)
    assert w.session.labels_layer.data.sum() > 0
    keymap[KeyBinding.from_str("N")](viewer)
    assert w.negative_mode and w.negative_button.isChecked()
    w.add_point_voxel((12, 32, 34))
    w.wait_for_prediction(10)
    keymap[KeyBinding.from_str("Escape")](viewer)
    assert w.session.state.empty
    w.cleanup()
    assert KeyBinding.from_str("Ctrl+Enter") not in viewer.keymap
