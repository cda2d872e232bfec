"""Read a DICOM RT Structure Set onto its image series' grid: one structure per ROI.

RTSTRUCTs come from many tools, so every ROI is checked before it is rasterised, and an ROI that
cannot be placed correctly is left out with one line naming it and the problem; the others are
imported. Nothing is ever put on a slice it was not drawn on:

* the file must reference this series (Series Instance UID, when the file names one) and its
  Frame of Reference; an ROI whose own frame differs from the images' is left out;
* each contour must be CLOSED_PLANAR with at least 3 points, all within a tolerance of one image
  plane of the series (10% of the slice spacing, at most 0.2 mm: points a hair off the plane are
  accepted, a contour between slices is not); a contour whose referenced image is not in the folder
  is accepted only when its points lie in one of the series' planes, otherwise the ROI is left out;
* contours are filled by the even-odd rule at voxel centres, per slice (holes and islands drawn as
  separate contours both work, whatever their orientation).

An ROI without contours is imported as an empty structure (and reported).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .contours import fill_even_odd
from .errors import DicomExchangeError
from .series import RTSTRUCT_SOP_CLASS, DicomSeries

_PLANE_TOL_FRACTION = 0.1
_PLANE_TOL_MAX_MM = 0.2


@dataclass
class ImportResult:
    """Structures read from an RTSTRUCT or SEG, and one line per problem (ROI left out, empty ROI)."""

    structures: object
    problems: list[str] = field(default_factory=list)


def _roi_color(item, index: int):
    color = item.get("ROIDisplayColor")
    if color is not None and len(color) == 3:
        try:
            return tuple(int(v) / 255 for v in color)
        except (TypeError, ValueError):
            return None
    return None


def check_references(ds, series: DicomSeries, source: str) -> None:
    """Refuse a file that references another series (by its Series Instance UID) or another frame."""
    referenced_series = set()
    frames = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        if frame.get("FrameOfReferenceUID"):
            frames.add(str(frame.FrameOfReferenceUID))
        for study in frame.get("RTReferencedStudySequence", []):
            for ser in study.get("RTReferencedSeriesSequence", []):
                if ser.get("SeriesInstanceUID"):
                    referenced_series.add(str(ser.SeriesInstanceUID))
    if referenced_series and series.series_uid not in referenced_series:
        raise DicomExchangeError(
            f"{source}: references series {sorted(referenced_series)[0]}, not the series in {series.folder} "
            f"({series.series_uid or 'which has no Series Instance UID'})"
        )


def read_rtstruct(path: str | os.PathLike, series: DicomSeries) -> ImportResult:
    """Rasterise every ROI of the RTSTRUCT at ``path`` onto ``series``' grid."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ..annotation import StructureSet

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise DicomExchangeError(f"{path.name}: not a readable DICOM file ({err})") from None
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and ds.get("Modality") != "RTSTRUCT":
        raise DicomExchangeError(f"{path.name}: not an RT Structure Set (Modality {ds.get('Modality', '?')})")
    check_references(ds, series, path.name)
    out = StructureSet(series.geometry, series.shape)
    problems: list[str] = []
    try:
        contours_by_roi = {
            int(item.ReferencedROINumber): item
            for item in ds.get("ROIContourSequence", [])
            if "ReferencedROINumber" in item
        }
        rois = list(ds.get("StructureSetROISequence", []))
    except (TypeError, ValueError, AttributeError) as err:
        raise DicomExchangeError(f"{path.name}: damaged ROI Contour or Structure Set ROI sequence ({err})") from None
    for index, roi in enumerate(rois):
        try:
            number = int(roi.get("ROINumber", index + 1))
        except (TypeError, ValueError):
            problems.append(f"{path.name}: ROI {index + 1} has an unreadable ROI Number; left out")
            continue
        name = str(roi.get("ROIName", "") or "").strip() or f"ROI {number}"
        label = f"{path.name}: ROI {name!r} (number {number})"
        frame_uid = str(roi.get("ReferencedFrameOfReferenceUID", "") or "")
        if frame_uid and series.frame_of_reference_uid and frame_uid != series.frame_of_reference_uid:
            problems.append(
                f"{label}: Frame of Reference {frame_uid} differs from the images' "
                f"{series.frame_of_reference_uid}; left out (no registration is known)"
            )
            continue
        item = contours_by_roi.get(number)
        try:
            mask = _rasterise_roi(item, series) if item is not None else None
        except DicomExchangeError as err:
            problems.append(f"{label}: {err}; left out")
            continue
        except (TypeError, ValueError, AttributeError, KeyError) as err:  # malformed attributes
            problems.append(f"{label}: unreadable contour attributes ({type(err).__name__}: {err}); left out")
            continue
        if mask is None or not mask.any():
            problems.append(f"{label}: has no contours; imported empty")
        codes = {}
        if roi.get("ROIDescription"):
            codes["description"] = str(roi.ROIDescription)
        unique = name
        while unique in out:
            unique = f"{unique}_{number}"
        color = _roi_color(item, index) if item is not None else None
        out.add(unique, mask if mask is not None else None, color, codes=codes)
    return ImportResult(out, problems)


