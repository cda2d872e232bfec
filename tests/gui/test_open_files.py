"""Opening files in a real napari viewer: geometry, labels resampled onto the open image, writer."""

import numpy as np
import pytest

from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


def test_dicom_and_flipped_segmentation_line_up_in_napari(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    folder = shared_data / "totalseg-dicom"
    viewer.open(str(folder / "series"), plugin="napari-openmedlab")
    viewer.open(str(folder / "seg.nii.gz"), plugin="napari-openmedlab")
    image, labels = viewer.layers
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.affine.affine_matrix, image.affine.affine_matrix)
    raw = read_volume(folder / "seg.nii.gz")
    np.testing.assert_array_equal(labels.data, raw.array[:, ::-1, :])
    # a voxel's world position is the same physical point in both layers
    z, y, x = 10, 300, 200
    world = labels.data_to_world([z, y, x])
    np.testing.assert_allclose(world[::-1], raw.geometry.index_to_physical([z, 511 - y, x]), atol=1e-6)


def test_sample_data_and_writer_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-openmedlab", "ct_with_organs")
    ct, organs = viewer.layers
    assert organs.get_status(organs.data_to_world([16, 50, 40]))  # hover status works
    out = tmp_path / "organs.nrrd"
    viewer.layers.selection = {organs}
    organs.save(str(out), plugin="napari-openmedlab")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, organs.data)
    source = read_volume(ct.metadata["openmedlab"]["source"])
    assert back.geometry.same_grid(source.geometry)
