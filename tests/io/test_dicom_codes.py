"""The curated code table: every preset class coded, every code resolvable, laterality as modifier."""

from __future__ import annotations

import pytest
from pydicom.sr.codedict import codes

from napari_openmedlab.annotation import load_preset
from napari_openmedlab.dicom_rt.codes import code_for, table_records


@pytest.mark.parametrize("preset", ["SegRap2023", "TotalSegmentator"])
def test_every_class_of_the_presets_has_a_record(preset):
    recorded = {r["name"] for r in table_records() if r["preset"] == preset}
    assert {c.name for c in load_preset(preset)} == recorded


def test_every_record_resolves_to_a_dicom_code():
    for rec in table_records():
        code = code_for(rec["name"])
        assert code.property_type.scheme == "SCT" and code.property_type.value.isdigit(), rec
        if "sct_keyword" in rec:  # looked up in DICOM's own tables, never typed in
            assert getattr(codes.SCT, rec["sct_keyword"]).value == code.property_type.value
        else:
            assert "TG-263" in rec["source"]
        side = rec["name"].lower()
        if any(w in code.property_type.meaning.lower() for w in ("left", "right")):
            assert code.laterality is None  # laterality pre-coordinated in the code itself
            continue
        if side.endswith(("_l", "_left")) or "_left_" in side:
            assert code.laterality is not None and code.laterality.value == "7771000", rec
        if side.endswith(("_r", "_right")) or "_right_" in side:
            assert code.laterality is not None and code.laterality.value == "24028007", rec


def test_tg263_names_of_the_segrap_preset():
    expected = {
        "Parotid_L": "Parotid_L",
        "Submandibular_R": "Glnd_Submand_R",
        "Chiasm": "OpticChiasm",
        "Cochlea_L": "Cochlea_L",
        "BrainStem": "Brainstem",
        "OpticNerve_R": "OpticNrv_R",
        "Thyroid": "Glnd_Thyroid",
        "PharynxConst": "Musc_Constrict",
    }
    assert {name: code_for(name).roi_name for name in expected} == expected
    assert code_for("GTVp").interpreted_type == "GTV"
    assert code_for("GTVp").category.meaning == "Morphologically Abnormal Structure"


def test_unknown_names_get_the_documented_fallback():
    code = code_for("my structure")
    assert code.roi_name == "my structure" and code.property_type.meaning == "Tissue" and code.fallback