def _rasterise_roi(item, series: DicomSeries) -> np.ndarray | None:
    sequence = item.get("ContourSequence")
    if not sequence:
        return None
    geometry = series.geometry
    dz = geometry.spacing[2]
    tol = min(_PLANE_TOL_MAX_MM, _PLANE_TOL_FRACTION * dz) / dz  # in slice-index units
    per_slice: dict[int, list[np.ndarray]] = {}
    for n, contour in enumerate(sequence, start=1):
        kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
        data = _contour_data(contour)
        if data is None or len(data) < 9 or len(data) % 3:
            raise DicomExchangeError(f"contour {n} has {0 if data is None else len(data)} coordinates, not 3 per point")
        if kind in ("POINT", "OPEN_PLANAR", "OPEN_NONPLANAR"):
            raise DicomExchangeError(f"contour {n} is {kind}, not a closed contour enclosing an area")
        if not np.all(np.isfinite(data)):
            raise DicomExchangeError(f"contour {n} has coordinates that are not finite numbers")
        points = data.reshape(-1, 3)
        index = geometry.physical_to_index(points)  # (N, 3) continuous (z, y, x)
        k_values = index[:, 0]
        k = int(np.round(np.median(k_values)))
        ref_uids = [str(r.get("ReferencedSOPInstanceUID", "")) for r in contour.get("ContourImageSequence", [])]
        ref_k = [series.slice_index_of(u) for u in ref_uids if u]
        where = ref_uids[0] if ref_uids else "no referenced image"
        if np.max(np.abs(k_values - k)) > tol:
            if np.ptp(k_values) > 2 * tol:
                raise DicomExchangeError(f"contour {n} (image {where}) is not in one image plane of the series")
            raise DicomExchangeError(
                f"contour {n} (image {where}) lies between the series' slices "
                f"({abs(k_values[0] - k) * dz:.2f} mm off the nearest plane)"
            )
        if not 0 <= k < series.shape[0]:
            raise DicomExchangeError(f"contour {n} (image {where}) lies outside the series' slices")
        if ref_k and ref_k[0] is not None and ref_k[0] != k:
            raise DicomExchangeError(
                f"contour {n} references image {where} (slice {ref_k[0]}) but its points lie on slice {k}"
            )
        per_slice.setdefault(k, []).append(index[:, 1:])
    mask = np.zeros(series.shape, dtype=bool)
    for k, loops in per_slice.items():
        mask[k] = fill_even_odd(loops, series.shape[1:])  # even-odd across all contours of the slice
    return mask


def _contour_data(contour) -> np.ndarray | None:
    """Contour Data as floats, parsed from the raw bytes when pydicom has not converted them yet
    (building one DS object per number is most of an import's time otherwise)."""
    elem = contour.get_item(0x30060050)
    if elem is None:
        return None
    raw = elem.value
    if isinstance(raw, bytes):
        try:
            return np.array(raw.decode("ascii").replace("\\", " ").split(), dtype=float)
        except (UnicodeDecodeError, ValueError):
            pass
    try:
        return np.array([float(v) for v in contour.ContourData], dtype=float)
    except (TypeError, ValueError):
        raise DicomExchangeError("Contour Data that are not numbers") from None
