"""``openmedlab export`` / ``import`` on generated series: outputs, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_openmedlab.cli import main
from napari_openmedlab.dicom_rt import read_series
from napari_openmedlab.io import Volume, read_volume, write_volume


@pytest.fixture
def case(make_series, tmp_path):
    folder = make_series(reverse_instances=True, rows=20, cols=24)
    image = read_volume(folder)
    labels = np.zeros(image.shape, np.uint8)
    labels[1:4, 3:10, 4:12] = 1
    labels[2:5, 12:18, 14:20] = 2
    # the label map on another grid (flipped in y, as the shared data's): resampled in physical space
    flipped = image.geometry.__class__(
        image.geometry.spacing,
        tuple(image.geometry.index_to_physical([0, image.shape[1] - 1, 0])),
        (1, 0, 0, 0, -1, 0, 0, 0, 1),
    )
    write_volume(Volume(labels[:, ::-1].copy(), flipped), tmp_path / "seg.nii.gz", labels=True)
    (tmp_path / "classes.json").write_text(json.dumps({"1": "Parotid_L", "2": "my organ"}))
    gtv = np.zeros(image.shape, np.uint8)
    gtv[2, 5:8, 6:9] = 1
    write_volume(Volume(gtv, image.geometry), tmp_path / "gtv.nii.gz", labels=True)
    return folder, tmp_path, labels, gtv


def test_export_import_round_trip(case, capsys):
    folder, tmp, labels, gtv = case
    args = ["--series", str(folder), str(tmp / "seg.nii.gz"), "--classes", str(tmp / "classes.json")]
    assert main(["export", "--rtstruct", str(tmp / "rs.dcm"), *args, "--mask", f"GTV 1={tmp / 'gtv.nii.gz'}"]) == 0
    assert "RTSTRUCT with 3 ROIs" in capsys.readouterr().out
    assert main(["import", str(tmp / "rs.dcm"), "--series", str(folder), "--out", str(tmp / "out")]) == 0
    table = json.loads((tmp / "out" / "classes.json").read_text())["classes"]
    files = {c["name"]: c["file"] for c in table}
    assert files == {"Parotid_L": "Parotid_L.nii.gz", "my organ": "my_organ.nii.gz", "GTV 1": "GTV_1.nii.gz"}
    assert np.array_equal(read_volume(tmp / "out" / "Parotid_L.nii.gz").array, (labels == 1).astype(np.uint8))
    assert np.array_equal(read_volume(tmp / "out" / "GTV_1.nii.gz").array, gtv)
    out = read_volume(tmp / "out" / "my_organ.nii.gz")
    assert out.geometry.same_grid(read_series(folder).geometry)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--series", "{folder}", "--rtstruct", "{tmp}/rs.dcm", "--mask", "nofile"], "NAME=FILE"),
        (["export", "--series", "{folder}", "--rtstruct", "{tmp}/missing/rs.dcm", "{tmp}/seg.nii.gz"], "does not exist"),
        (["export", "--series", "{tmp}/seg.nii.gz", "--seg", "{tmp}/s.dcm", "{tmp}/seg.nii.gz"], "not a folder"),
        (["export", "--series", "{folder}", "--rtstruct", "{tmp}/rs.dcm"], "nothing to export"),
        (["import", "{tmp}/classes.json", "--series", "{folder}", "--out", "{tmp}/o"], "neither an RTSTRUCT nor"),
        (["import", "{tmp}/nothere.dcm", "--series", "{folder}", "--out", "{tmp}/o"], "No such file"),
    ],
)
def test_bad_input_is_one_line(case, capsys, argv, message):
    folder, tmp, _, _ = case
    argv = [a.format(folder=folder, tmp=tmp) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("openmedlab: error:") and err.count("\n") == 1 and message in err, err
    assert not (tmp / "rs.dcm").exists() and not (tmp / "o").exists()
