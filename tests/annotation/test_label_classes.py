import json

import pytest

from napari_openmedlab.annotation.label_classes import (
    LabelClass,
    LabelClassError,
    classes_from_json,
    list_presets,
    load_preset,
    preset_info,
    read_classes,
    write_classes,
)


def test_presets_are_shipped():
    assert {"SegRap2023", "TotalSegmentator"} <= set(list_presets())


def test_segrap_has_45_oars_and_two_gtvs_with_challenge_names():
    classes = load_preset("SegRap2023")
    names = [c.name for c in classes]
    assert len(classes) == 47 and [c.id for c in classes] == list(range(1, 48))
    assert names[-2:] == ["GTVp", "GTVnd"]
    for name in (
        "Brain",
        "BrainStem",
        "Chiasm",
        "ETbone_L",
        "IAC_R",
        "Larynx_Supraglot",
        "PharynxConst",
        "TMjoint_L",
        "VestibulSemi_R",
        "Lens_L",
        "OralCavity",
        "SpinalCord",
    ):
        assert name in names
    assert "45 organs at risk" in preset_info("segrap2023")["notes"]


def test_totalsegmentator_matches_the_sample_labels(shared_data):
    sample = json.loads((shared_data / "totalseg-ct" / "labels.json").read_text())["labels"]
    by_id = {c.id: c.name for c in load_preset("TotalSegmentator")}
    assert len(by_id) == 117
    for key, name in sample.items():
        assert by_id[int(key)] == name


def test_round_trip_and_accepted_shapes(tmp_path):
    classes = [LabelClass(2, "liver", "#aa0000"), LabelClass(1, "spleen", "#00ff00")]
    path = write_classes(classes, tmp_path / "mine.json", name="mine")
    back = read_classes(path)
    assert [c.id for c in back] == [1, 2] and back[1].color == "#aa0000"
    assert classes_from_json({"labels": {"5": "liver"}})[0].name == "liver"
    assert classes_from_json({"7": "kidney"})[0].color.startswith("#")
    assert classes_from_json([{"id": 1, "name": "a", "color": [1.0, 0.0, 0.0]}])[0].color == "#ff0000"


def test_bad_tables(tmp_path):
    with pytest.raises(LabelClassError, match="twice"):
        classes_from_json([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    with pytest.raises(LabelClassError, match="background"):
        classes_from_json({"0": "bg"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelClassError, match="could not read"):
        read_classes(bad)
    with pytest.raises(LabelClassError, match="no preset"):
        load_preset("nope")
