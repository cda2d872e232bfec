"""Errors the CLI reports as one readable line (anything else is a bug and keeps its traceback)."""

from __future__ import annotations


def EXPECTED_ERRORS() -> tuple[type[BaseException], ...]:  # noqa: N802 - reads as a constant
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
    ]
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
