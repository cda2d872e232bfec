"""Typed errors of the I/O layer. Each message says what was wrong and what to do about it."""


class VolumeReadError(ValueError):
    """A file or folder could not be read as a 3D medical volume."""


class UnsupportedFormatError(VolumeReadError):
    """The path is not a format we read (by extension, or not a DICOM folder)."""


class CorruptFileError(VolumeReadError):
    """The file has a supported extension but its content cannot be decoded."""


class NotVolumetricError(VolumeReadError):
    """The image is not 3D (a 2D image, or 4D / multi-channel without a chosen component)."""


class NoDicomSeriesError(VolumeReadError):
    """A folder holds no DICOM series (or the requested series uid is not there)."""


class VolumeWriteError(OSError):
    """A volume could not be written; any existing file at the destination is untouched."""


class FileWriteError(VolumeWriteError):
    """Any file (volume, JSON, CSV, plot, DICOM, ...) could not be written; the target is untouched."""
