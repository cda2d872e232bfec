"""Read NIfTI, NRRD, MetaImage and DICOM series into a :class:`Volume`, all through SimpleITK."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import (
    CorruptFileError,
    NoDicomSeriesError,
    NotVolumetricError,
    UnsupportedFormatError,
)
from .geometry import Geometry
from .integrity import check_volume_file
from .volume import Volume

FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# A file name that says "this is a segmentation".
_LABEL_NAME = re.compile(r"(^|[^a-z])(seg|segmentation|label|labels|mask|gt|rtstruct)([^a-z]|$)", re.I)
_MAX_LABEL_IDS = 256


def supported_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like something we read: a known file suffix or a directory."""
    p = str(path)
    return os.path.isdir(p) or p.lower().endswith(FILE_SUFFIXES)


def read_volume(
    path: str | os.PathLike,
    *,
    series_uid: str | None = None,
    component: int | None = None,
) -> Volume:
    """Read a 3D volume with its exact geometry.

    Args:
        path: a NIfTI/NRRD/MetaImage file, or a folder holding a DICOM series.
        series_uid: for a DICOM folder with several series, the SeriesInstanceUID to open.
            By default the series with the most slices is opened.
        component: for a 4D image (time points) or a multi-channel image, the index of the 3D
            component to open. Without it such images are refused with a message saying how many
            components there are.

    Raises:
        UnsupportedFormatError, CorruptFileError, NotVolumetricError, NoDicomSeriesError.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such file or folder: {path}")
    if path.is_dir():
        return _read_dicom_folder(path, series_uid, component)
    if not str(path).lower().endswith(FILE_SUFFIXES):
        raise UnsupportedFormatError(
            f"{path.name}: not a supported format (expected one of {', '.join(FILE_SUFFIXES)} "
            "or a DICOM folder)"
        )
    nonfinite = check_volume_file(path)
    image = _sitk_read_file(path)
    volume = _to_volume(image, component, {"source": str(path), "format": _format_name(path)},
                        nonfinite=nonfinite)
    return volume


def check_readable(path: str | os.PathLike) -> None:
    """Raise the error :func:`read_volume` would raise for ``path``, reading headers only.

    For a quick refusal before a viewer starts: a missing path, an empty folder or one without a
    DICOM series, a file of another format, or a file whose header does not decode. Whether the
    voxel data are complete is left to the real read.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if not any(path.iterdir()):
            raise NoDicomSeriesError(f"{path}: the folder is empty (expected a DICOM series)")
        if not list_dicom_series(path):
            raise NoDicomSeriesError(f"{path}: no DICOM series found in this folder")
        return
    if not str(path).lower().endswith(FILE_SUFFIXES):
        raise UnsupportedFormatError(
            f"{path}: not a supported format (expected one of {', '.join(FILE_SUFFIXES)} "
            "or a DICOM folder)"
        )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise CorruptFileError(
            f"{path}: the file could not be decoded as {_format_name(path).upper()}; it may be "
            "truncated or of another kind"
        ) from err
    if reader.GetDimension() < 3:
        raise NotVolumetricError(f"{path}: a {reader.GetDimension()}D image; a 3D volume is needed")


