"""DICOM SEG out (highdicom) and in (pydicom), on the referenced series' grid.

Export: BINARY (one segment per structure, overlaps kept) or LABELMAP (one label map; where
structures overlap the smaller keeps the voxel, and the voxels others lose are reported), always
uncompressed, one frame per source image and segment, in the order of the source images, and empty
frames kept by default (``omit_empty_frames=False``): some viewers misplace segments otherwise.
Segment descriptions carry the SNOMED CT codes of the curated table, laterality as a modifier.

Import: every frame is placed by its own Plane Position (checked against the series' planes and
orientation), not by its order in the file, so a SEG from another tool, with empty frames omitted,
lands on the right slices; a frame off the series' planes is refused with its number.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import atomic_path
from .codes import code_for
from .errors import DicomExchangeError
from .rtstruct_read import ImportResult
from .rtstruct_write import MANUFACTURER, check_structures_fit
from .series import SEG_SOP_CLASSES, DicomSeries

_PLANE_TOL_MM = 0.2


def _coded(code):
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning)


def _source_images(series: DicomSeries) -> list:
    import pydicom

    images = []
    for ref in series.slices:  # headers only: highdicom needs no pixel data of the sources
        images.append(pydicom.dcmread(ref.path, stop_before_pixels=True))
    return images


def _description(number: int, name: str, color: str):
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.sr.codedict import codes

    code = code_for(name)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=MANUFACTURER, family=codes.cid7162.ArtificialIntelligence, version=__version__
    )
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=_coded(code.category),
        segmented_property_type=_coded(code.property_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*(int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))),
    )
    if code.laterality is not None:
        modifier = Dataset()
        modifier.CodeValue = code.laterality.value
        modifier.CodingSchemeDesignator = code.laterality.scheme
        modifier.CodeMeaning = code.laterality.meaning
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = Sequence([modifier])
    return desc


def build_seg(structures, series: DicomSeries, *, labelmap: bool = False, omit_empty_frames: bool = False, series_number: int = 902):
    """The SEG dataset for ``structures`` on ``series``' grid; returns ``(dataset, lost_counts)``."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    series.check_referencable()
    check_structures_fit(structures, series)
    members = [s for s in structures]
    if not members:
        raise DicomExchangeError("no structures to export")
    descriptions = [_description(i, s.name, s.color) for i, s in enumerate(members, start=1)]
    lost: dict = {}
    if labelmap:
        flat = structures.to_label_map()
        lost = flat.lost_counts
        pixels = np.zeros(series.shape, dtype=np.uint16 if len(members) > 255 else np.uint8)
        for i, s in enumerate(members, start=1):
            pixels[flat.labels == flat.ids[s.name]] = i
        seg_type = hd.seg.SegmentationTypeValues.LABELMAP
    else:
        pixels = np.zeros((*series.shape, len(members)), dtype=bool)
        for i, s in enumerate(members):
            if not s.mask.empty:
                sl = tuple(slice(a, b) for a, b in zip(s.mask.bbox[:3], s.mask.bbox[3:], strict=True))
                pixels[sl + (i,)] = s.mask.patch()
        seg_type = hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(
        source_images=_source_images(series),
        pixel_array=pixels,
        segmentation_type=seg_type,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER,
        software_versions=__version__,
        device_serial_number="0",
        omit_empty_frames=omit_empty_frames,
        series_description="Segmentation from napari-openmedlab",
    )
    return seg, lost


def write_seg(structures, series: DicomSeries, path: str | os.PathLike, **kwargs) -> tuple[Path, dict]:
    """Write a DICOM SEG atomically; returns ``(path, voxels lost per structure in a LABELMAP)``."""
    seg, lost = build_seg(structures, series, **kwargs)
    path = Path(path)
    with atomic_path(path, suffix=".dcm") as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    return path, lost


