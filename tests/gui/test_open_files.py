"""Opening files in a real napari viewer: geometry, labels on their own grid lining up in mm, writer."""

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
    raw = read_volume(folder / "seg.nii.gz")
    np.testing.assert_array_equal(labels.data, raw.array)  # the reader keeps the file's own grid
    # a voxel's world position is its physical point, and the image's voxel there is the flipped one
    z, y, x = 10, 300, 200
    world = labels.data_to_world([z, y, x])
    np.testing.assert_allclose(world[::-1], raw.geometry.index_to_physical([z, y, x]), atol=1e-6)
    np.testing.assert_allclose(image.world_to_data(world), [z, 511 - y, x], atol=1e-6)


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
