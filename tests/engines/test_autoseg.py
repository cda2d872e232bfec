"""Automatic pre-segmentation equals nnU-Net's own predictor; bad folders fail in one line; cancel.

Each folder is random-initialised (see ``tests/nnunet_folders.py``); nnU-Net's ``nnUNetPredictor``
reads it with ``initialize_from_trained_model_folder`` and the image with its own SimpleITKIO, ours
goes through ``read_model_folder`` (weights-only) and ``io.read_volume``.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")
sitk = pytest.importorskip("SimpleITK")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nnunet_folders as nf  # noqa: E402

from napari_openmedlab.annotation import structures_from_autoseg  # noqa: E402
from napari_openmedlab.engines.autoseg import AutoSegmenter  # noqa: E402
from napari_openmedlab.engines.base import Cancelled  # noqa: E402
from napari_openmedlab.io import read_volume  # noqa: E402
from napari_openmedlab.models.errors import UnsafeCheckpointError  # noqa: E402
from napari_openmedlab.models.nnunet import (  # noqa: E402
    ChannelMismatchError,
    ModelFolderError,
    UnknownTrainerError,
    read_model_folder,
)


def _image(path: Path, shape=(9, 27, 23), spacing=(2.0, 2.2, 3.5), seed=0,
           direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.normal(0, 300, shape).astype(np.int16)
    array[:, : shape[1] // 3] += 400  # some structure, so that classes differ across the image
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((10.0, -5.0, 3.0))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


def _nnunet_reference(folder: Path, image: Path):
    """nnU-Net's predictor on ``image`` read by the reader class the plans name."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), None, "checkpoint_final.pth")
    data, props = predictor.plans_manager.image_reader_writer_class().read_images([str(image)])
    return predictor.predict_single_npy_array(data, props, None, None, True)


def _ours(folder: Path, image: Path, **kwargs):
    return AutoSegmenter(read_model_folder(folder), "cpu").predict(read_volume(image), probabilities=True, **kwargs)


@pytest.mark.parametrize("generation,dim", [("current", 3), ("2.1", 3), ("current", 2), ("2.1", 2)])
def test_plain_nnunet_equals_nnunets_predictor(tmp_path, generation, dim):
    folder = nf.plain_folder(tmp_path, generation=generation, dim=dim, folds=(0, 1))
    image = _image(tmp_path / "case_0000.nii.gz")
    seg_ref, prob_ref = _nnunet_reference(folder, image)
    ours = _ours(folder, image)
    assert ours.labels.array.shape == read_volume(image).shape
    assert np.array_equal(ours.labels.array, seg_ref)
    assert len(np.unique(seg_ref)) > 1  # a random network still splits the image: the test can fail
    assert np.abs(ours.probabilities - prob_ref).max() <= 1e-4
    assert ours.classes == {1: "liver", 2: "spleen"}
    assert ours.labels.geometry == read_volume(image).geometry
    structures = structures_from_autoseg(ours, include_empty=True)  # one structure per class
    assert structures.names() == ["liver", "spleen"]
    assert np.array_equal(structures.mask("liver"), seg_ref == 1)


def test_nibabel_read_models_equal_nnunets_predictor(tmp_path):
    """Plans naming NibabelIO: nnU-Net reads with nibabel (then transposes); we read with SimpleITK."""
    pytest.importorskip("nibabel")
    folder = nf.plain_folder(tmp_path, dim=3, reader="NibabelIO")
    image = _image(tmp_path / "case_0000.nii.gz")
    seg_ref, prob_ref = _nnunet_reference(folder, image)
    ours = _ours(folder, image)
    assert np.array_equal(ours.labels.array, seg_ref)
    assert np.abs(ours.probabilities - prob_ref).max() <= 1e-4


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0, 0, 0, -1)])
def test_reorienting_reader_models_equal_nnunets_predictor(tmp_path, direction):
    """NibabelIOWithReorient: nnU-Net turns the image to RAS+ with nibabel; we with SimpleITK."""
    pytest.importorskip("nibabel")
    folder = nf.plain_folder(tmp_path, dim=3, reader="NibabelIOWithReorient")
    image = _image(tmp_path / "case_0000.nii.gz", direction=direction)
    seg_ref, prob_ref = _nnunet_reference(folder, image)
    ours = _ours(folder, image)
    assert ours.labels.shape == read_volume(image).shape
    # nnU-Net hands back the arrays in the reoriented voxel order; its writer orients the label map
    # back to the file's grid. Compare on the file's grid: write theirs as nnU-Net does, read it.
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIOWithReorient

    _, props = NibabelIOWithReorient().read_images([str(image)])
    NibabelIOWithReorient().write_seg(seg_ref, str(tmp_path / "theirs.nii.gz"), props)
    theirs = read_volume(tmp_path / "theirs.nii.gz")
    assert np.array_equal(ours.labels.array, theirs.array)
    assert len(np.unique(theirs.array)) > 1


def test_cascade_configurations_are_refused(tmp_path):
    import json

    folder = nf.plain_folder(tmp_path, dim=3)
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["previous_stage"] = "3d_lowres"
    (folder / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelFolderError, match="cascade configurations"):
        AutoSegmenter(read_model_folder(folder), "cpu")


