"""No lost work: autosave after each commit, restore on reopening, save, classes, hotkeys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_model.types import KeyBinding

from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.annotation.label_classes import LabelClass, read_classes
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
    store = w.session.autosave
    folder = store.folder
    assert folder.parent.parent == tmp_path / "recovery" and folder.parent.name.startswith("phantom-")
    assert [n for n, _ in store.generations()][-1] >= 1
    saved = StructureSet.load(store.generations()[-1][1])
    assert saved.names() == ["label_2"]
    entry = saved.structure("label_2").prompts[0]
    assert entry["model"] == "seeded-region" and entry["class_id"] == 2 and entry["structure"] == "label_2"
    assert entry["points"][0]["voxel_zyx"] == [12, 16, 16] and entry["time"]
    np.testing.assert_allclose(
        entry["points"][0]["physical_lps_xyz_mm"],
        w.session.geometry.index_to_physical([12, 16, 16]),
        atol=1e-3,
    )
    assert "checkpoint_sha256" in entry
    assert saved.geometry.same_grid(w.session.geometry)
    expected = w.session.labels_layer.data.copy()
    np.testing.assert_array_equal(saved.mask("label_2"), expected == 2)
    assert record["voxels_changed"] == (expected == 2).sum()

    viewer2, w2 = make_widget()  # the same image opened again, in a new viewer
    assert w2.session.has_autosave and w2.banner.isVisibleTo(w2)
    assert "generation" in w2.banner_label.text()
    assert w2.restore_autosave()
    np.testing.assert_array_equal(w2.session.labels_layer.data, expected)
    assert w2.structure_list.table.rowCount() == 1 and not w2.banner.isVisibleTo(w2)
    w2.discard_autosave()
    assert not w2.session.has_autosave


def test_a_damaged_newest_autosave_falls_back_with_a_message(make_widget):
    viewer, w = make_widget()
    _segment(w)
    _segment(w, zyx=(12, 32, 34), class_id=3)
    newest = w.session.autosave.generations()[-1][1]
    newest.write_bytes(newest.read_bytes()[:64])
    viewer2, w2 = make_widget()
    assert w2.restore_autosave()
    assert "damaged" in w2.status_text and "previous good one" in w2.status_text
    assert (w2.session.labels_layer.data == 2).sum() > 0


def test_undo_of_a_commit_updates_the_autosave(make_widget):
    viewer, w = make_widget()
    _segment(w)
    w.undo()
    saved, _ = w.session.autosave.load_latest()
    assert saved.mask("label_2").sum() == 0


def test_save_label_maps_and_structure_sets(make_widget, tmp_path):
    viewer, w = make_widget()
    _segment(w, class_id=5)
    for name in ("out.nii.gz", "out2.nrrd", "out3.mha"):
        saved = w.save(tmp_path / name)
        back = read_volume(saved.path)
        assert back.geometry.same_grid(w.session.geometry) and saved.lost == {}
        np.testing.assert_array_equal(back.array, w.session.labels_layer.data)
        assert json.loads(saved.log_path.read_text())["commits"][0]["class_id"] == 5
    assert (tmp_path / "out.prompts.json").is_file() and (tmp_path / "out2.prompts.json").is_file()
    saved = w.save(tmp_path / "plan.omlss")
    assert StructureSet.load(saved.path).to_bytes() == w.session.structures.to_bytes()


def test_presets_add_structures_and_class_tables_export(make_widget, tmp_path):
    viewer, w = make_widget()
    w.load_preset("SegRap2023")
    table = w.structure_list.table
    assert table.rowCount() == 47
    assert table.item(46, 1).text() == "GTVnd"
    name = w.select_class(46)
    assert name == "GTVp" and w.session.selected == "GTVp" and w.structure_list.selected_name() == "GTVp"
    layer = w.session.labels_layer
    record = _segment(w, class_id=46)
    assert record["class_name"] == "GTVp"
    rgba = LabelClass(46, "GTVp", w.session.structures.color("GTVp")).rgba
    np.testing.assert_allclose(layer.colormap.map(np.array([46]))[0], rgba, atol=0.01)
    path = tmp_path / "segrap.json"
    w.export_classes(path)
    assert [c.name for c in read_classes(path)][:3] == ["Brain", "BrainStem", "Chiasm"]
    w.select_class(300)  # an id beyond uint8: a new structure, and the labels widen on commit
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
