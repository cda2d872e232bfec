"""nnU-Net v2 results folders: reading them safely and building the network their trainer names.

The inference pipeline itself (preprocessing, sliding window, export) is nnU-Net's own, driven by
:mod:`napari_openmedlab.engines.autoseg`. Nothing here imports ``nnunetv2`` at import time: it is
an optional extra (``pip install "napari-openmedlab[nnunet]"``).
"""

from .errors import (
    AutosegError,
    ChannelMismatchError,
    ModelFolderError,
    NnUNetMissingError,
    UnknownTrainerError,
)
from .folder import DEFAULT_CHECKPOINT, ModelFolder, read_model_folder

__all__ = [
    "AutosegError",
    "ChannelMismatchError",
    "ModelFolderError",
    "NnUNetMissingError",
    "UnknownTrainerError",
    "DEFAULT_CHECKPOINT",
    "ModelFolder",
    "read_model_folder",
]
