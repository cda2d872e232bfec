"""``--point-mm`` takes exactly the numbers napari's status bar shows for the image under the mouse."""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab._sample_data import SAMPLE_CT
from napari_openmedlab.cli import main
from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


def test_the_status_bar_numbers_are_the_point_mm(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-openmedlab", "ct")
    layer = viewer.layers["sample CT"]
    volume = read_volume(SAMPLE_CT)
    voxel = (15, 49, 92)  # in the liver
    status = layer.get_status(volume.geometry.index_to_world(voxel), world=True)
    shown = status["coords"].strip("[]")  # what the user reads off the status bar, e.g. 139.30, -158.32, -98.04
    assert np.allclose(volume.geometry.world_to_index([float(v) for v in shown.split(",")]), voxel, atol=0.01)
    out_mm, out_voxel = tmp_path / "mm.nii.gz", tmp_path / "voxel.nii.gz"
    assert main(["segment", str(SAMPLE_CT), "--model", "seeded-region",
                 "--point-mm", shown.replace(" ", ""), "--out", str(out_mm)]) == 0
    assert main(["segment", str(SAMPLE_CT), "--model", "seeded-region",
                 "--point", "15,49,92", "--out", str(out_voxel)]) == 0
    assert np.array_equal(read_volume(out_mm).array, read_volume(out_voxel).array)
