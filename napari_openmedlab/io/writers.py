"""Write a :class:`Volume` atomically: to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from .errors import VolumeWriteError
from .volume import Volume

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
    return path


def file_mode_for(path: Path) -> int:
    """Permissions for a file written through a temporary: the replaced file's, else 0666 - umask."""
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, True)
        os.chmod(tmp, file_mode_for(path))  # mkstemp makes 0600; keep what others could read
        os.replace(tmp, path)
    except (RuntimeError, OSError) as err:
        raise VolumeWriteError(f"{path}: could not be written ({err}); nothing was overwritten") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
