"""The DICOM series' segmentation is stored flipped in y; after loading it must line up in mm."""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.io import read_labels_onto, read_volume


def _centroids_mm(volume, ids):
    """Physical LPS (x, y, z) centroid of each id, from voxel centroids through the geometry."""
    centres = ndimage.center_of_mass(np.ones(volume.shape), volume.array, ids)
    return {i: volume.geometry.index_to_physical(c) for i, c in zip(ids, centres)}


@pytest.fixture(scope="module")
def dicom_case(shared_data):
    folder = shared_data / "totalseg-dicom"
    image = read_volume(folder / "series")
    raw = read_volume(folder / "seg.nii.gz")
    aligned = read_labels_onto(folder / "seg.nii.gz", image)
    names = json.loads((folder / "labels.json").read_text())["labels"]
    return image, raw, aligned, [int(k) for k in names]


def test_series_geometry(dicom_case):
    image, raw, aligned, _ = dicom_case
    assert image.shape == (20, 512, 512)
    assert image.metadata["format"] == "dicom" and "series_uid" in image.metadata
    assert aligned.shape == image.shape
    assert aligned.geometry == image.geometry


def test_flip_was_really_handled(dicom_case):
    _, raw, aligned, _ = dicom_case
    assert not np.array_equal(aligned.array, raw.array)
    np.testing.assert_array_equal(aligned.array, raw.array[:, ::-1, :])  # exactly the y flip here


def test_organ_centroids_agree_in_mm(dicom_case):
    image, raw, aligned, ids = dicom_case
    present = [i for i in ids if (raw.array == i).any()]
    assert len(present) > 20
    before = _centroids_mm(raw, present)
    after = _centroids_mm(aligned, present)
    for i in present:
        np.testing.assert_allclose(after[i], before[i], atol=1e-3, err_msg=f"label {i}")
