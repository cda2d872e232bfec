"""Engines: one loaded model + one volume; ``set_volume`` once, ``predict(prompts)`` per click.

``create_engine`` is the single entry point the CLI, the widget and the evaluation use, so every
model is reached the same way. Torch is imported only when a neural engine is created.
"""

from __future__ import annotations

import os

from .base import Box, Cancelled, Engine, EngineError, Prediction, PromptError, Prompts


def create_engine(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    *,
    encoder: str = "fast",
    threads: int | None = None,
) -> Engine:
    """Build the engine for registry model ``name``.

    Args:
        checkpoint: a local checkpoint file; wins over the weights cache.
        device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
        encoder: SAM-Med3D's image encoder, ``fast`` (default) or ``reference`` (the official
            computation op for op; masks equal the official pipeline's voxel for voxel). Other
            models have one encoder and ignore it.
        threads: torch threads on the CPU; ``None``/0 = the cores other processes leave free.

    Raises:
        UnknownModelError: ``name`` is not in the registry.
        WeightsError: a neural model's weights are neither given nor in the cache (the message
            says where they were looked for and how to get them).
    """
    from ..models.device import check_device
    from ..models.registry import get_spec
    from ..models.weights import WeightsError, find_weights, missing_weights_message

    spec = get_spec(name)
    check_device(device)  # also for engines that ignore it: a wrong --device is never silent
    from .sam_med3d import ENCODERS

    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {encoder!r}")
    if spec.family == "classic":
        from .seeded import SeededRegionEngine

        return SeededRegionEngine()
    path = find_weights(spec, checkpoint)
    if path is None:
        raise WeightsError(missing_weights_message(spec))
    if spec.family == "3d":
        from .sam_med3d import SamMed3DEngine

        return SamMed3DEngine.from_checkpoint(path, device=device, encoder=encoder, threads=threads)
    from .sam2d import Sam2DEngine

    return Sam2DEngine.from_checkpoint(spec, path, device=device, threads=threads)


__all__ = [
    "Box",
    "Cancelled",
    "Engine",
    "EngineError",
    "Prediction",
    "PromptError",
    "Prompts",
    "create_engine",
]
