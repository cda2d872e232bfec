"""Each kind of bad input gets a typed error with a readable message (and npe2 readers say None)."""

import gzip
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from napari_openmedlab._reader import get_reader
from napari_openmedlab.io import (
    CorruptFileError,
    NoDicomSeriesError,
    NotVolumetricError,
    UnsupportedFormatError,
    read_volume,
)


def _write_dicom_series(folder, n_slices, series_uid, study_uid="1.2.3.4"):
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(n_slices):
        image = sitk.GetImageFromArray(np.full((1, 8, 8), k * 10, np.int16))
        tags = {
            "0020|000e": series_uid,
            "0020|000d": study_uid,
            "0008|0060": "CT",
            "0020|0032": f"0\\0\\{2.0 * k}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1),
            "0008|0018": f"{series_uid}.{k + 1}",
        }
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{series_uid}_{k:03d}.dcm"))
        writer.Execute(image)


def test_truncated_nifti(tmp_path, shared_data):
    data = (shared_data / "totalseg-ct" / "ct.nii.gz").read_bytes()
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_volume(path)


def test_truncated_uncompressed_nifti(tmp_path, shared_data):
    image = sitk.ReadImage(str(shared_data / "totalseg-ct" / "ct.nii.gz"))
    full = tmp_path / "full.nii"
    sitk.WriteImage(image, str(full))
    path = tmp_path / "ct.nii"
    path.write_bytes(full.read_bytes()[:-1000])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_volume(path)
    assert read_volume(full).shape == (30, 101, 122)


def test_text_file_renamed_nii(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is not an image\n" * 20)
    with pytest.raises(CorruptFileError, match="could not be decoded"):
        read_volume(path)


def test_2d_image(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((16, 16), np.int16)), str(path))
    with pytest.raises(NotVolumetricError, match="2D"):
        read_volume(path)


def test_4d_image_needs_a_component(tmp_path):
    path = tmp_path / "dynamic.nii.gz"
    array = np.stack([np.full((3, 4, 5), t, np.int16) for t in range(4)])  # (t, z, y, x)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    with pytest.raises(NotVolumetricError, match="4 time points"):
        read_volume(path)
    chosen = read_volume(path, component=2)
    assert chosen.shape == (3, 4, 5) and (chosen.array == 2).all()
    with pytest.raises(NotVolumetricError, match="out of range"):
        read_volume(path, component=9)


def test_multichannel_image_needs_a_component(tmp_path):
    path = tmp_path / "rgb.mha"
    array = np.zeros((3, 4, 5, 3), np.uint8)
    array[..., 1] = 7
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(path))
    with pytest.raises(NotVolumetricError, match="3 components"):
        read_volume(path)
    assert (read_volume(path, component=1).array == 7).all()


def test_empty_folder(tmp_path):
    with pytest.raises(NoDicomSeriesError, match="empty"):
        read_volume(tmp_path)
    assert get_reader(str(tmp_path)) is None


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(NoDicomSeriesError, match="no DICOM series"):
        read_volume(tmp_path)


def test_mixed_series_opens_the_largest_and_says_which(tmp_path):
    _write_dicom_series(tmp_path, 5, "1.2.826.0.1.111")
    _write_dicom_series(tmp_path, 3, "1.2.826.0.1.222")
    volume = read_volume(tmp_path)
    assert volume.shape == (5, 8, 8)
    assert volume.metadata["series_uid"] == "1.2.826.0.1.111"
    assert volume.metadata["other_series"] == {"1.2.826.0.1.222": 3}
    chosen = read_volume(tmp_path, series_uid="1.2.826.0.1.222")
    assert chosen.shape == (3, 8, 8)
    with pytest.raises(NoDicomSeriesError, match="no series with SeriesInstanceUID"):
        read_volume(tmp_path, series_uid="9.9.9")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG")
    with pytest.raises(UnsupportedFormatError, match="not a supported format"):
        read_volume(path)
    assert get_reader(str(path)) is None


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "nothing.nii.gz")


def test_gzip_of_garbage(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\0" * 100)
    with pytest.raises(CorruptFileError):
        read_volume(path)
    shutil.rmtree(tmp_path)
