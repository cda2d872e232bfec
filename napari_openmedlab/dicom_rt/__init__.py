"""DICOM radiotherapy exchange: RTSTRUCT and SEG out and in, around the structure set.

Headless (pydicom, highdicom); see docs/radiotherapy.md. Import the functions from here.
"""

from .errors import DicomExchangeError, SeriesGeometryError, SeriesUidError
from .exchange import (
    export_structures,
    find_structure_files,
    import_structures,
    open_series,
    open_study,
    structure_kind,
    structures_on_series,
)
from .rtstruct_read import ImportResult
from .series import DicomSeries, read_series

__all__ = [
    "DicomExchangeError",
    "DicomSeries",
    "ImportResult",
    "SeriesGeometryError",
    "SeriesUidError",
    "export_structures",
    "find_structure_files",
    "import_structures",
    "open_series",
    "open_study",
    "read_series",
    "structure_kind",
    "structures_on_series",
]
