"""Write a :class:`StructureSet` as a DICOM RT Structure Set (our own pydicom writer).

One ROI per structure (overlaps kept: each ROI has its own contours), named by the curated table
(TG-263, the preset's name kept as ROI Description), coloured as the structure. Contours follow the
voxel edges (see :mod:`.contours`): each lies exactly in its image's plane (points computed through
the series' own geometry, so an oblique series is exported in its planes) and references that image
by its SOP Instance UID. Modules filled: Patient, General Study, RT Series, General Equipment, Frame
of Reference, Structure Set, ROI Contour, RT ROI Observations, SOP Common.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.atomic import atomic_path
from .codes import code_for
from .contours import mask_to_loops
from .errors import DicomExchangeError
from .series import RTSTRUCT_SOP_CLASS, DicomSeries

MANUFACTURER = "napari-openmedlab"
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as RTSTRUCTs reference studies
_CONTOUR_DATA = 0x30060050
_PATIENT_ATTRS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
_STUDY_ATTRS = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription")


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters, exact to 0.1 micrometre."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _raw_ds(values) -> object:
    """Contour Data as one pre-formatted DS string.

    pydicom would otherwise build, validate and re-format tens of thousands of DS objects one by
    one (most of an export's time); its writer writes a DS element whose value is a plain string as
    it is. Every number is formatted by :func:`_ds` (at most 16 characters, valid DS).
    """
    from pydicom.dataelem import DataElement

    elem = DataElement(_CONTOUR_DATA, "DS", None)
    elem._value = "\\".join(_ds(v) for v in values)  # bypasses the per-number conversion on purpose
    return elem


def check_structures_fit(structures, series: DicomSeries) -> None:
    if structures.shape is None or tuple(structures.shape) != tuple(series.shape):
        raise DicomExchangeError(
            f"the structures are on a grid of shape {structures.shape}, the series is {series.shape}; "
            "resample them onto the series first"
        )
    if not structures.geometry.same_grid(series.geometry, tol=1e-3):
        raise DicomExchangeError("the structures' grid is not the series' grid (origin, spacing or direction differ)")


def _code_item(code):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def build_rtstruct(
    structures, series: DicomSeries, *, label: str = "OpenMEDLab", series_number: int = 901, encoded: bool = False
):
    """The RTSTRUCT dataset for ``structures`` (on ``series``' grid); nothing is written.

    ``encoded``: Contour Data as pre-formatted strings, only for writing (see :func:`_raw_ds`);
    by default they are ordinary DS lists, as a dataset read from a file has them.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    series.check_referencable()
    check_structures_fit(structures, series)
    now = _dt.datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: ROI names may hold any character
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    header = series.header
    for attr in _PATIENT_ATTRS + _STUDY_ATTRS:  # Patient and General Study: copied from the images
        setattr(ds, attr, header.get(attr, "") or "")
    ds.StudyInstanceUID = series.study_uid
    ds.Modality = "RTSTRUCT"  # RT Series
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Structures from napari-openmedlab"
    ds.OperatorsName = ""
    ds.Manufacturer = MANUFACTURER  # General Equipment
    ds.ManufacturerModelName = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = series.frame_of_reference_uid  # Frame of Reference
    ds.PositionReferenceIndicator = header.get("PositionReferenceIndicator", "") or ""
    ds.StructureSetLabel = label[:16]  # Structure Set
    ds.StructureSetName = label[:64]
    ds.StructureSetDate = ds.InstanceCreationDate
    ds.StructureSetTime = ds.InstanceCreationTime
    ds.InstanceNumber = 1

    def image_ref(k: int):
        item = Dataset()
        item.ReferencedSOPClassUID = series.slices[k].sop_class_uid
        item.ReferencedSOPInstanceUID = series.slices[k].sop_instance_uid
        return item

    rt_series = Dataset()
    rt_series.SeriesInstanceUID = series.series_uid
    rt_series.ContourImageSequence = Sequence([image_ref(k) for k in range(len(series.slices))])
    rt_study = Dataset()
    rt_study.ReferencedSOPClassUID = _STUDY_SOP_CLASS
    rt_study.ReferencedSOPInstanceUID = series.study_uid
    rt_study.RTReferencedSeriesSequence = Sequence([rt_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    frame.RTReferencedStudySequence = Sequence([rt_study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])

    rois, contours, observations = [], [], []
    for number, s in enumerate(structures, start=1):
        code = code_for(s.codes.get("original_name", s.name) if s.codes else s.name)
        roi_name = s.codes.get("tg263") if s.codes and s.codes.get("tg263") else code.roi_name
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
        roi.ROIName = roi_name[:64]
        if roi_name != s.name:
            roi.ROIDescription = s.name[:64]  # the preset's (or user's) own name
        roi.ROIGenerationAlgorithm = "SEMIAUTOMATIC"
        rois.append(roi)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = number
        rgb = s.color.lstrip("#")
        roi_contour.ROIDisplayColor = [int(rgb[i : i + 2], 16) for i in (0, 2, 4)]
        items = _contour_items(s.mask, series, image_ref, encoded)
        if items:
            roi_contour.ContourSequence = Sequence(items)
        contours.append(roi_contour)
        obs = Dataset()
        obs.ObservationNumber = number
        obs.ReferencedROINumber = number
        obs.RTROIInterpretedType = code.interpreted_type
        obs.ROIInterpreter = ""
        ident = _code_item(code.property_type)
        obs.RTROIIdentificationCodeSequence = Sequence([ident])
        observations.append(obs)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


def _contour_items(sparse, series: DicomSeries, image_ref, encoded: bool) -> list:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if sparse.empty:
        return []
    z0, y0, x0 = sparse.bbox[:3]
    patch = sparse.patch()
    geometry = series.geometry
    items = []
    for dz in range(patch.shape[0]):
        k = z0 + dz
        for loop in mask_to_loops(patch[dz]):
            index = np.empty((len(loop), 3))
            index[:, 0] = k
            index[:, 1] = loop[:, 0] + y0
            index[:, 2] = loop[:, 1] + x0
            points = geometry.index_to_physical(index)  # (N, 3) LPS mm, exactly in slice k's plane
            item = Dataset()
            item.ContourImageSequence = Sequence([image_ref(k)])
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(points)
            if encoded:
                item[_CONTOUR_DATA] = _raw_ds(points.ravel())
            else:
                item.ContourData = [_ds(v) for v in points.ravel()]
            items.append(item)
    return items


def write_rtstruct(structures, series: DicomSeries, path: str | os.PathLike, **kwargs) -> Path:
    """Write ``structures`` as an RTSTRUCT referencing ``series``, atomically; returns the path."""
    ds = build_rtstruct(structures, series, encoded=True, **kwargs)
    path = Path(path)
    with atomic_path(path, suffix=".dcm") as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
