"""A session on the real sample CT through the widget's public methods: clicks, commit, undo, save."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


def _deep_voxel(mask):
    """The voxel farthest from the organ's surface."""
    return np.unravel_index(np.argmax(ndimage.distance_transform_edt(mask)), mask.shape)


def test_sample_ct_session(make_widget, shared_data, tmp_path):
    ct_path = shared_data / "totalseg-ct" / "ct.nii.gz"
    ct = read_volume(ct_path)
    reference = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array
    viewer, w = make_widget(ct, radius=10, tolerance=50)
    s = w.session
    assert s.geometry.same_grid(ct.geometry) and s.source == str(ct_path)
    w.load_preset("TotalSegmentator")

    liver = reference == 5
    w.select_class(5)
    world = ct.geometry.index_to_world(_deep_voxel(liver))  # physical LPS mm, as napari reports a click
    assert w.add_point(world)
    assert w.wait_for_prediction(10)
    record = w.commit()
    assert record["class_name"] == "liver"
    written = s.labels_layer.data == 5
    assert written.sum() > 500
    assert (written & liver).sum() / written.sum() > 0.8  # the click landed in the liver

    spleen = reference == 1
    w.select_class(1)
    w.add_point(ct.geometry.index_to_world(_deep_voxel(spleen)))
    w.wait_for_prediction(10)
    w.commit()
    assert (s.labels_layer.data == 1).sum() > 100
    w.undo()  # the spleen commit
    assert (s.labels_layer.data == 1).sum() == 0 and (s.labels_layer.data == 5).sum() == written.sum()

    out = w.save(tmp_path / "ct_labels.nii.gz")
    labels_path, log_path = out.path, out.log_path
    saved = read_volume(labels_path)
    assert saved.geometry == ct.geometry or saved.geometry.same_grid(ct.geometry, tol=1e-5)
    assert saved.shape == ct.shape
    np.testing.assert_array_equal(saved.array, s.labels_layer.data)
    log = __import__("json").loads(log_path.read_text())
    assert [c["class_name"] for c in log["commits"]] == ["liver"]
    np.testing.assert_allclose(log["image"]["geometry"]["origin"], ct.geometry.origin)


def test_weight_free_engine_on_the_sample_ct(make_widget, shared_data):
    pytest.importorskip("napari_openmedlab.engines.seeded")
    from napari_openmedlab.engines import create_engine

    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    spleen = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array == 1
    viewer, w = make_widget(ct)
    w.engine_factory = create_engine  # the real registry path, no stand-in
    assert w.set_model("seeded-region", device="cpu") and w.wait_for_prediction(60)
    assert type(w.runner.engine).__name__ == "SeededRegionEngine"
    w.add_point(ct.geometry.index_to_world(_deep_voxel(spleen)))
    assert w.wait_for_prediction(60)
    preview = w.session.preview_layer.data.astype(bool)
    dice = 2 * (preview & spleen).sum() / (preview.sum() + spleen.sum())
    assert dice > 0.7, dice
