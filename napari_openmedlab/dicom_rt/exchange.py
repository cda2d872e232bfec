"""The RT exchange in a few calls, shared by the CLI, the napari reader and the widget.

* :func:`open_series` indexes a series and, when asked, writes the corrected copy the export will
  reference (``--write-corrected-series``); without it a series with bad UIDs is refused.
* :func:`structures_on_series` builds a :class:`StructureSet` on the series' grid from a label map
  (any grid: resampled in physical space, nearest neighbour) and binary masks (may overlap).
* :func:`export_structures` writes an RTSTRUCT or a SEG; :func:`import_structures` reads either.
* :func:`find_structure_files` lists the RTSTRUCT and SEG files of a folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DicomExchangeError
from .rtstruct_read import ImportResult, read_rtstruct
from .series import RTSTRUCT_SOP_CLASS, SEG_SOP_CLASSES, DicomSeries, dicom_files, read_series


def open_series(folder: str | os.PathLike, corrected_dir: str | os.PathLike | None = None) -> tuple[DicomSeries, str]:
    """The series to reference: ``folder``'s, or its corrected copy in ``corrected_dir``.

    Returns ``(series, note)``; ``note`` says what was written (empty when nothing was).
    Raises :class:`SeriesUidError` when the UIDs are unusable and no ``corrected_dir`` is given.
    """
    from .corrected import write_corrected_series

    folder = Path(folder)
    if not folder.is_dir():
        raise DicomExchangeError(f"{folder}: not a folder; give the folder of the image's DICOM series")
    series = read_series(folder)
    if corrected_dir is None:
        series.check_referencable()
        return series, ""
    problems = series.uid_problems()
    copy = write_corrected_series(series, corrected_dir)
    why = f" (the original has {'; '.join(problems)})" if problems else ""
    return copy, f"wrote a copy of the series with new UIDs to {corrected_dir}{why}; the export references it"


def structures_on_series(
    series: DicomSeries,
    label_map: str | os.PathLike | None = None,
    classes=None,
    masks: list[tuple[str, str | os.PathLike]] | None = None,
):
    """A :class:`StructureSet` on ``series``' grid from a label map file and ``(name, file)`` masks."""
    from ..annotation import StructureSet
    from ..io.readers import read_volume
    from ..io.resample import resample_labels_to

    if label_map is None and not masks:
        raise DicomExchangeError("nothing to export: give a label map and/or --mask NAME=FILE")
    if label_map is not None:
        volume = resample_labels_to(read_volume(label_map), series.geometry, series.shape)
        if classes is None:
            from ..layers import label_names_beside

            classes = label_names_beside(str(label_map))
        structures = StructureSet.from_label_map(volume.array, series.geometry, classes)
    else:
        structures = StructureSet(series.geometry, series.shape)
    for name, path in masks or []:
        volume = resample_labels_to(read_volume(path), series.geometry, series.shape)
        if name in structures:
            raise DicomExchangeError(f"--mask {name}: a structure with this name exists already")
        structures.add(name, np.asarray(volume.array) > 0)
    return structures


def export_structures(
    structures, series: DicomSeries, *, rtstruct=None, seg=None, labelmap: bool = False, omit_empty_frames: bool = False
) -> list[str]:
    """Write an RTSTRUCT and/or a SEG; returns lines describing what was written."""
    from .rtstruct_write import write_rtstruct
    from .seg import write_seg

    if len(structures) == 0:
        raise DicomExchangeError("no structures to export")
    lines = []
    if rtstruct is not None:
        write_rtstruct(structures, series, rtstruct)
        lines.append(f"wrote an RTSTRUCT with {len(structures)} ROIs to {rtstruct}")
    if seg is not None:
        _, lost = write_seg(structures, series, seg, labelmap=labelmap, omit_empty_frames=omit_empty_frames)
        kind = "LABELMAP" if labelmap else "BINARY"
        lines.append(f"wrote a {kind} SEG with {len(structures)} segments to {seg}")
        for name, n in lost.items():
            lines.append(f"{name}: {n} voxels shown as an overlapping smaller structure in the LABELMAP")
    return lines


def structure_kind(path: str | os.PathLike) -> str | None:
    """``"rtstruct"``, ``"seg"`` or None for any other (or unreadable) file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError):
        return None
    return _kind(ds)


def _kind(ds) -> str | None:
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop == RTSTRUCT_SOP_CLASS or ds.get("Modality") == "RTSTRUCT":
        return "rtstruct"
    if sop in SEG_SOP_CLASSES or ds.get("Modality") == "SEG":
        return "seg"
    return None


def find_structure_files(folder: str | os.PathLike, files=None) -> list[tuple[Path, str]]:
    """``(path, "rtstruct" | "seg")`` of every structure file directly in ``folder``."""
    entries = files if files is not None else dicom_files(folder)
    return [(path, kind) for path, ds in entries if (kind := _kind(ds)) is not None]


def import_structures(path: str | os.PathLike, series: DicomSeries) -> ImportResult:
    """Read an RTSTRUCT or a SEG onto ``series``' grid (problems reported, see the readers)."""
    from .seg import read_seg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    kind = structure_kind(path)
    if kind == "rtstruct":
        return read_rtstruct(path, series)
    if kind == "seg":
        return read_seg(path, series)
    raise DicomExchangeError(f"{path.name}: neither an RTSTRUCT nor a DICOM SEG")


def open_study(folder: str | os.PathLike, files=None) -> tuple[DicomSeries, list[tuple[Path, ImportResult]]]:
    """A folder as a radiotherapy user has it: the image series and every RTSTRUCT/SEG onto it.

    ``files``: the folder's ``(path, header)`` pairs when already read (:func:`series.dicom_files`).
    """
    files = files if files is not None else dicom_files(folder)
    series = read_series(folder, files=files)
    results = []
    for path, _kind_name in find_structure_files(folder, files):
        try:
            results.append((path, import_structures(path, series)))
        except DicomExchangeError as err:
            from ..annotation import StructureSet

            results.append((path, ImportResult(StructureSet(series.geometry, series.shape), [str(err)])))
    return series, results
