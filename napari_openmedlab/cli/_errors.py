"""Errors the CLI reports as one readable line (anything else is a bug and keeps its traceback)."""

from __future__ import annotations


def EXPECTED_ERRORS() -> tuple[type[BaseException], ...]:  # noqa: N802 - reads as a constant
    from ..annotation.contouring import ContouringError
    from ..annotation.structure_set import StructureSetError
    from ..engines.base import EngineError, PromptError
    from ..evaluation.inputs import EvaluationInputError
    from ..io.errors import VolumeReadError, VolumeWriteError
    from ..models.device import DeviceError
    from ..models.registry import UnknownModelError
    from ..models.weights import WeightsError

    errors: list[type[BaseException]] = [
        EngineError,
        PromptError,
        VolumeReadError,
        VolumeWriteError,
        UnknownModelError,
        WeightsError,
        FileNotFoundError,
        DeviceError,
        EvaluationInputError,
        ContouringError,
        StructureSetError,
    ]
    from ..annotation.label_classes import LabelClassError
    from ..annotation.structure_set import StructureSetError
    from ..dataset.project import ProjectError
    from ..io.atomic import FileWriteError

    errors += [StructureSetError, ProjectError, FileWriteError, LabelClassError]

    from ..models.nnunet.errors import AutosegError

    errors.append(AutosegError)
    try:
        from ..annotation.autosave import RecoveryError

        errors.append(RecoveryError)
    except ImportError:
        pass
    try:
        from ..models.errors import CheckpointError, CheckpointMismatchError

        errors += [CheckpointError, CheckpointMismatchError]
    except ImportError:
        pass
    return tuple(errors)
