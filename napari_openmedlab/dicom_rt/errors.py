"""Typed errors of the DICOM RT exchange. Each message is one line naming the file, ROI or UID."""

from ..io.errors import VolumeReadError


class DicomExchangeError(VolumeReadError):
    """A DICOM series, RTSTRUCT or SEG cannot be exported or imported correctly (nothing was written)."""


class SeriesUidError(DicomExchangeError):
    """The series has empty, invalid or duplicated Study/Series/SOP Instance UIDs: it cannot be referenced."""


class SeriesGeometryError(DicomExchangeError):
    """The series' slices do not form one regular grid (gantry tilt, uneven spacing, mixed orientation)."""
