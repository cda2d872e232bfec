"""``openmedlab autoseg``: label map + class table on the image grid; bad input is one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nnunet_folders as nf  # noqa: E402

from napari_openmedlab.cli import main  # noqa: E402
from napari_openmedlab.io import read_volume  # noqa: E402
from napari_openmedlab.layers import label_names_beside  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "napari_openmedlab" / "sample_data"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # coarse in-plane spacing and a 64 x 64 patch: one tile per slice of the sample CT
    return nf.plain_folder(tmp_path_factory.mktemp("model"), dim=2, folds=(0, 1), patch=(64, 64),
                           spacing=(6.0, 6.0))


def _sample_ct() -> Path:
    found = sorted(SAMPLE.glob("*.nii.gz"))
    if not found:
        pytest.skip("no sample CT in the package")
    return found[0]


def test_autoseg_writes_labels_and_class_table_on_the_image_grid(folder, tmp_path, capsys):
    from napari_openmedlab.engines.autoseg import AutoSegmenter
    from napari_openmedlab.models.nnunet import read_model_folder

    ct = _sample_ct()
    out = tmp_path / "draft.nii.gz"
    assert main(["autoseg", str(ct), "--model-folder", str(folder), "--folds", "1", "--device", "cpu",
                 "--no-mirroring", "--out", str(out)]) == 0
    written = read_volume(out)
    image = read_volume(ct)
    assert written.shape == image.shape and written.geometry == image.geometry
    model = read_model_folder(folder, folds=["1"])
    expected = AutoSegmenter(model, "cpu", use_mirroring=False).predict(image).labels.array
    assert np.array_equal(written.array, expected)
    table = json.loads((tmp_path / "draft.labels.json").read_text())
    assert table == {"labels": {"1": "liver", "2": "spleen"}}
    assert label_names_beside(str(out)) == {1: "liver", 2: "spleen"}
    assert "draft.nii.gz" in capsys.readouterr().out


@pytest.mark.parametrize("case,message", [
    ("no_plans", "not an nnU-Net results folder (no plans.json)"),
    ("unknown_trainer", "a trainer we do not know"),
    ("channels", "expects 1 channel(s) (CT); 2 image(s) given"),
    ("no_nnunet", 'pip install "napari-openmedlab[nnunet]"'),
])
def test_bad_input_is_one_line_and_writes_nothing(folder, tmp_path, capsys, monkeypatch, case, message):
    import shutil

    import torch

    ct = _sample_ct()
    model = tmp_path / "model"
    shutil.copytree(folder, model)
    images = [str(ct)]
    if case == "no_plans":
        (model / "plans.json").unlink()
    elif case == "unknown_trainer":
        for path in model.glob("fold_*/checkpoint_final.pth"):
            content = torch.load(path, weights_only=False)
            content["trainer_name"] = "nnUNetTrainerPrivateVariant"
            torch.save(content, path)
    elif case == "channels":
        images = [str(ct), str(ct)]
    elif case == "no_nnunet":
        monkeypatch.setitem(sys.modules, "nnunetv2", None)
    out = tmp_path / "draft.nii.gz"
    code = main(["autoseg", *images, "--model-folder", str(model), "--device", "cpu", "--no-mirroring",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("openmedlab: error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not out.exists() and not (tmp_path / "draft.labels.json").exists()


def test_unavailable_device_is_one_line(folder, tmp_path, capsys):
    import torch

    device = "mps" if torch.cuda.is_available() else "cuda"
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("every device is available here")
    code = main(["autoseg", str(_sample_ct()), "--model-folder", str(folder), "--device", device,
                 "--out", str(tmp_path / "draft.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("openmedlab: error: ") and "not available" in err[-1]
