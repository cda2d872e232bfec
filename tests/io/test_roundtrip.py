import os

import numpy as np
import pytest
import SimpleITK as sitk

from napari_openmedlab.io import Geometry, Volume, VolumeWriteError, read_volume, write_volume

GEOMETRY = Geometry(
    spacing=(0.7, 1.1, 3.0),
    origin=(-100.25, 50.5, -20.0),
    direction=tuple(sitk.VersorTransform((1.0, 2.0, 0.5), 0.4).GetMatrix()),
)
FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]


def _labels(max_id: int) -> Volume:
    rng = np.random.default_rng(1)
    return Volume(rng.integers(0, max_id + 1, size=(6, 9, 11)).astype(np.int32), GEOMETRY)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("max_id", [7, 300])
def test_labels_round_trip_exactly(tmp_path, suffix, max_id):
    volume = _labels(max_id)
    path = write_volume(volume, tmp_path / f"labels{suffix}", labels=True)
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == (np.uint8 if max_id < 256 else np.uint16)
    np.testing.assert_allclose(back.geometry.spacing, GEOMETRY.spacing, atol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, GEOMETRY.origin, atol=1e-5)
    np.testing.assert_allclose(back.geometry.direction, GEOMETRY.direction, atol=1e-6)


@pytest.mark.parametrize("suffix", FORMATS)
def test_image_round_trip_keeps_dtype(tmp_path, suffix):
    volume = Volume(np.arange(6 * 9 * 11, dtype=np.int16).reshape(6, 9, 11) - 1000, GEOMETRY)
    back = read_volume(write_volume(volume, tmp_path / f"ct{suffix}"))
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.array.dtype == np.int16


def test_failed_write_keeps_existing_file(tmp_path, monkeypatch):
    target = tmp_path / "labels.nii.gz"
    write_volume(_labels(3), target, labels=True)
    before = target.read_bytes()

    def broken_write(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(VolumeWriteError, match="previous file is untouched"):
        write_volume(_labels(5), target, labels=True)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["labels.nii.gz"]  # no temporary left behind


def test_negative_or_huge_ids_are_refused(tmp_path):
    with pytest.raises(VolumeWriteError, match="non-negative"):
        write_volume(Volume(-np.ones((2, 2, 2), np.int32), GEOMETRY), tmp_path / "a.nii.gz", labels=True)
    with pytest.raises(VolumeWriteError, match="uint16"):
        write_volume(Volume(np.full((2, 2, 2), 70000, np.int32), GEOMETRY), tmp_path / "a.nii.gz", labels=True)


def test_unknown_suffix_is_refused(tmp_path):
    with pytest.raises(VolumeWriteError, match="suffix"):
        write_volume(_labels(3), tmp_path / "labels.png", labels=True)


def test_written_files_are_readable_like_any_other(tmp_path):
    """mkstemp creates 0600 files: the rename must not leave labels unreadable to colleagues."""
    umask = os.umask(0o022)
    try:
        fresh = write_volume(_labels(3), tmp_path / "fresh.nii.gz", labels=True)
        assert (fresh.stat().st_mode & 0o777) == 0o644
        os.chmod(fresh, 0o640)
        write_volume(_labels(4), fresh, labels=True)  # replacing keeps the file's own mode
        assert (fresh.stat().st_mode & 0o777) == 0o640
    finally:
        os.umask(umask)
