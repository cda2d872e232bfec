"""Typed errors of automatic pre-segmentation; each message is one line that says what to do."""

from __future__ import annotations


class AutosegError(ValueError):
    """An nnU-Net model folder or its input cannot be used."""


class NnUNetMissingError(AutosegError):
    """The optional ``nnunetv2`` package (the ``[nnunet]`` extra) is not installed."""


class ModelFolderError(AutosegError):
    """The folder is not an nnU-Net v2 results folder (plans, dataset.json or checkpoints missing)."""


class UnknownTrainerError(ModelFolderError):
    """The checkpoint names a trainer whose network neither nnU-Net nor this plugin can build."""


class ChannelMismatchError(AutosegError):
    """The images given do not match the channels that ``dataset.json`` names."""
