"""CLI clicks: negative coordinates, millimetres as napari shows them, clear refusals, and the
README's example prompts landing in the organs the README names."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest

from napari_openmedlab._sample_data import SAMPLE_CT
from napari_openmedlab.cli import attach_negative_values, main
from napari_openmedlab.cli.segment import parse_box, parse_point
from napari_openmedlab.io import read_volume

from .conftest import REPO

SAMPLE_SEG = SAMPLE_CT.parent / "seg.nii.gz"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("form", [["--point", "-5,10,10"], ["--point=-5,10,10"]], ids=["space", "equals"])
def test_a_negative_coordinate_parses_and_the_refusal_prints_plain_numbers(form, tmp_path, capsys):
    out = tmp_path / "m.nii.gz"
    code = main(["segment", str(SAMPLE_CT), "--model", "seeded-region", *form, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    assert "(-5, 10, 10)" in err and "outside the volume" in err
    assert "np." not in err and "float64" not in err
    assert err.count("\n") == 1  # no progress line before it: refused before the model loads


def test_negative_values_attach_only_to_options():
    assert attach_negative_values(["--box", "-1,2,3,4,5", "--point", "5,6,7,-"]) == [
        "--box=-1,2,3,4,5", "--point", "5,6,7,-",
    ]
    assert attach_negative_values(["--point=1,2,3", "-5,1,1"]) == ["--point=1,2,3", "-5,1,1"]
    assert attach_negative_values(["-v", "--component", "-1"]) == ["-v", "--component", "-1"]
    assert parse_point("-5,10.5,1e1,-") == ((-5.0, 10.5, 10.0), False)
    assert parse_box("-1,2,3,4,5").index == -1


def test_negative_clicks_only_are_refused(tmp_path, capsys):
    out = tmp_path / "m.nii.gz"
    code = main(["segment", str(SAMPLE_CT), "--model", "seeded-region", "--point", "15,37,77,-",
                 "--point-mm", "139.3,-158.3,-98,-", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and not out.exists()
    assert "positive click" in err and err.startswith("openmedlab: error: ")


def test_point_mm_is_napari_world_and_gives_the_same_mask_as_the_voxel(tmp_path):
    volume = read_volume(SAMPLE_CT)
    voxel = (15, 49, 92)
    world = volume.geometry.index_to_world(voxel)  # what napari's status bar shows there
    assert np.allclose(volume.geometry.world_to_index(world), voxel)
    by_voxel, by_mm = tmp_path / "voxel.nii.gz", tmp_path / "mm.nii.gz"
    assert main(["segment", str(SAMPLE_CT), "--model", "seeded-region", "--point", "15,49,92",
                 "--out", str(by_voxel)]) == 0
    mm = ",".join(f"{v:.2f}" for v in world)
    assert main(["segment", str(SAMPLE_CT), "--model", "seeded-region", "--point-mm", mm,
                 "--out", str(by_mm)]) == 0
    a, b = read_volume(by_voxel).array, read_volume(by_mm).array
    assert a.sum() > 0 and np.array_equal(a, b)


def test_point_mm_outside_the_image_names_its_extent_in_mm(tmp_path, capsys):
    code = main(["segment", str(SAMPLE_CT), "--model", "seeded-region", "--point-mm", "0,0,0",
                 "--out", str(tmp_path / "m.nii.gz")])
    err = capsys.readouterr().err
    assert code == 1 and "(0, 0, 0) mm lies outside the image" in err and "spans (z, y, x)" in err


def _readme_segment_commands():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [shlex.split(line.split("#")[0]) for line in text.splitlines()
                if line.startswith("openmedlab segment sample_data/ct.nii.gz")]
    assert len(commands) >= 3, "the README's segment examples on the sample CT are gone"
    return commands


def test_readme_example_prompts_land_in_the_organs_they_name():
    seg = read_volume(SAMPLE_SEG)
    names = json.loads((SAMPLE_SEG.parent / "labels.json").read_text())["labels"]
    ids = {name: int(i) for i, name in names.items()}
    checked = 0
    for argv in _readme_segment_commands():
        argv = attach_negative_values(argv[1:])
        organ = re.sub(r"\.nii(\.gz)?$", "", argv[argv.index("--out") + 1])
        assert organ in ids, f"{organ!r}: the output file should be named after a sample organ"
        inside = seg.array == ids[organ]
        pairs = []
        for i, token in enumerate(argv):
            option, _, value = token.partition("=")
            if option in ("--point", "--point-mm", "--box") and not value:
                value = argv[i + 1]
            if option in ("--point", "--point-mm", "--box"):
                pairs.append((option, value))
        for option, value in pairs:
            if option == "--box":
                box = parse_box(value)
                window = inside[box.index, int(box.r0): int(box.r1) + 1, int(box.c0): int(box.c1) + 1]
                # the box holds the whole organ on that slice and the organ fills a good part of it
                assert window.sum() == inside[box.index].sum() > 0, value
                assert window.mean() > 0.3, value
            else:
                zyx, positive = parse_point(value)
                if option == "--point-mm":
                    zyx = seg.geometry.world_to_index(zyx)
                voxel = tuple(int(round(v)) for v in zyx)
                label = int(seg.array[voxel])
                if positive:
                    assert label == ids[organ], f"{value} is in {names.get(str(label), 'background')}"
                else:
                    assert label != ids[organ] and label != 0, f"{value}: a negative click next door"
            checked += 1
    assert checked >= 4
