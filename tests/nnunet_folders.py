"""Random-initialised nnU-Net v2 results folders, as nnU-Net and the Swin-UMamba fork write them.

``plans.json`` in either generation (current: ``architecture`` with ``network_class_name`` and
``arch_kwargs``; 2.1, as the Swin-UMamba fork writes: ``UNet_class_name``, ``conv_kernel_sizes``,
...), ``dataset.json``, and ``fold_N/checkpoint_final.pth`` holding what nnU-Net's trainer saves
(``network_weights``, ``optimizer_state``, ``grad_scaler_state``, ``logging`` with numpy floats,
``_best_ema``, ``current_epoch``, ``init_args`` with a ``torch.device``, ``trainer_name``,
``inference_allowed_mirroring_axes``). Sizes are tiny so that CPU tests take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLASSES = {"background": 0, "liver": 1, "spleen": 2}


def dataset_json(channels=("CT",), labels=None) -> dict:
    return {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": dict(labels or CLASSES),
            "numTraining": 4, "file_ending": ".nii.gz"}


def _configuration(dim: int, patch, spacing, generation: str, n_stages: int, base: int, channels: int) -> dict:
    kernels = [[3] * dim] * n_stages
    strides = [[1] * dim] + [[2] * dim] * (n_stages - 1)
    config = {
        "data_identifier": f"nnUNetPlans_{dim}d", "preprocessor_name": "DefaultPreprocessor",
        "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": list(patch),
        "spacing": list(spacing), "normalization_schemes": ["CTNormalization"] * channels, "use_mask_for_norm": [False] * channels,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                               "force_separate_z": None},
        "batch_dice": True,
    }
    if generation == "2.1":
        config.update({"UNet_class_name": "PlainConvUNet", "UNet_base_num_features": base,
                       "n_conv_per_stage_encoder": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                       "num_pool_per_axis": [n_stages - 1] * dim, "pool_op_kernel_sizes": strides,
                       "conv_kernel_sizes": kernels, "unet_max_num_features": 320})
    else:
        conv = f"torch.nn.modules.conv.Conv{dim}d"
        norm = f"torch.nn.modules.instancenorm.InstanceNorm{dim}d"
        config["architecture"] = {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": n_stages, "features_per_stage": [min(base * 2**i, 512 if dim == 2 else 320) for i in range(n_stages)],
                            "conv_op": conv, "kernel_sizes": kernels, "strides": strides,
                            "n_conv_per_stage": [2] * n_stages, "n_conv_per_stage_decoder": [2] * (n_stages - 1),
                            "conv_bias": True, "norm_op": norm, "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                            "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        }
    return config


def plans_json(configuration: str, patch, spacing, generation: str = "current", n_stages: int = 3,
               base: int = 4, channels: int = 1) -> dict:
    dim = len(patch)
    return {
        "dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(spacing) if dim == 3 else [3.0, *spacing],
        "original_median_shape_after_transp": [16, 32, 32], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {configuration: _configuration(dim, patch, spacing, generation, n_stages, base, channels)},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 1500.0, "mean": 60.0, "median": 55.0, "min": -1000.0, "percentile_00_5": -900.0,
                     "percentile_99_5": 900.0, "std": 250.0} for c in range(channels)},
    }


def save_checkpoint(path: Path, network: torch.nn.Module, trainer_name: str, configuration: str, plans: dict,
                    dataset: dict, mirror_axes=(0, 1, 2), optimizer: bool = True) -> None:
    """What ``nnUNetTrainer.save_checkpoint`` writes, with plain-data training state."""
    state = {}
    if optimizer:
        opt = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
        state = opt.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "network_weights": network.state_dict(),
        "optimizer_state": state,
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5), np.float64(0.6)], "ema_fg_dice": [np.float64(0.55)],
                    "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.7)]],
                    "train_losses": [np.float32(-0.3)], "val_losses": [np.float32(-0.2)],
                    "lrs": [0.01], "epoch_start_timestamps": [1.7e9], "epoch_end_timestamps": [1.7e9 + 60]},
        "_best_ema": np.float64(0.55),
        "current_epoch": 1000,
        "init_args": {"plans": plans, "configuration": configuration, "fold": 0, "dataset_json": dataset,
                      "unpack_dataset": True, "device": torch.device("cuda")},
        "trainer_name": trainer_name,
        "inference_allowed_mirroring_axes": tuple(mirror_axes) if mirror_axes is not None else None,
    }, path)


def plain_folder(root: Path, *, generation: str = "current", dim: int = 3, folds=(0,), seed: int = 0,
                 channels=("CT",), patch=None, spacing=None, n_stages: int = 3, base: int = 4,
                 reader: str = "SimpleITKIO") -> Path:
    """A plain nnU-Net (PlainConvUNet) results folder: 3d_fullres (patch 16^3) or 2d (patch 32^2)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    configuration = "3d_fullres" if dim == 3 else "2d"
    default_patch, default_spacing = ((16, 16, 16), (3.0, 2.5, 2.5)) if dim == 3 else ((32, 32), (2.5, 2.5))
    patch, spacing = patch or default_patch, spacing or default_spacing
    plans = plans_json(configuration, patch, spacing, generation, n_stages=n_stages, base=base,
                       channels=len(channels))
    plans["image_reader_writer"] = reader
    dataset = dataset_json(channels)
    folder = root / f"nnUNetTrainer__nnUNetPlans__{configuration}"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    arch = PlansManager(json.loads(json.dumps(plans))).get_configuration(configuration)
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        net = get_network_from_plans(arch.network_arch_class_name, arch.network_arch_init_kwargs,
                                     arch.network_arch_init_kwargs_req_import, len(channels), len(CLASSES),
                                     allow_init=True, deep_supervision=True)
        _randomise_norms(net)
        save_checkpoint(folder / f"fold_{fold}" / "checkpoint_final.pth", net, "nnUNetTrainer", configuration,
                        plans, dataset, mirror_axes=tuple(range(dim)))
    return folder


def swin_folder(root: Path, variant: str, *, seed: int = 0, patch=(64, 64), spacing=(1.5, 1.5)) -> Path:
    """A Swin-UMamba results folder as the official fork writes it (2.1 plans, 2d), random weights."""
    from napari_openmedlab.models.swin_umamba import build_swin_umamba, build_swin_umamba_d

    trainer = {"swin": "nnUNetTrainerSwinUMamba", "swin_d": "nnUNetTrainerSwinUMambaD"}[variant]
    plans = plans_json("2d", patch, spacing, generation="2.1", n_stages=6, base=32)
    dataset = dataset_json()
    folder = root / f"{trainer}__nnUNetPlans__2d"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans, indent=2))
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    torch.manual_seed(seed)
    build = build_swin_umamba if variant == "swin" else build_swin_umamba_d
    net = build(1, len(CLASSES), deep_supervision=True)
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", net, trainer, "2d", plans, dataset,
                    mirror_axes=(0, 1), optimizer=False)
    return folder


def _randomise_norms(net: torch.nn.Module) -> None:
    """Non-trivial affine norm parameters, so that outputs depend on every weight."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d)) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
