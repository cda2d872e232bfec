"""``openmedlab contour ...`` end to end on small files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_openmedlab.annotation.contouring import Margin, margin, union
from napari_openmedlab.cli import main
from napari_openmedlab.io import Geometry, Volume, read_volume, write_volume

GEOMETRY = Geometry((0.9, 1.2, 2.5), (5.0, -3.0, 10.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))


def write_mask(path, mask, geometry=GEOMETRY):
    write_volume(Volume(mask.astype(np.uint8), geometry), path, labels=True)
    return str(path)


@pytest.fixture
def masks(tmp_path):
    a = np.zeros((10, 24, 24), bool)
    a[4:6, 8:14, 9:15] = True
    b = np.zeros_like(a)
    b[3:7, 12:18, 12:16] = True
    return a, b, write_mask(tmp_path / "a.nii.gz", a), write_mask(tmp_path / "b.nii.gz", b)


@pytest.mark.parametrize("args,spec", [
    (["--mm", "4"], Margin.isotropic(4)),
    (["--mm-per-axis", "3,4,5"], Margin.per_axis(3, 4, 5)),
    (["--mm-directions", "R2,L4,A0,P3,S5,I2.5"], Margin.sides(2, 4, 0, 3, 5, 2.5)),
    (["--mm-directions", "2,4,0,3,5,2.5"], Margin.sides(2, 4, 0, 3, 5, 2.5)),
    (["--mm", "2", "--shrink"], Margin.isotropic(-2)),
    (["--mm", "3", "--mm-directions", "A6,I0"], Margin.sides(3, 3, 6, 3, 3, 0)),
])
def test_margin_writes_the_exact_margin_on_the_input_grid(masks, tmp_path, args, spec, capsys):
    a, _, path_a, _ = masks
    out = tmp_path / "out.nii.gz"
    assert main(["contour", "margin", path_a, *args, "--out", str(out)]) == 0
    result = read_volume(out)
    assert result.geometry.same_grid(GEOMETRY)
    np.testing.assert_array_equal(result.array.astype(bool), margin(a, GEOMETRY, spec).dense())
    assert "voxels" in capsys.readouterr().out


def test_booleans_resample_an_input_on_another_grid(masks, tmp_path, capsys):
    a, b, path_a, _ = masks
    # b stored flipped in x on its own grid: the same physical voxels
    flipped = Geometry(GEOMETRY.spacing, (5.0 - 0.9 * 23, -3.0, 10.0), (1, 0, 0, 0, -1, 0, 0, 0, 1))
    path_b = write_mask(tmp_path / "b_flipped.nii.gz", b[:, :, ::-1], flipped)
    out = tmp_path / "u.nii.gz"
    assert main(["contour", "union", path_a, path_b, "--out", str(out)]) == 0
    assert "resampled" in capsys.readouterr().err
    np.testing.assert_array_equal(read_volume(out).array.astype(bool), union(a, b).dense())
    far = Geometry(GEOMETRY.spacing, (500.0, 500.0, 500.0), GEOMETRY.direction)
    path_far = write_mask(tmp_path / "far.nii.gz", b, far)
    assert main(["contour", "subtract", path_a, path_far, "--out", str(out)]) == 1
    assert "outside the grid of the first input" in capsys.readouterr().err


def test_interpolate_smooth_fill_largest_islands_ring(masks, tmp_path):
    a, b, path_a, _ = masks
    drawn = np.zeros_like(a)
    drawn[2, 8:14, 9:15] = drawn[6, 10:16, 9:15] = True
    path = write_mask(tmp_path / "drawn.nii.gz", drawn)
    out = str(tmp_path / "o.nii.gz")
    assert main(["contour", "interpolate", path, "--axis", "z", "--out", out]) == 0
    got = read_volume(out).array.astype(bool)
    assert got[3:6].any(axis=(1, 2)).all() and np.array_equal(got[[2, 6]], drawn[[2, 6]])
    for op, extra in (("smooth", ["--mm", "2"]), ("fill-holes", ["--2d"]), ("largest", []),
                      ("remove-islands", ["--min-cm3", "0.01"]), ("ring", ["--inner", "2", "--outer", "5"])):
        assert main(["contour", op, path_a, *extra, "--out", out]) == 0, op
        assert read_volume(out).array.any()


def test_stats_prints_a_table_and_the_pair_metrics(masks, tmp_path, capsys):
    a, b, path_a, path_b = masks
    image = np.full(a.shape, 40, np.int16)
    image[a] = 100
    write_volume(Volume(image, GEOMETRY), tmp_path / "ct.nii.gz")
    report = tmp_path / "stats.json"
    assert main(["contour", "stats", path_a, path_b, "--image", str(tmp_path / "ct.nii.gz"),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "a.nii.gz" in out and "Dice" in out and "HD95" in out
    data = json.loads(report.read_text())
    first = data["structures"][0]
    assert first["voxels"] == int(a.sum()) and first["mean"] == 100.0
    assert first["volume_cm3"] == pytest.approx(a.sum() * 0.9 * 1.2 * 2.5 / 1000)
    assert data["pairs"][0]["dice"] == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_bad_input_is_one_clear_line(masks, tmp_path, capsys):
    _, _, path_a, _ = masks
    ct = tmp_path / "ct.nii.gz"
    write_volume(Volume(np.full((10, 24, 24), -1000, np.int16), GEOMETRY), ct)
    out = str(tmp_path / "o.nii.gz")
    cases = [
        (["margin", str(ct), "--mm", "5", "--out", out], "not a mask"),
        (["margin", path_a, "--mm", "5", "--out", str(tmp_path / "o.txt")], "suffix"),
        (["margin", path_a, "--mm-directions", "R5,L-5", "--out", out], "expands"),
        (["union", path_a, "--out", out], "2 or more"),
        (["margin", path_a, "--mm", "5", "--label", "7", "--out", out], "no voxel with label 7"),
        (["ring", path_a, "--inner", "5", "--outer", "2", "--out", out], "outer distance"),
        (["margin", path_a, "--mm-directions", "1,2,3", "--out", out], "six distances"),
        (["margin", path_a, "--out", out], "needs a distance"),
    ]
    for args, message in cases:
        assert main(["contour", *args]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("openmedlab: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o.nii.gz").exists()
