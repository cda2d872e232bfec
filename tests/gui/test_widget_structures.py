"""Structures in the widget: two overlapping structures committed and both kept, overlaps shown,
locks and exclude-locked, switching, label maps opened as structures, lost overlaps named on save."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_openmedlab._widgets import layer_tools as lt

pytestmark = pytest.mark.gui


def _commit(w, zyx, name, radius=12, tolerance=60.0):
    engine = w.runner.engine
    engine.radius, engine.tolerance = radius, tolerance
    w.select_structure(name) if name in w.session.structures else w.add_structure(name)
    assert w.add_point_voxel(zyx)
    assert w.wait_for_prediction(10)
    return w.commit()


def test_two_overlapping_structures_are_both_kept_and_shown(make_widget, tmp_path):
    viewer, w = make_widget()
    s = w.session
    _commit(w, (12, 16, 16), "Parotid_L", radius=30, tolerance=400)  # the whole box
    _commit(w, (12, 16, 16), "GTVp")  # the bright ball inside it
    ss = s.structures
    parotid, gtv = ss.mask("Parotid_L").copy(), ss.mask("GTVp")
    ball = s.volume.array == 200
    np.testing.assert_array_equal(gtv, ball)
    assert parotid.sum() > 10 * ball.sum() and (parotid & gtv).sum() == ball.sum()  # shared by both

    ids = ss.label_ids()
    fill, outline = s.labels_layer.data, s.outline_layer.data
    assert (fill == ids["GTVp"]).sum() == ball.sum()  # the smaller one is filled on top
    assert (outline[parotid] == ids["Parotid_L"]).all() and s.outline_layer.contour == 1  # larger outlined
    assert w.structure_list.table.rowCount() == 2
    assert w.structure_list.table.item(1, 1).text() == "GTVp"
    cm3 = float(w.structure_list.table.item(1, 5).text())
    assert cm3 == pytest.approx(ball.sum() * np.prod(s.geometry.spacing) / 1000, abs=0.01)

    w.undo()  # the GTV commit only: the parotid stays whole
    assert "GTVp" not in ss or ss.mask("GTVp").sum() == 0
    np.testing.assert_array_equal(ss.mask("Parotid_L"), parotid)
    w.redo()
    np.testing.assert_array_equal(ss.mask("GTVp"), ball)

    saved = w.save(tmp_path / "plan.nii.gz")  # a label map cannot keep the overlap: named
    assert saved.lost == {"Parotid_L": int(ball.sum())}
    assert "Parotid_L" in w.status_text and ".omlss" in w.status_text


def test_locked_structure_is_kept_out_of_the_preview_and_the_commit(make_widget):
    viewer, w = make_widget()
    s = w.session
    _commit(w, (12, 16, 16), "Mandible")
    mandible = s.structures.mask("Mandible").copy()
    item = w.structure_list.table.item(0, 4)
    item.setCheckState(Qt.Checked)  # the lock box in the list
    assert s.structures.is_locked("Mandible")
    w.add_structure("Parotid_R")
    engine = w.runner.engine
    engine.radius, engine.tolerance = 30, 400
    w.add_point_voxel((12, 16, 16))
    w.wait_for_prediction(10)
    assert s.preview_layer.data[mandible].sum() == 0 and s.preview_layer.data.sum() > 0
    w.commit()
    assert not (s.structures.mask("Parotid_R") & mandible).any()
    np.testing.assert_array_equal(s.structures.mask("Mandible"), mandible)
    w.select_structure("Mandible")
    w.add_point_voxel((12, 32, 34))
    w.wait_for_prediction(10)
    assert w.commit() is None and "locked" in w.status_text


def test_switching_structures_and_hiding_one(make_widget):
    viewer, w = make_widget()
    s = w.session
    _commit(w, (12, 16, 16), "A")
    _commit(w, (12, 32, 34), "B")
    a = s.structures.mask("A")
    w.structure_list.select_name("A")  # a click in the list
    assert s.selected == "A"
    np.testing.assert_array_equal(s.edit_layer.data != 0, a)
    w.select_structure("B")
    np.testing.assert_array_equal(s.edit_layer.data != 0, s.structures.mask("B"))
    w.structure_list.table.item(0, 3).setCheckState(Qt.Unchecked)  # hide A
    assert not s.structures.structure("A").visible and (s.labels_layer.data[a] == 0).all()


def test_a_label_map_with_its_class_table_opens_as_structures(make_widget):
    viewer, w = make_widget()
    s = w.session
    data = np.zeros(s.volume.shape, np.uint8)
    data[10:14, 10:20, 10:20] = 3
    data[10:14, 30:40, 30:40] = 7
    layer = viewer.add_labels(data, name="organs", **lt.placement(s.image_layer))
    layer.features = {"index": [0, 3, 7], "name": ["background", "Liver", "Spleen"]}
    w.set_target_layer(layer)
    assert s.structures.names() == ["Liver", "Spleen"]
    assert s.structures.label_ids() == {"Liver": 3, "Spleen": 7}
    np.testing.assert_array_equal(s.structures.mask("Spleen"), data == 7)
    np.testing.assert_array_equal(layer.data, data)  # shown as it was
    assert [w.structure_list.table.item(i, 1).text() for i in range(2)] == ["Liver", "Spleen"]


def test_a_label_map_on_another_grid_is_resampled_onto_the_image(make_widget, shared_data):
    from napari_openmedlab.io import read_volume

    folder = shared_data / "totalseg-dicom"
    viewer, w = make_widget(read_volume(folder / "series"))
    viewer.open(str(folder / "seg.nii.gz"), plugin="napari-openmedlab")
    seg_layer = viewer.layers["seg"] if "seg" in viewer.layers else viewer.layers[-1]
    raw = read_volume(folder / "seg.nii.gz").array
    w.set_target_layer(seg_layer)  # flipped rows: resampled in physical space, into a new layer
    s = w.session
    assert s.labels_layer is not seg_layer
    np.testing.assert_array_equal(s.labels_layer.data, raw[:, ::-1, :])
    np.testing.assert_array_equal(seg_layer.data, raw)  # the user's layer is left as it was
    assert len(s.structures) == len(np.unique(raw)) - 1
