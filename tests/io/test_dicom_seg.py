"""DICOM SEG export (highdicom) and import: BINARY with overlaps, LABELMAP, codes, frames."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_factory import dciodvfy_errors

from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.dicom_rt import DicomExchangeError, read_series
from napari_openmedlab.dicom_rt.rtstruct_write import build_rtstruct
from napari_openmedlab.dicom_rt.seg import read_seg, write_seg


def _structures(series):
    z, y, x = np.indices(series.shape)
    s = StructureSet(series.geometry, series.shape)
    s.add("Parotid_R", ((y - 10) ** 2 + (x - 12) ** 2 < 40) & (z >= 1) & (z <= 3), "#e6194b")
    s.add("GTVp", ((y - 10) ** 2 + (x - 15) ** 2 < 9) & (z == 2), "#3cb44b")  # inside/overlapping
    one = np.zeros(series.shape, bool)
    one[0, 0, 0] = True
    s.add("my own name", one, "#4363d8")
    return s


@pytest.mark.parametrize(
    "orientation",
    [{}, {"row_dir": (0.8660254, 0.5, 0.0), "col_dir": (-0.5, 0.8660254, 0.0)}, {"col_dir": (0.0, 0.0, -1.0)}],
)
def test_binary_seg_round_trip_with_overlaps(make_series, tmp_path, dciodvfy_clean, orientation):
    series = read_series(make_series(reverse_instances=True, shuffle_names=True, rows=20, cols=28, **orientation))
    structures = _structures(series)
    path, lost = write_seg(structures, series, tmp_path / "seg.dcm")
    assert lost == {}
    dciodvfy_clean(path)
    ds = pydicom.dcmread(path)
    assert ds.SegmentationType == "BINARY"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian  # uncompressed
    assert int(ds.NumberOfFrames) == series.shape[0] * 3  # empty frames kept
    # frames aligned with the source images: each frame references the image at its position
    uid_of = {s.sop_instance_uid: s for s in series.slices}
    for group in ds.PerFrameFunctionalGroupsSequence:
        source = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        assert np.allclose(position, uid_of[source].position, atol=1e-3)
    parotid = ds.SegmentSequence[0]
    prop = parotid.SegmentedPropertyTypeCodeSequence[0]
    assert (prop.CodeValue, prop.CodingSchemeDesignator) == ("45289007", "SCT")
    assert prop.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "24028007"  # Right
    assert ds.SegmentSequence[1].SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    back = read_seg(path, series).structures
    assert back.names() == structures.names()
    for s in structures:
        assert np.array_equal(back.mask(s.name), structures.mask(s.name)), s.name
    assert back.color("Parotid_R") == "#e6194b"


def test_labelmap_seg(make_series, tmp_path, dciodvfy_clean):
    series = read_series(make_series())
    structures = _structures(series)
    path, lost = write_seg(structures, series, tmp_path / "seg.dcm", labelmap=True)
    dciodvfy_clean(path)
    assert lost["Parotid_R"] == (structures.mask("Parotid_R") & structures.mask("GTVp")).sum()
    back = read_seg(path, series).structures
    assert np.array_equal(back.mask("GTVp"), structures.mask("GTVp"))  # the smaller one wins
    assert np.array_equal(back.mask("Parotid_R"), structures.mask("Parotid_R") & ~structures.mask("GTVp"))


def test_omitted_empty_frames_still_land_on_their_slices(make_series, tmp_path):
    series = read_series(make_series(reverse_instances=True))
    structures = _structures(series)
    path, _ = write_seg(structures, series, tmp_path / "seg.dcm", omit_empty_frames=True)
    assert int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames) < series.shape[0] * 3
    back = read_seg(path, series).structures
    for s in structures:
        assert np.array_equal(back.mask(s.name), structures.mask(s.name)), s.name


def test_seg_of_another_series_refused(make_series, tmp_path):
    a, b = read_series(make_series()), read_series(make_series())
    path, _ = write_seg(_structures(a), a, tmp_path / "seg.dcm")
    with pytest.raises(DicomExchangeError, match="references series"):
        read_seg(path, b)


def test_validator_check_is_not_vacuous(make_series, tmp_path):
    series = read_series(make_series())
    ds = build_rtstruct(_structures(series), series)
    del ds.StructureSetLabel
    ds.save_as(tmp_path / "broken.dcm", enforce_file_format=True)
    assert any("StructureSetLabel" in line for line in dciodvfy_errors(tmp_path / "broken.dcm"))
