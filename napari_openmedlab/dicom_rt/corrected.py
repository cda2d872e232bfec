"""``--write-corrected-series``: a copy of a series with new, valid UIDs that an export can reference.

A series with empty or duplicated UIDs (anonymisers do this) cannot be referenced by an RTSTRUCT or a
SEG. Rather than invent references to images that do not carry them, we write a copy whose images
carry the UIDs the export then references: one new Study, Series and (when missing) Frame of
Reference UID for the whole series, one new SOP Instance UID per image. Pixel data, positions and
every other attribute are copied unchanged (the pixel data are not decoded). Each file is written
through :func:`io.atomic.atomic_path`, so an interrupted copy never leaves a half-written image.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io.atomic import atomic_path
from .errors import DicomExchangeError
from .series import DicomSeries, read_series

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_corrected_series(series: DicomSeries, out_dir: str | os.PathLike) -> DicomSeries:
    """Copy ``series`` into ``out_dir`` with new UIDs; returns the index of the copy.

    ``out_dir`` must be a new or empty folder other than the series' own.
    """
    import pydicom
    from pydicom.uid import generate_uid

    out_dir = Path(out_dir)
    if out_dir.resolve() == series.folder.resolve():
        raise DicomExchangeError(f"{out_dir}: the corrected copy must go to another folder than the series")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DicomExchangeError(f"{out_dir}: choose a new or empty folder for the corrected series")
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    frame_uid = series.frame_of_reference_uid or generate_uid()
    for ref in series.slices:
        ds = pydicom.dcmread(ref.path)
        sop_class = str(ds.get("SOPClassUID", "") or "") or str(
            ds.file_meta.get("MediaStorageSOPClassUID", "") or CT_IMAGE_STORAGE
        )
        sop_uid = generate_uid()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        if ds.get("SeriesNumber") in (None, ""):
            ds.SeriesNumber = 1
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        with atomic_path(out_dir / ref.path.name, suffix=".dcm") as tmp:
            ds.save_as(tmp, enforce_file_format=True)
    return read_series(out_dir)