def read_seg(path: str | os.PathLike, series: DicomSeries) -> ImportResult:
    """One structure per segment of the SEG at ``path``, placed on ``series``' grid by plane position."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ..annotation import StructureSet

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise DicomExchangeError(f"{path.name}: not a readable DICOM file ({err})") from None
    if str(ds.get("SOPClassUID", "")) not in SEG_SOP_CLASSES and ds.get("Modality") != "SEG":
        raise DicomExchangeError(f"{path.name}: not a DICOM Segmentation (Modality {ds.get('Modality', '?')})")
    _check_referenced_series(ds, series, path.name)
    frame_uid = str(ds.get("FrameOfReferenceUID", "") or "")
    if frame_uid and series.frame_of_reference_uid and frame_uid != series.frame_of_reference_uid:
        raise DicomExchangeError(
            f"{path.name}: Frame of Reference {frame_uid} differs from the images' {series.frame_of_reference_uid}"
        )
    seg_type = str(ds.get("SegmentationType", "BINARY"))
    if seg_type == "FRACTIONAL":
        raise DicomExchangeError(f"{path.name}: a FRACTIONAL segmentation; only BINARY and LABELMAP are imported")
    try:
        frames = ds.pixel_array
    except Exception as err:  # noqa: BLE001 - any decoder failure is one line for the user
        raise DicomExchangeError(f"{path.name}: the segmentation frames cannot be decoded ({err})") from None
    frames = np.asarray(frames).reshape(int(ds.get("NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns))
    if (int(ds.Rows), int(ds.Columns)) != tuple(series.shape[1:]):
        raise DicomExchangeError(
            f"{path.name}: frames of {ds.Rows} x {ds.Columns} pixels, the series' images are {series.shape[1]} x {series.shape[2]}"
        )
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    segments = {int(s.SegmentNumber): s for s in ds.get("SegmentSequence", [])}
    masks = {n: np.zeros(series.shape, dtype=bool) for n in segments}
    for f, group in enumerate(per_frame):
        k = _frame_slice(group, shared, series, f + 1, path.name)
        if seg_type == "LABELMAP":
            for n in np.unique(frames[f]):
                if int(n) in masks:
                    masks[int(n)][k] |= frames[f] == n
        else:
            ident = _item(group, shared, "SegmentIdentificationSequence")
            n = int(ident.ReferencedSegmentNumber)
            if n not in masks:
                raise DicomExchangeError(f"{path.name}: frame {f + 1} refers to segment {n}, which is not described")
            masks[n][k] |= frames[f].astype(bool)
    out = StructureSet(series.geometry, series.shape)
    problems = []
    for n, item in segments.items():
        name = str(item.get("SegmentLabel", "") or f"segment {n}").strip() or f"segment {n}"
        while name in out:
            name = f"{name}_{n}"
        color = _segment_color(item)
        codes = {}
        if "SegmentedPropertyTypeCodeSequence" in item:
            t = item.SegmentedPropertyTypeCodeSequence[0]
            codes["snomed"] = f"{t.CodingSchemeDesignator}:{t.CodeValue} {t.CodeMeaning}"
        if not masks[n].any():
            problems.append(f"{path.name}: segment {n} {name!r} is empty; imported empty")
        out.add(name, masks[n], color, codes=codes)
    return ImportResult(out, problems)


def _check_referenced_series(ds, series: DicomSeries, source: str) -> None:
    referenced = {str(s.SeriesInstanceUID) for s in ds.get("ReferencedSeriesSequence", []) if s.get("SeriesInstanceUID")}
    if referenced and series.series_uid not in referenced:
        raise DicomExchangeError(
            f"{source}: references series {sorted(referenced)[0]}, not the series in {series.folder} "
            f"({series.series_uid or 'which has no Series Instance UID'})"
        )


def _item(group, shared, name: str):
    if group is not None and name in group:
        return group[name][0]
    if shared is not None and name in shared:
        return shared[name][0]
    raise DicomExchangeError(f"no {name} for a frame")


def _frame_slice(group, shared, series: DicomSeries, number: int, source: str) -> int:
    geometry = series.geometry
    try:
        orientation = np.array([float(v) for v in _item(group, shared, "PlaneOrientationSequence").ImageOrientationPatient])
        position = np.array([float(v) for v in _item(group, shared, "PlanePositionSequence").ImagePositionPatient])
    except DicomExchangeError as err:
        raise DicomExchangeError(f"{source}: frame {number}: {err}") from None
    direction = geometry.direction_matrix
    if not np.allclose(orientation, np.concatenate([direction[:, 0], direction[:, 1]]), atol=1e-4):
        raise DicomExchangeError(f"{source}: frame {number} is oriented {list(orientation)}, unlike the series' images")
    index = geometry.physical_to_index(position)
    k = int(np.round(index[0]))
    off = np.abs(index - np.array([k, 0.0, 0.0])) * geometry.spacing_zyx
    if not 0 <= k < series.shape[0] or np.max(off) > _PLANE_TOL_MM:
        raise DicomExchangeError(f"{source}: frame {number} at {list(position)} mm is on none of the series' images")
    return k


def _segment_color(item):
    lab = item.get("RecommendedDisplayCIELabValue")
    if lab is None:
        return None
    try:
        import highdicom as hd

        return tuple(v / 255 for v in hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True))
    except Exception:  # noqa: BLE001 - a colour is optional; a default one is used
        return None
