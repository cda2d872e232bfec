"""`openmedlab segment` end to end with a random-weights checkpoint in the official format."""

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_openmedlab.cli import main
from napari_openmedlab.io import read_volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_random_checkpoint import make  # noqa: E402


@pytest.mark.slow
def test_segment_sam_med3d_with_official_format_checkpoint(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))
    checkpoint = tmp_path / "sam_med3d_turbo.pth"
    make("sam-med3d-turbo", str(checkpoint))
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    out = tmp_path / "mask.nii.gz"
    code = main(["segment", str(ct), "--model", "sam-med3d-turbo", "--checkpoint", str(checkpoint),
                 "--device", "cpu", "--point", "15,50,40", "--point", "15,60,60,-", "--out", str(out)])
    assert code == 0
    mask, image = read_volume(out), read_volume(ct)
    assert mask.shape == image.shape and mask.geometry.same_grid(image.geometry)
    assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) <= {0, 1}


def test_segment_refuses_a_checkpoint_that_does_not_match(shared_data, tmp_path, capsys):
    import torch

    bad = tmp_path / "bad.pth"
    torch.save({"model_state_dict": {"image_encoder.pos_embed": torch.zeros(3)}}, bad)
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    code = main(["segment", str(ct), "--model", "sam-med3d-turbo", "--checkpoint", str(bad),
                 "--point", "15,50,40", "--out", str(tmp_path / "m.nii.gz")])
    err = capsys.readouterr().err
    assert code == 1 and "missing" in err and "image_encoder.pos_embed" in err
    assert not (tmp_path / "m.nii.gz").exists()
