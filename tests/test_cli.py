"""The ``openmedlab`` command line, run in-process through ``cli.main``."""

import numpy as np
import pytest

from napari_openmedlab.cli import main
from napari_openmedlab.io import read_volume


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_info_lists_models_devices_and_weights(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "napari-openmedlab" in out and "devices: " in out and "cpu" in out
    assert "sam-med3d-turbo" in out and "weights missing" in out
    assert "seeded-region" in out and "no weights needed" in out


def test_segment_without_weights_says_where_and_how(shared_data, tmp_path, capsys):
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    code = main(["segment", str(ct), "--model", "sam-med3d-turbo", "--point", "15,50,40",
                 "--out", str(tmp_path / "m.nii.gz")])
    err = capsys.readouterr().err
    assert code == 1
    assert "sam_med3d_turbo.pth" in err and "openmedlab download sam-med3d-turbo" in err
    assert not (tmp_path / "m.nii.gz").exists()


def test_segment_click_outside_the_volume_is_a_clear_error(shared_data, tmp_path, capsys):
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    code = main(["segment", str(ct), "--model", "seeded-region", "--point", "15,500,40",
                 "--out", str(tmp_path / "m.nii.gz")])
    assert code == 1 and "outside the volume" in capsys.readouterr().err


def test_segment_weight_free_writes_mask_in_image_geometry(shared_data, tmp_path):
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    seg = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array
    liver = np.argwhere(seg == 5)
    centre = liver[np.argmin(((liver - liver.mean(0)) ** 2).sum(1))]
    out = tmp_path / "liver.nii.gz"
    assert main(["segment", str(ct), "--model", "seeded-region",
                 "--point", ",".join(map(str, centre)), "--out", str(out)]) == 0
    mask, image = read_volume(out), read_volume(ct)
    assert mask.shape == image.shape and mask.geometry.same_grid(image.geometry)
    assert mask.array[tuple(centre)] == 1


def test_bad_point_syntax_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "x.nii.gz", "--model", "seeded-region", "--point", "1,2", "--out", "o.nii.gz"])
    assert "z,y,x" in capsys.readouterr().err


@pytest.mark.parametrize("point", ["nan,12,15", "1,inf,3"])
def test_non_finite_points_are_rejected(point, capsys):
    with pytest.raises(SystemExit):
        main(["segment", "x.nii.gz", "--model", "seeded-region", "--point", point, "--out", "o.nii.gz"])
    assert "z,y,x" in capsys.readouterr().err


def test_non_finite_click_is_a_prompt_error():
    from napari_openmedlab.engines import PromptError, Prompts

    with pytest.raises(PromptError, match="not a finite"):
        Prompts([[np.nan, 1, 1]], [1]).check_inside((5, 5, 5))


def test_bad_output_path_fails_before_the_model_runs(shared_data, tmp_path, capsys, monkeypatch):
    import napari_openmedlab.engines as engines

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine must not be created for an unwritable output")

    monkeypatch.setattr(engines, "create_engine", no_engine)
    ct = str(shared_data / "totalseg-ct" / "ct.nii.gz")
    for out in (tmp_path / "mask.txt", tmp_path / "nodir" / "mask.nii.gz"):
        code = main(["segment", ct, "--model", "seeded-region", "--point", "15,50,40", "--out", str(out)])
        assert code == 1
    err = capsys.readouterr().err
    assert "choose a suffix" in err and "does not exist" in err
