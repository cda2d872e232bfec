"""Write a :class:`Volume` atomically: to a temporary file beside the target, read back, then rename."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from .atomic import atomic_path, check_writable_folder, file_mode_for
from .errors import CorruptFileError, VolumeWriteError
from .integrity import check_volume_file, nifti_matches
from .volume import Volume

__all__ = ["WRITE_SUFFIXES", "check_output_path", "file_mode_for", "label_dtype_for", "write_volume"]

WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def label_dtype_for(array: np.ndarray) -> np.dtype:
    """The smallest unsigned type that holds every id: uint8 up to 255, else uint16."""
    if array.size == 0:
        return np.dtype(np.uint8)
    lo, hi = int(array.min()), int(array.max())
    if lo < 0:
        raise VolumeWriteError(f"label ids must be non-negative; found {lo}")
    if hi <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if hi <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    raise VolumeWriteError(f"label id {hi} does not fit in uint16")


def check_output_path(path: str | os.PathLike) -> Path:
    """Refuse an output path we cannot write (suffix, folder) before any work is done."""
    path = Path(path)
    if not any(path.name.lower().endswith(s) for s in WRITE_SUFFIXES):
        raise VolumeWriteError(f"{path.name}: choose a suffix among {', '.join(WRITE_SUFFIXES)}")
    if not path.parent.is_dir():
        raise VolumeWriteError(f"{path.parent}: the folder does not exist")
    return check_writable_folder(path)  # a read-only or full folder is refused before the work


def read_back_check(array: np.ndarray, geometry):
    """A ``verify`` for :func:`atomic_path`: the file decodes to exactly ``array`` and ``geometry``.

    SimpleITK's NIfTI writer does not report a short write (a full disk gives a 0-byte or cut
    file and no error), so the written file is read back: the gzip stream must be complete, the
    NIfTI data as long as the header says, and the voxels and grid equal to what was written.
    """

    def verify(tmp: Path) -> None:
        import SimpleITK as sitk

        from .geometry import Geometry

        if tmp.name.lower().endswith((".nii", ".nii.gz")):
            try:
                if nifti_matches(tmp, array):
                    return  # complete, and the voxel bytes match (the grid is in the header)
            except CorruptFileError as err:
                raise OSError(errno.EIO, "the written file cannot be read back") from err
        try:
            check_volume_file(tmp)
            image = sitk.ReadImage(str(tmp))
        except (CorruptFileError, RuntimeError) as err:
            raise OSError(errno.EIO, "the written file cannot be read back") from err
        back = sitk.GetArrayViewFromImage(image)
        if back.shape != array.shape or not np.array_equal(back, array):
            raise OSError(errno.EIO, "the written file reads back different voxels")
        if not Geometry.from_sitk(image).same_grid(geometry, tol=1e-3):  # NIfTI keeps float32
            raise OSError(errno.EIO, "the written file reads back a different geometry")

    return verify


def write_volume(volume: Volume, path: str | os.PathLike, *, labels: bool = False) -> Path:
    """Write ``volume`` with its exact geometry to NIfTI, NRRD or MHA (chosen by suffix).

    With ``labels=True`` the array is stored as uint8 or uint16, as the ids need. The data go to
    a temporary file in the same folder first and replace ``path`` only once fully written, so a
    failed write never destroys an existing file.
    """
    import SimpleITK as sitk

    path = check_output_path(path)
    suffix = next(s for s in WRITE_SUFFIXES if path.name.lower().endswith(s))
    array = volume.array
    if labels:
        array = array.astype(label_dtype_for(array), copy=False)
    elif array.dtype == bool:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    volume.geometry.apply_to_sitk(image)
    with atomic_path(path, suffix=suffix, verify=read_back_check(array, volume.geometry)) as tmp:
        sitk.WriteImage(image, str(tmp), True)
    return path
