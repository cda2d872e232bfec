"""Loading SAM-Med3D checkpoints: accepted formats, typed refusals with named keys, bad files.

A scaled-down configuration keeps the files small; the official default
configuration is exercised against it in the shape-mismatch test and, with
real official weights layout, in ``test_sam_med3d_equivalence.py``.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import pytest
import torch

from napari_openmedlab.models import errors as shared_errors
from napari_openmedlab.models.sam_med3d import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointReadError,
    Sam3D,
    SamMed3DConfig,
    build_sam_med3d,
    load_sam_med3d,
)

SMALL = SamMed3DConfig(
    img_size=32,
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    window_size=4,
    prompt_embed_dim=48,
    mask_in_chans=8,
    iou_head_hidden_dim=16,
    decoder_mlp_dim=32,
)


@pytest.fixture(scope="module")
def reference() -> Sam3D:
    torch.manual_seed(0)
    model = build_sam_med3d(SMALL)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                p.normal_()
    return model


@pytest.fixture()
def state_dict(reference):
    return {k: v.clone() for k, v in reference.state_dict().items()}


def _assert_same_weights(model: torch.nn.Module, sd) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == sd.keys()
    for key, value in sd.items():
        assert torch.equal(loaded[key], value.float()), key


@pytest.mark.parametrize("layout", ["official", "bare", "dataparallel"])
def test_accepted_formats_load_strictly(tmp_path, reference, state_dict, layout):
    if layout == "official":
        payload = {"model_state_dict": state_dict, "epoch": 3, "best_dice": 0.5}
    elif layout == "bare":
        payload = state_dict
    else:
        payload = {"model_state_dict": {f"module.{k}": v for k, v in state_dict.items()}}
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    model = load_sam_med3d(path, "cpu", config=SMALL)
    assert isinstance(model, Sam3D) and not model.training
    _assert_same_weights(model, state_dict)
    assert all(p.device.type == "cpu" for p in model.parameters())
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model.encode(x), reference.encode(x))


def test_training_checkpoint_with_args_and_numpy_scalars_loads(tmp_path, state_dict):
    """Official training checkpoints also pickle ``args`` (a Namespace) and numpy numbers."""
    payload = {
        "model_state_dict": state_dict,
        "args": argparse.Namespace(lr=8e-5, img_size=128, gpu_ids=[0, 1], task_name="turbo"),
        "dices": [np.float64(0.5), np.float32(0.7)],
        "best_dice": np.float64(0.8),
    }
    path = tmp_path / "train.pth"
    torch.save(payload, path)
    _assert_same_weights(load_sam_med3d(path, config=SMALL), state_dict)


def test_half_precision_checkpoint_is_loaded_as_float32(tmp_path, state_dict):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in state_dict.items()}, path)
    model = load_sam_med3d(path, config=SMALL)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def _mismatch(tmp_path, sd, config=SMALL) -> CheckpointMismatchError:
    path = tmp_path / "bad.pth"
    torch.save({"model_state_dict": sd}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_sam_med3d(path, config=config)
    return info.value


def test_missing_keys_are_refused_and_named(tmp_path, state_dict):
    gone = ["image_encoder.pos_embed", "mask_decoder.iou_token.weight", "prompt_encoder.no_mask_embed.weight"]
    for key in gone:
        del state_dict[key]
    err = _mismatch(tmp_path, state_dict)
    assert "3 missing key(s)" in str(err)
    for key in gone:
        assert key in str(err)
    assert sorted(err.missing) == sorted(gone) and not err.unexpected and not err.mismatched


def test_unexpected_keys_are_refused_and_named(tmp_path, state_dict):
    state_dict["image_encoder.extra.weight"] = torch.zeros(3)
    state_dict["pixel_mean"] = torch.zeros(3, 1, 1)
    err = _mismatch(tmp_path, state_dict)
    assert "2 unexpected key(s)" in str(err)
    assert "image_encoder.extra.weight" in str(err) and "pixel_mean" in str(err)
    assert not err.missing


def test_wrong_shapes_are_refused_and_named(tmp_path, state_dict):
    state_dict["image_encoder.blocks.0.attn.rel_pos_d"] = torch.zeros(15, 16)
    err = _mismatch(tmp_path, state_dict)
    msg = str(err)
    assert "image_encoder.blocks.0.attn.rel_pos_d" in msg
    assert "[15, 16]" in msg and "[7, 16]" in msg  # checkpoint vs network shape
    assert err.mismatched == [("image_encoder.blocks.0.attn.rel_pos_d", (15, 16), (7, 16))]


def test_long_key_lists_are_counted_and_truncated(tmp_path, state_dict):
    dropped = [k for k in state_dict if k.startswith("image_encoder.")]
    for key in dropped:
        del state_dict[key]
    msg = str(_mismatch(tmp_path, state_dict))
    assert f"{len(dropped)} missing key(s)" in msg
    assert "more" in msg
    assert sum(key in msg for key in dropped) < len(dropped)


def test_official_default_network_refuses_a_foreign_checkpoint(tmp_path, state_dict):
    err = _mismatch(tmp_path, state_dict, config=None)  # default = official vit_b_ori
    msg = str(err)
    assert ("image_encoder.pos_embed", (1, 2, 2, 2, 32), (1, 8, 8, 8, 768)) in err.mismatched
    first_key, ckpt_shape, net_shape = err.mismatched[0]
    assert f"{first_key} (checkpoint {list(ckpt_shape)} vs network {list(net_shape)})" in msg
    assert f"{len(err.mismatched)} shape mismatch(es)" in msg
    assert err.missing  # the small encoder has fewer blocks
    assert "image_encoder.blocks.2.norm1.weight" in err.missing


def test_error_types(tmp_path, state_dict):
    del state_dict["image_encoder.pos_embed"]
    err = _mismatch(tmp_path, state_dict)
    assert isinstance(err, ValueError)
    assert isinstance(err, CheckpointError)
    assert isinstance(err, shared_errors.CheckpointMismatchError)
    assert issubclass(CheckpointReadError, ValueError)
    assert issubclass(CheckpointReadError, shared_errors.CheckpointError)


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint\n", b"", bytes(range(256)) * 8, b"PK\x03\x04" + b"\x00" * 64],
    ids=["text", "empty", "binary", "fake_zip"],
)
def test_unreadable_files_give_a_clear_error(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointReadError, match="broken.pth"):
        load_sam_med3d(path, config=SMALL)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path, state_dict):
    path = tmp_path / "cut.pth"
    torch.save({"model_state_dict": state_dict}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match="cut.pth"):
        load_sam_med3d(path, config=SMALL)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_sam_med3d(tmp_path / "nope.pth")


@pytest.mark.parametrize(
    "payload",
    [[1, 2, 3], {"model_state_dict": {"a": 1}}, {}, {"model_state_dict": "weights"}],
    ids=["list", "non_tensor_values", "empty", "string"],
)
def test_files_without_a_state_dict_are_refused(tmp_path, payload):
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointReadError):
        load_sam_med3d(path, config=SMALL)


class _Payload:
    """Unpickling this would create a file (stand-in for arbitrary code execution)."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_pickled_code_is_refused_and_never_runs(tmp_path, state_dict):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": state_dict, "hook": _Payload(marker)}, path)
    with pytest.raises(CheckpointReadError, match="evil.pth"):
        load_sam_med3d(path, config=SMALL)
    assert not marker.exists()
