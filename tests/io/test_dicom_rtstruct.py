"""RTSTRUCT export and import on generated series: order, non-square, oblique, holes, overlaps."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.dicom_rt import DicomExchangeError, import_structures, read_series
from napari_openmedlab.dicom_rt.rtstruct_read import read_rtstruct
from napari_openmedlab.dicom_rt.rtstruct_write import build_rtstruct, write_rtstruct


def _structures(series) -> StructureSet:
    shape = series.shape
    z, y, x = np.indices(shape)
    ring = ((y - 12) ** 2 + (x - 14) ** 2 < 64) & ((y - 12) ** 2 + (x - 14) ** 2 >= 9) & (z >= 1) & (z <= 4)
    islands = ((y - 4) ** 2 + (x - 4) ** 2 < 5) | ((y - 18) ** 2 + (x - 26) ** 2 < 7)
    islands &= (z == 2) | (z == 3)
    gtv = ((y - 12) ** 2 + (x - 18) ** 2 < 12) & (z >= 2) & (z <= 3)  # overlaps the ring
    one = np.zeros(shape, bool)
    one[shape[0] - 1, 0, shape[2] - 1] = True  # a one-voxel structure in a corner
    s = StructureSet(series.geometry, shape)
    s.add("Parotid_L", ring, "#ff0000")
    s.add("islands", islands, "#00ff00")
    s.add("GTVp", gtv, "#0000ff")
    s.add("one voxel", one, "#ffff00")
    s.add("empty", np.zeros(shape, bool))
    return s


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reverse_instances": True, "shuffle_names": True},
        {"rows": 24, "cols": 32, "spacing": (0.9, 1.4, 3.0)},
        {"row_dir": (0.8660254, 0.5, 0.0), "col_dir": (-0.5, 0.8660254, 0.0), "origin": (5.0, -3.0, 11.0)},
        {"row_dir": (1.0, 0.0, 0.0), "col_dir": (0.0, 0.0, -1.0)},  # coronal
    ],
)
def test_round_trip_is_exact_and_valid(make_series, tmp_path, dciodvfy_clean, kwargs):
    series = read_series(make_series(**kwargs))
    structures = _structures(series)
    path = write_rtstruct(structures, series, tmp_path / "rt.dcm")
    dciodvfy_clean(path)
    result = import_structures(path, series)
    back = result.structures
    assert back.names() == ["Parotid_L", "islands", "GTVp", "one voxel", "empty"]
    for s in structures:
        assert np.array_equal(back.mask(s.name), structures.mask(s.name)), s.name
    # overlaps preserved: the GTV voxels inside the parotid ring are in both
    assert (back.mask("GTVp") & back.mask("Parotid_L")).sum() == (structures.mask("GTVp") & structures.mask("Parotid_L")).sum() > 0
    assert back.color("Parotid_L") == "#ff0000"
    assert any("'empty'" in p and "no contours" in p for p in result.problems)


def test_every_point_in_its_image_plane_and_every_image_referenced(make_series):
    series = read_series(make_series(row_dir=(0.8660254, 0.5, 0.0), col_dir=(-0.5, 0.8660254, 0.0), reverse_instances=True))
    ds = build_rtstruct(_structures(series), series)
    uids = {s.sop_instance_uid: s for s in series.slices}
    referenced = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert {r.ReferencedSOPInstanceUID for r in referenced.ContourImageSequence} == set(uids)
    normal = series.normal
    n_contours = 0
    for roi in ds.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            image = uids[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            assert np.allclose((points - image.position) @ normal, 0, atol=1e-3)
            n_contours += 1
    assert n_contours > 0
    assert ds.PatientID == "PHANTOM1" and ds.StudyInstanceUID == series.study_uid
    names = [r.ROIName for r in ds.StructureSetROISequence]
    assert names[0] == "Parotid_L"


def test_tg263_names_and_original_kept(make_series, tmp_path):
    series = read_series(make_series())
    s = StructureSet(series.geometry, series.shape)
    mask = np.zeros(series.shape, bool)
    mask[2, 5:9, 5:9] = True
    for name in ("Chiasm", "Submandibular_R", "Cochlea_L", "Mandible_L"):
        s.add(name, mask)
    ds = build_rtstruct(s, series)
    rois = {r.ROIName: r.get("ROIDescription") for r in ds.StructureSetROISequence}
    assert rois == {"OpticChiasm": "Chiasm", "Glnd_Submand_R": "Submandibular_R", "Cochlea_L": None, "Bone_Mandible_L": "Mandible_L"}
    codes = [o.RTROIIdentificationCodeSequence[0].CodeValue for o in ds.RTROIObservationsSequence]
    assert codes[0] == "244453006"  # SNOMED CT optic chiasm


def test_refuses_other_series_by_name(make_series, tmp_path):
    a = read_series(make_series())
    b = read_series(make_series())
    path = write_rtstruct(_structures(a), a, tmp_path / "rt.dcm")
    with pytest.raises(DicomExchangeError, match="references series .*not the series"):
        read_rtstruct(path, b)


def _wild(series, tmp_path):
    """An RTSTRUCT as other tools write them: spaces, empty ROIs, off-plane points, foreign frames."""
    s = StructureSet(series.geometry, series.shape)
    mask = np.zeros(series.shape, bool)
    mask[2, 4:12, 6:16] = True
    mask[2, 6:9, 9:12] = False  # a hole
    s.add("Left Parotid (edited)", mask)
    s.add("between slices", mask)
    s.add("foreign frame", mask)
    s.add("missing image", mask)
    s.add("hair off plane", mask)
    ds = build_rtstruct(s, series)
    normal = series.normal
    dz = series.geometry.spacing[2]

    def shift(roi_index, mm):
        for contour in ds.ROIContourSequence[roi_index].ContourSequence:
            pts = np.asarray(contour.ContourData, float).reshape(-1, 3) + mm * normal
            contour.ContourData = [f"{v:.4f}" for v in pts.ravel()]

    shift(1, 0.5 * dz)
    ds.StructureSetROISequence[2].ReferencedFrameOfReferenceUID = "1.2.3.4.5.6"
    shift(3, 20 * dz)  # beyond the last slice, on an image that is not in the folder
    for contour in ds.ROIContourSequence[3].ContourSequence:
        contour.ContourImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.999"
    shift(4, 0.01)
    path = tmp_path / "wild.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, mask


def test_wild_rtstruct_imports_what_is_correct(make_series, tmp_path):
    series = read_series(make_series(slices=5))
    path, mask = _wild(series, tmp_path)
    result = read_rtstruct(path, series)
    names = result.structures.names()
    assert names == ["Left Parotid (edited)", "hair off plane"]
    assert np.array_equal(result.structures.mask("Left Parotid (edited)"), mask)  # the hole by even-odd
    assert np.array_equal(result.structures.mask("hair off plane"), mask)
    text = "\n".join(result.problems)
    assert "'between slices'" in text and "between the series' slices" in text
    assert "'foreign frame'" in text and "1.2.3.4.5.6" in text
    assert "'missing image'" in text and "1.2.3.999" in text
    assert all("\n" not in p for p in result.problems)


@pytest.mark.parametrize("slices", [1, 2])
def test_series_of_one_or_two_slices(make_series, tmp_path, dciodvfy_clean, slices):
    series = read_series(make_series(slices=slices))
    s = StructureSet(series.geometry, series.shape)
    mask = np.zeros(series.shape, bool)
    mask[-1, 3:7, 4:9] = True
    s.add("Lens_R", mask)
    path = write_rtstruct(s, series, tmp_path / "rt.dcm")
    dciodvfy_clean(path)
    assert np.array_equal(read_rtstruct(path, series).structures.mask("Lens_R"), mask)


def test_image_not_from_a_dicom_series_is_refused(make_series, tmp_path):
    series = read_series(make_series())
    other = StructureSet(series.geometry.__class__((1, 1, 1)), (2, 3, 4))
    other.add("x", np.ones((2, 3, 4), bool))
    with pytest.raises(DicomExchangeError, match="grid"):
        build_rtstruct(other, series)


def test_written_file_is_an_rtstruct(make_series, tmp_path):
    series = read_series(make_series())
    path = write_rtstruct(_structures(series), series, tmp_path / "rt.dcm")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "RTSTRUCT" and ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert len(ds.StructureSetROISequence) == len(ds.ROIContourSequence) == len(ds.RTROIObservationsSequence) == 5
