"""The shared DICOM series (empty UIDs, flipped segmentation): export refused, corrected copy, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dicom_factory import dciodvfy_errors

from napari_openmedlab.cli import main
from napari_openmedlab.io import Volume, read_labels_onto, read_volume, write_volume


@pytest.fixture(scope="module")
def exported(shared_data, tmp_path_factory):
    """One export of the 31 organs (+ an overlapping mask) as RTSTRUCT and SEG, and the imports."""
    d = shared_data / "totalseg-dicom"
    tmp = tmp_path_factory.mktemp("shared")
    image = read_volume(d / "series")
    truth = read_labels_onto(d / "seg.nii.gz", image).array
    # an overlapping structure: the liver's upper half, as a separate binary mask
    overlap = (truth == 5) & (np.arange(truth.shape[0])[:, None, None] < truth.shape[0] // 2)
    write_volume(Volume(overlap.astype(np.uint8), image.geometry), tmp / "liver_top.nii.gz", labels=True)
    rc = main(
        [
            "export", "--series", str(d / "series"), "--rtstruct", str(tmp / "rt.dcm"), str(d / "seg.nii.gz"),
            "--mask", f"Liver top={tmp / 'liver_top.nii.gz'}", "--write-corrected-series", str(tmp / "fixed"),
        ]
    )  # fmt: skip
    assert rc == 0
    rc = main(["export", "--series", str(tmp / "fixed"), "--seg", str(tmp / "seg.dcm"), str(d / "seg.nii.gz"),
               "--mask", f"Liver top={tmp / 'liver_top.nii.gz'}"])  # fmt: skip
    assert rc == 0
    for kind in ("rt", "seg"):
        assert main(["import", str(tmp / f"{kind}.dcm"), "--series", str(tmp / "fixed"), "--out", str(tmp / kind)]) == 0
    names = json.loads((d / "labels.json").read_text())["labels"]
    return tmp, image, truth, overlap, names


def test_export_refused_on_empty_uids(shared_data, tmp_path, capsys):
    d = shared_data / "totalseg-dicom"
    rc = main(["export", "--series", str(d / "series"), "--rtstruct", str(tmp_path / "rt.dcm"), str(d / "seg.nii.gz")])
    err = capsys.readouterr().err
    assert rc == 1 and not (tmp_path / "rt.dcm").exists()
    assert err.startswith("openmedlab: error:") and err.count("\n") == 1
    assert "empty Series Instance UID" in err and "--write-corrected-series" in err


def test_validated_by_dciodvfy(exported):
    tmp = exported[0]
    for name in ("rt.dcm", "seg.dcm"):
        assert dciodvfy_errors(tmp / name) == [], name


def _dice(a, b) -> float:
    return 2 * (a & b).sum() / max(1, a.sum() + b.sum())


@pytest.mark.parametrize("kind", ["rt", "seg"])
def test_round_trip_dice_and_overlap(exported, kind):
    tmp, image, truth, overlap, names = exported
    classes = json.loads((tmp / kind / "classes.json").read_text())["classes"]
    by_original = {}
    for c in classes:
        by_original[c.get("description", c["name"])] = c["file"]
    voxel_cm3 = np.prod(image.geometry.spacing) / 1000
    checked = 0
    for label_id, organ in names.items():
        expected = truth == int(label_id)
        if expected.sum() * voxel_cm3 < 1.0:
            continue
        got = read_volume(tmp / kind / by_original[organ]).array > 0
        assert _dice(got, expected) >= 0.99, organ
        checked += 1
    assert checked >= 25
    liver_top = read_volume(tmp / kind / by_original["Liver top"]).array > 0
    assert np.array_equal(liver_top, overlap)  # the overlapping structure survives whole


def test_corrected_copy_is_what_the_export_references(exported):
    import pydicom

    from napari_openmedlab.dicom_rt import read_series

    tmp = exported[0]
    fixed = read_series(tmp / "fixed")
    ds = pydicom.dcmread(tmp / "rt.dcm")
    ref = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == fixed.series_uid
    assert {r.ReferencedSOPInstanceUID for r in ref.ContourImageSequence} == {s.sop_instance_uid for s in fixed.slices}


def test_contours_enclose_exactly_the_voxel_area(exported):
    """Point 2 on real organs: every contour runs along voxel edges (corners at half-integer indices,
    axis-aligned edges, on its slice), so the even-odd region is a union of whole voxel squares;
    with the voxel-exact round trip, the enclosed area is the voxel area on every slice."""
    import pydicom

    from napari_openmedlab.dicom_rt import read_series

    tmp = exported[0]
    geometry = read_series(tmp / "fixed").geometry
    ds = pydicom.dcmread(tmp / "rt.dcm")
    n = 0
    for roi in ds.ROIContourSequence:
        for contour in roi.get("ContourSequence", []):
            index = geometry.physical_to_index(np.asarray(contour.ContourData, float).reshape(-1, 3))
            assert np.allclose(index[:, 0], np.round(index[:, 0]), atol=1e-3)
            assert np.ptp(index[:, 0]) < 1e-3
            assert np.allclose(index[:, 1:] % 1, 0.5, atol=1e-3)
            steps = np.abs(np.diff(np.vstack([index[:, 1:], index[:1, 1:]]), axis=0)) > 1e-3
            assert np.all(steps.sum(axis=1) == 1)  # axis-aligned edges
            n += 1
    assert n > 500
