"""An index of a DICOM image series from its headers: one entry per slice, ordered along the normal.

The RT exchange needs what SimpleITK does not keep: each slice's SOP Instance UID (an RTSTRUCT
contour and a SEG frame reference the image they lie on by it), the Study/Series/Frame of Reference
UIDs, the patient and study attributes to copy. Only headers are read (``stop_before_pixels``), so a
JPEG 2000 series is indexed without a decoder.

The grid is built exactly as SimpleITK/GDCM build it (slices sorted by their position along the
normal ``row x column`` cosines, origin at the first one), so a label map read by
:func:`io.read_volume` from the same folder shares this grid voxel for voxel; a test checks it.
Slices whose positions do not lie on one line along the normal (gantry tilt), uneven spacing, mixed
orientations or sizes are refused: a contour would otherwise land on the wrong slice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.geometry import Geometry
from .errors import DicomExchangeError, SeriesGeometryError, SeriesUidError

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # Segmentation, Label Map
# Relative tolerance on slice spacing and on the in-plane drift of slice positions.
_SPACING_TOL = 0.01
_POSITION_TOL_MM = 0.01


@dataclass(frozen=True)
class SliceRef:
    """One image of a series: file, SOP identity, position (LPS mm) and instance number."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    position: tuple[float, float, float]
    instance_number: int | None


@dataclass
class DicomSeries:
    """A DICOM image series as a regular 3D grid.

    Attributes:
        folder: where the files are.
        slices: one :class:`SliceRef` per slice, in grid order (``z`` index = list index).
        geometry: the grid's geometry (spacing, origin, direction; the same as SimpleITK's).
        shape: ``(z, y, x)`` voxels.
        study_uid, series_uid, frame_of_reference_uid: as stored (possibly empty).
        header: the first slice's header dataset (patient, study and equipment attributes).
    """

    folder: Path
    slices: list[SliceRef]
    geometry: Geometry
    shape: tuple[int, int, int]
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    header: object = field(repr=False)

    @property
    def normal(self) -> np.ndarray:
        return self.geometry.direction_matrix[:, 2]

    def slice_index_of(self, sop_instance_uid: str) -> int | None:
        for k, s in enumerate(self.slices):
            if s.sop_instance_uid == sop_instance_uid:
                return k
        return None

    def uid_problems(self) -> list[str]:
        """What makes this series impossible to reference correctly (empty list when fine)."""
        from pydicom.uid import UID

        problems = []
        for label, uid in (
            ("Study Instance UID", self.study_uid),
            ("Series Instance UID", self.series_uid),
            ("Frame of Reference UID", self.frame_of_reference_uid),
        ):
            if not uid:
                problems.append(f"an empty {label}")
            elif not UID(uid).is_valid:
                problems.append(f"an invalid {label} {uid!r}")
        sops = [s.sop_instance_uid for s in self.slices]
        empty = sum(1 for u in sops if not u)
        if empty:
            problems.append(f"{empty} of {len(sops)} images with an empty SOP Instance UID")
        invalid = [u for u in sops if u and not UID(u).is_valid]
        if invalid:
            problems.append(f"invalid SOP Instance UIDs ({invalid[0]!r}, ...)")
        dup = {u for u in sops if u and sops.count(u) > 1}
        if dup:
            problems.append(f"duplicated SOP Instance UIDs ({sorted(dup)[0]}, ...)")
        if any(not s.sop_class_uid for s in self.slices):
            problems.append("images with an empty SOP Class UID")
        return problems

    def check_referencable(self) -> None:
        """Raise :class:`SeriesUidError` when an RTSTRUCT/SEG could not reference these images."""
        problems = self.uid_problems()
        if problems:
            raise SeriesUidError(
                f"{self.folder}: the series has {'; '.join(problems)}, so an RTSTRUCT or SEG cannot "
                "reference its images; write a copy with new UIDs with --write-corrected-series DIR "
                "(the export then references that copy)"
            )


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError):
        return None


def _is_image(ds) -> bool:
    return all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows"))


