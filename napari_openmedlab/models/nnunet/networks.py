"""The network a checkpoint's trainer builds, from the plans: Swin-UMamba ours, the rest nnU-Net's.

nnU-Net rebuilds the network at inference by calling the training class's
``build_network_architecture``. The Swin-UMamba trainers live in the official fork, not in the
``nnunetv2`` package, so their networks come from :mod:`..swin_umamba`; every trainer that the
installed ``nnunetv2`` knows (``nnUNetTrainer`` and its many variants) is built by nnU-Net itself,
from the plans' ``architecture`` (current plans) or ``UNet_class_name`` ... (2.1 plans, which
nnU-Net's ``ConfigurationManager`` converts).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from .errors import ModelFolderError, UnknownTrainerError

__all__ = ["SWIN_UMAMBA_TRAINERS", "build_network", "known_trainers_hint"]


def _swin_umamba(n_in: int, n_out: int):
    from ..swin_umamba import build_swin_umamba

    return build_swin_umamba(n_in, n_out, deep_supervision=False)


def _swin_umamba_d(n_in: int, n_out: int):
    from ..swin_umamba import build_swin_umamba_d

    return build_swin_umamba_d(n_in, n_out, deep_supervision=False)


#: Trainer names of the official Swin-UMamba fork -> our builder (with and without ImageNet
#: pretraining the networks are the same).
SWIN_UMAMBA_TRAINERS: dict[str, Callable] = {
    "nnUNetTrainerSwinUMamba": _swin_umamba,
    "nnUNetTrainerSwinUMambaScratch": _swin_umamba,
    "nnUNetTrainerSwinUMambaD": _swin_umamba_d,
    "nnUNetTrainerSwinUMambaDScratch": _swin_umamba_d,
}


def known_trainers_hint() -> str:
    return "nnUNetTrainer and the variants nnunetv2 ships, " + ", ".join(SWIN_UMAMBA_TRAINERS)


def build_network(trainer_name: str, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int):
    """A randomly initialised network for ``trainer_name`` (deep supervision off), ready for weights.

    Raises:
        UnknownTrainerError: neither the plugin nor the installed nnunetv2 knows the trainer.
        ModelFolderError: the plans ask for something the network cannot do (a 3D Swin-UMamba).
    """
    if trainer_name in SWIN_UMAMBA_TRAINERS:
        if len(configuration_manager.patch_size) != 2:
            raise ModelFolderError(
                f"{trainer_name} is a 2D network but the configuration's patch size is "
                f"{configuration_manager.patch_size}; use the folder of the 2d configuration")
        return SWIN_UMAMBA_TRAINERS[trainer_name](num_input_channels, num_output_channels)
    trainer_class = _nnunet_trainer_class(trainer_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return trainer_class.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels,
            enable_deep_supervision=False)


def _nnunet_trainer_class(trainer_name: str):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if trainer_name == "nnUNetTrainer":
        return nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(trainer_name)
    except (RuntimeError, AssertionError, ImportError) as err:
        raise UnknownTrainerError(
            f"the checkpoint was trained with '{trainer_name}', a trainer we do not know "
            f"(known: {known_trainers_hint()})") from err