@pytest.mark.parametrize("variant", ["swin", "swin_d"])
def test_swin_umamba_equals_nnunets_predictor_with_our_network(tmp_path, monkeypatch, variant):
    """nnU-Net's predictor, with our network registered as the fork's trainer, against ours."""
    import nnunetv2.inference.predict_from_raw_data as nnunet_predict

    from napari_openmedlab.models.nnunet.networks import SWIN_UMAMBA_TRAINERS

    folder = nf.swin_folder(tmp_path, variant)
    trainer_name = folder.name.split("__")[0]

    class ForkTrainer:  # what the official fork's trainer class provides at inference
        @staticmethod
        def build_network_architecture(plans_manager, configuration_manager, n_in, n_out,
                                       enable_deep_supervision=True):
            return SWIN_UMAMBA_TRAINERS[trainer_name](n_in, n_out)

    monkeypatch.setattr(nnunet_predict, "recursive_find_trainer_class_by_name",
                        lambda name: ForkTrainer if name == trainer_name else None)
    image = _image(tmp_path / "case_0000.nii.gz", shape=(2, 64, 64), spacing=(1.5, 1.5, 4.0))
    seg_ref, prob_ref = _nnunet_reference(folder, image)
    ours = _ours(folder, image)
    assert np.array_equal(ours.labels.array, seg_ref)
    assert np.abs(ours.probabilities - prob_ref).max() <= 1e-4


# ------------------------------------------------------------------ progress and cancel


def test_progress_reaches_one_and_cancel_stops_within_a_second(tmp_path):
    folder = nf.plain_folder(tmp_path, dim=2)
    image = read_volume(_image(tmp_path / "case_0000.nii.gz", shape=(12, 40, 40)))
    segmenter = AutoSegmenter(read_model_folder(folder), "cpu")
    seen = []
    segmenter.predict(image, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 10

    threads = threading.active_count()
    cancel = threading.Event()
    stopped_at = []

    def progress(fraction, message):
        if "network passes" in message and not cancel.is_set():
            cancel.set()
            stopped_at.append(time.perf_counter())

    with pytest.raises(Cancelled):
        segmenter.predict(image, progress=progress, cancel=cancel)
    assert time.perf_counter() - stopped_at[0] < 1.0
    time.sleep(0.2)
    assert threading.active_count() <= threads  # nnU-Net's tile producer thread did not hang
    again = segmenter.predict(image)  # the segmenter is still usable
    assert again.labels.shape == image.shape


# ------------------------------------------------------------------ bad input


def test_folder_without_plans_dataset_or_checkpoint(tmp_path):
    with pytest.raises(ModelFolderError, match="no such model folder"):
        read_model_folder(tmp_path / "absent")
    folder = nf.plain_folder(tmp_path)
    with pytest.raises(ModelFolderError, match="choose one: nnUNetTrainer__nnUNetPlans__3d_fullres"):
        read_model_folder(tmp_path)
    os.rename(folder / "dataset.json", folder / "dataset.bak")
    with pytest.raises(ModelFolderError, match="no dataset.json"):
        read_model_folder(folder)
    os.rename(folder / "dataset.bak", folder / "dataset.json")
    with pytest.raises(ModelFolderError, match=r"no checkpoint_best.pth for fold\(s\) 0 .*fold_0/checkpoint_final"):
        read_model_folder(folder, folds=["0"], checkpoint="checkpoint_best.pth")
    with pytest.raises(ModelFolderError, match="no fold_\\*/checkpoint_best.pth"):
        read_model_folder(folder, checkpoint="checkpoint_best.pth")
    (folder / "plans.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match="unreadable JSON"):
        read_model_folder(folder)


def test_unknown_trainer_is_one_clear_error(tmp_path):
    folder = nf.plain_folder(tmp_path)
    path = folder / "fold_0" / "checkpoint_final.pth"
    content = torch.load(path, weights_only=False)
    content["trainer_name"] = "nnUNetTrainerSomethingPrivate"
    torch.save(content, path)
    with pytest.raises(UnknownTrainerError, match="'nnUNetTrainerSomethingPrivate', a trainer we do not know"):
        AutoSegmenter(read_model_folder(folder), "cpu")


def test_channel_count_must_match_dataset_json(tmp_path):
    folder = nf.plain_folder(tmp_path, channels=("T1", "T2"))
    image = read_volume(_image(tmp_path / "case_0000.nii.gz"))
    segmenter = AutoSegmenter(read_model_folder(folder), "cpu")
    with pytest.raises(ChannelMismatchError, match=r"expects 2 channel\(s\) \(T1, T2\); 1 image\(s\) given"):
        segmenter.predict(image)
    other = read_volume(_image(tmp_path / "other_0000.nii.gz", spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(ChannelMismatchError, match="not on the grid"):
        segmenter.predict([image, other])
    assert segmenter.predict([image, image]).labels.shape == image.shape


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_code_running_checkpoint_is_refused(tmp_path, protocol):
    folder = nf.plain_folder(tmp_path)
    path = folder / "fold_0" / "checkpoint_final.pth"
    content = torch.load(path, weights_only=False)
    marker = tmp_path / "pwned"
    content["logging"]["extra"] = _Payload(marker)
    torch.save(content, path, pickle_protocol=protocol)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        read_model_folder(folder)
    assert not marker.exists()
