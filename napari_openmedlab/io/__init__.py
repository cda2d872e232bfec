"""Headless medical-image I/O through SimpleITK. Never imports napari or Qt."""

from .errors import (
    CorruptFileError,
    FileWriteError,
    NoDicomSeriesError,
    NotVolumetricError,
    UnsupportedFormatError,
    VolumeReadError,
    VolumeWriteError,
)
from .geometry import Geometry
from .readers import (
    check_readable,
    is_label_volume,
    list_dicom_series,
    read_labels_onto,
    read_volume,
    supported_path,
)
from .resample import resample_labels_to
from .volume import Volume
from .writers import label_dtype_for, write_volume

__all__ = [
    "CorruptFileError",
    "FileWriteError",
    "check_readable",
    "Geometry",
    "NoDicomSeriesError",
    "NotVolumetricError",
    "UnsupportedFormatError",
    "Volume",
    "VolumeReadError",
    "VolumeWriteError",
    "is_label_volume",
    "label_dtype_for",
    "list_dicom_series",
    "read_labels_onto",
    "read_volume",
    "resample_labels_to",
    "supported_path",
    "write_volume",
]