def dicom_files(folder: str | os.PathLike) -> list[tuple[Path, object]]:
    """(path, header) of every readable DICOM file directly in ``folder`` (sorted by name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No such folder: {folder}")
    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        ds = _read_header(path)
        if ds is not None:
            out.append((path, ds))
    return out


def _series_key(ds) -> tuple:
    # An empty Series Instance UID groups by what a series shares (frame, orientation, size).
    iop = tuple(round(float(v), 4) for v in ds.ImageOrientationPatient)
    return (
        str(ds.get("SeriesInstanceUID", "") or ""),
        str(ds.get("FrameOfReferenceUID", "") or ""),
        iop,
        int(ds.Rows),
        int(ds.Columns),
    )


def read_series(
    folder: str | os.PathLike, series_uid: str | None = None, files: Iterable[tuple[Path, object]] | None = None
) -> DicomSeries:
    """Index the image series in ``folder`` (the largest one, or the one with ``series_uid``).

    Raises:
        DicomExchangeError: no image series; :class:`SeriesGeometryError`: not one regular grid.
    """
    folder = Path(folder)
    entries = list(files) if files is not None else dicom_files(folder)
    groups: dict[tuple, list[tuple[Path, object]]] = {}
    for path, ds in entries:
        if _is_image(ds):
            groups.setdefault(_series_key(ds), []).append((path, ds))
    if not groups:
        raise DicomExchangeError(f"{folder}: no DICOM image series in this folder")
    if series_uid is not None:
        matching = [k for k in groups if k[0] == series_uid]
        if not matching:
            found = ", ".join(sorted({k[0] or "(empty)" for k in groups}))
            raise DicomExchangeError(f"{folder}: no image series with Series Instance UID {series_uid} (found {found})")
        key = max(matching, key=lambda k: len(groups[k]))
    else:
        key = max(groups, key=lambda k: len(groups[k]))
    return _build(folder, groups[key])


def _build(folder: Path, members: list[tuple[Path, object]]) -> DicomSeries:
    header = members[0][1]
    iop = np.array([float(v) for v in header.ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]
    if abs(np.linalg.norm(row_dir) - 1) > 1e-3 or abs(np.linalg.norm(col_dir) - 1) > 1e-3 or abs(row_dir @ col_dir) > 1e-3:
        raise SeriesGeometryError(f"{folder}: Image Orientation (Patient) {list(iop)} is not two orthogonal unit vectors")
    row_dir = row_dir / np.linalg.norm(row_dir)
    col_dir = col_dir / np.linalg.norm(col_dir)
    normal = np.cross(row_dir, col_dir)
    spacing_rc = [float(v) for v in header.PixelSpacing]  # (between rows, between columns)
    for path, ds in members:
        if [float(v) for v in ds.PixelSpacing] != spacing_rc:
            raise SeriesGeometryError(f"{path.name}: Pixel Spacing differs from the rest of the series")
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in members])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    positions, along = positions[order], along[order]
    members = [members[i] for i in order]
    if len(members) > 1:
        steps = np.diff(along)
        if np.any(steps < 1e-6):
            k = int(np.argmin(steps))
            raise SeriesGeometryError(
                f"{folder}: two images at the same position ({members[k][0].name}, {members[k + 1][0].name})"
            )
        dz = float(np.mean(steps))
        if np.max(np.abs(steps - dz)) > _SPACING_TOL * dz:
            raise SeriesGeometryError(
                f"{folder}: uneven slice spacing ({steps.min():.3f} to {steps.max():.3f} mm); "
                "missing slices or a variable-thickness series cannot be exported correctly"
            )
        drift = positions - positions[0] - np.outer(along - along[0], normal)
        if np.max(np.linalg.norm(drift, axis=1)) > max(_POSITION_TOL_MM, 0.01 * dz):
            raise SeriesGeometryError(
                f"{folder}: slice positions are not stacked along the slice normal (a gantry tilt or "
                "sheared series); such a series is refused rather than exported wrongly"
            )
    else:
        dz = float(header.get("SpacingBetweenSlices", 0) or header.get("SliceThickness", 0) or 1.0)
    direction = np.stack([row_dir, col_dir, normal], axis=1)  # column j = index axis j (x, y, z)
    geometry = Geometry((spacing_rc[1], spacing_rc[0], dz), tuple(positions[0]), tuple(direction.ravel()))
    slices = [
        SliceRef(
            path=path,
            sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
            sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
            position=tuple(float(v) for v in ds.ImagePositionPatient),
            instance_number=int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
        )
        for path, ds in members
    ]
    studies = {str(ds.get("StudyInstanceUID", "") or "") for _, ds in members}
    frames = {str(ds.get("FrameOfReferenceUID", "") or "") for _, ds in members}
    return DicomSeries(
        folder=folder,
        slices=slices,
        geometry=geometry,
        shape=(len(members), int(header.Rows), int(header.Columns)),
        study_uid=studies.pop() if len(studies) == 1 else "",
        series_uid=str(header.get("SeriesInstanceUID", "") or ""),
        frame_of_reference_uid=frames.pop() if len(frames) == 1 else "",
        header=header,
    )