def list_dicom_series(folder: str | os.PathLike) -> dict[str, list[str]]:
    """SeriesInstanceUID -> sorted slice files of every DICOM series in ``folder``."""
    import SimpleITK as sitk

    folder = str(folder)
    # ITK prints a multi-line WARNING to stderr for a folder without a series; we say it in one line.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ()
        return {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)) for uid in uids}
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def is_label_volume(volume: Volume, name: str = "") -> bool:
    """Whether a volume should open as a Labels layer rather than an Image.

    The rule: the voxel type is an integer type, and either the file name says segmentation
    (``seg``, ``label``, ``mask``, ``gt`` as a word) or the volume holds at most 256 distinct
    non-negative values. CT is stored as integers too but has thousands of distinct HU values.
    """
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        return False
    if _LABEL_NAME.search(Path(name).name.split(".")[0]):
        return True
    sample = array[:: max(1, array.shape[0] // 16)]
    if sample.size and sample.min() < 0:
        return False
    return len(np.unique(sample)) <= _MAX_LABEL_IDS and len(np.unique(array)) <= _MAX_LABEL_IDS


def _format_name(path: Path) -> str:
    name = path.name.lower()
    for suffix, fmt in ((".nii.gz", "nifti"), (".nii", "nifti"), (".nrrd", "nrrd"), (".nhdr", "nrrd")):
        if name.endswith(suffix):
            return fmt
    return "metaimage"


def _sitk_read_file(path: Path):
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[-1] if str(err).strip() else ""
        raise CorruptFileError(
            f"{path.name}: the file could not be decoded; it may be truncated or not really "
            f"{_format_name(path).upper()} ({first_line})"
        ) from err


def _read_dicom_folder(folder: Path, series_uid: str | None, component: int | None) -> Volume:
    import SimpleITK as sitk

    if not any(folder.iterdir()):
        raise NoDicomSeriesError(f"{folder}: the folder is empty")
    series = list_dicom_series(folder)
    if not series:
        raise NoDicomSeriesError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None:
        series_uid = max(series, key=lambda uid: len(series[uid]))
    elif series_uid not in series:
        raise NoDicomSeriesError(
            f"{folder}: no series with SeriesInstanceUID {series_uid}; found {', '.join(series)}"
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[series_uid])
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise CorruptFileError(f"{folder}: DICOM series {series_uid} could not be decoded") from err
    metadata = {
        "source": str(folder),
        "format": "dicom",
        "series_uid": series_uid,
        "n_slices": len(series[series_uid]),
        "other_series": {uid: len(files) for uid, files in series.items() if uid != series_uid},
    }
    return _to_volume(image, component, metadata)


def _to_volume(image, component: int | None, metadata: dict, nonfinite=None) -> Volume:
    import SimpleITK as sitk

    name = Path(metadata.get("source", "")).name
    dim = image.GetDimension()
    n_comp = image.GetNumberOfComponentsPerPixel()
    if dim == 2:
        raise NotVolumetricError(f"{name}: a 2D image ({image.GetSize()}); a 3D volume is needed")
    if dim == 4:
        size = image.GetSize()
        if component is None:
            raise NotVolumetricError(
                f"{name}: a 4D image with {size[3]} time points/channels; choose one "
                f"(component 0..{size[3] - 1}; `openmedlab segment --component N`)"
            )
        if not 0 <= component < size[3]:
            raise NotVolumetricError(f"{name}: component {component} out of range 0..{size[3] - 1}")
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize([size[0], size[1], size[2], 0])
        extractor.SetIndex([0, 0, 0, component])
        image = extractor.Execute(image)
        metadata["component"] = component
    elif dim != 3:
        raise NotVolumetricError(f"{name}: a {dim}D image; a 3D volume is needed")
    elif component is not None and n_comp == 1:
        raise NotVolumetricError(
            f"{name}: a 3D image with one component; a component ({component}) applies only to 4D "
            "or multi-channel images: drop it"
        )
    if n_comp > 1:
        if component is None:
            raise NotVolumetricError(
                f"{name}: a multi-channel image with {n_comp} components per voxel; choose one "
                f"(component 0..{n_comp - 1}; `openmedlab segment --component N`)"
            )
        if not 0 <= component < n_comp:
            raise NotVolumetricError(f"{name}: component {component} out of range 0..{n_comp - 1}")
        image = sitk.VectorIndexSelectionCast(image, component)
        metadata["component"] = component
    array = sitk.GetArrayFromImage(image)
    if min(array.shape) < 1:
        raise NotVolumetricError(f"{name}: empty image of shape {array.shape}")
    if nonfinite is not None and array.dtype.kind == "f" and array.size > int(nonfinite.max()):
        array.reshape(-1)[nonfinite] = np.nan  # ITK's NIfTI reader made them 0; keep "no value"
    spacing = image.GetSpacing()
    if not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise CorruptFileError(f"{name}: voxel spacing {spacing} mm is not finite and positive")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).any():
        raise CorruptFileError(f"{name}: no voxel holds a finite value (all NaN or infinite)")
    geometry = Geometry.from_sitk(image)
    metadata["geometry"] = geometry.to_dict()
    return Volume(array, geometry, metadata)


def read_labels_onto(path: str | os.PathLike, reference: Volume) -> Volume:
    """Read a label map and resample it (nearest, in physical space) onto ``reference``'s grid.

    Use this when a segmentation was saved on another voxel grid (flipped axes, other origin or
    spacing) than the image it belongs to: the result shares the image's grid voxel for voxel.
    """
    from .resample import resample_labels_to

    return resample_labels_to(read_volume(path), reference.geometry, reference.shape)
