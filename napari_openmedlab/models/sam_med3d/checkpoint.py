"""Loading SAM-Med3D checkpoints (e.g. ``sam_med3d_turbo.pth``) into :class:`.model.Sam3D`.

Accepted formats
----------------
* the official training format ``{"model_state_dict": state_dict, ...}`` (the
  other entries - epoch, optimizer, ``args`` ... - are ignored);
* a bare state dict (``{"image_encoder.pos_embed": tensor, ...}``), or one
  under a ``"state_dict"`` key;
* either of them with a ``module.`` prefix on every key (DataParallel / DDP).

Files are read with ``torch.load(weights_only=True)``: no arbitrary code runs.
``argparse.Namespace`` (the official ``args`` entry) and numpy scalars are
allow-listed because they are plain data. Keys and shapes are checked before
``load_state_dict(strict=True)``; any mismatch raises
:class:`CheckpointMismatchError`, an unreadable file :class:`CheckpointReadError`.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Mapping
from typing import Any, Union

import torch

from ..errors import CheckpointError as _SharedCheckpointError
from ..errors import CheckpointMismatchError as _SharedMismatchError
from .model import Sam3D, SamMed3DConfig, build_sam_med3d

__all__ = [
    "CheckpointError",
    "CheckpointReadError",
    "CheckpointMismatchError",
    "read_state_dict",
    "extract_state_dict",
    "check_state_dict",
    "load_sam_med3d",
    "build_sam_med3d",
]

PathLike = Union[str, "os.PathLike[str]"]
_SHOWN = 8  # how many offending keys a message names


class CheckpointError(_SharedCheckpointError, ValueError):
    """Base class of SAM-Med3D checkpoint problems.

    Also a :class:`napari_openmedlab.models.errors.CheckpointError` (so callers
    catching the project-wide error see it) and a :class:`ValueError`.
    """


class CheckpointReadError(CheckpointError):
    """The file cannot be read as a (weights-only) torch checkpoint."""


class CheckpointMismatchError(_SharedMismatchError, CheckpointError):
    """The state dict does not fit the network: missing, unexpected or mis-shaped keys.

    The message names the first few offending keys of each kind and their
    counts. Attributes (from the shared base): ``missing``, ``unexpected``
    (sorted key lists) and ``mismatched`` (``(key, checkpoint_shape,
    network_shape)`` triples).
    """


def _safe_globals() -> list:
    allowed: list = [argparse.Namespace]
    try:  # numpy scalars/dtypes appear in official training checkpoints (losses, dices)
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        allowed += [core.multiarray.scalar, np.dtype]
        allowed += [type(np.dtype(t)) for t in ("float32", "float64", "int64", "int32", "bool")]
    except Exception:  # pragma: no cover - numpy missing or layout changed
        pass
    return allowed


def read_state_dict(path: PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its model state dict (tensors on ``device``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointReadError: not a torch file, corrupt, unsafe content, or no
            state dict inside.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"SAM-Med3D checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointReadError(
            f"cannot read {path!r} as a weights-only torch checkpoint (it is not a torch file, "
            f"is corrupt, or pickles Python objects other than tensors and plain data): "
            f"{_reason(exc)}"
        ) from exc
    except Exception as exc:  # torch raises many types here (RuntimeError, EOFError, IndexError ...)
        raise CheckpointReadError(
            f"cannot read {path!r} as a torch checkpoint (corrupt or truncated file?): "
            f"{type(exc).__name__}: {_reason(exc)}"
        ) from exc
    return extract_state_dict(obj, source=path)


def _reason(exc: BaseException) -> str:
    """The informative line of a torch.load error (the WeightsUnpickler reason if any)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "WeightsUnpickler error" in ln:
            return ln
    return lines[0] if lines else type(exc).__name__


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the state dict out of a loaded checkpoint object (see module doc)."""
    if isinstance(obj, Mapping) and "model_state_dict" in obj:
        obj = obj["model_state_dict"]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointReadError(f"{source} holds no model state dict")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointReadError(
            f"{source} is not a state dict: {len(bad)} value(s) are not tensors, "
            f"e.g. {', '.join(str(k) for k in bad[:_SHOWN])}"
        )
    keys = list(obj.keys())
    if all(k.startswith("module.") for k in keys):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def check_state_dict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` unless keys and shapes match ``model`` exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            missing, unexpected, mismatched, what=f"SAM-Med3D checkpoint {source}", limit=_SHOWN
        )


def load_sam_med3d(
    path: PathLike,
    device: str | torch.device = "cpu",
    *,
    config: SamMed3DConfig | None = None,
    fast_encoder: bool = True,
) -> Sam3D:
    """Load a SAM-Med3D checkpoint into our :class:`Sam3D` (eval mode, on ``device``).

    Args:
        path: ``.pth`` file, official ``{"model_state_dict": ...}`` format or bare state dict.
        device: where the weights go (``map_location``), e.g. ``"cpu"``, ``"cuda"``.
        config: network hyper-parameters; default = official ``vit_b_ori``.
        fast_encoder: use the exact padding-free encoder attention (default).

    Raises:
        FileNotFoundError, CheckpointReadError, CheckpointMismatchError.
    """
    device = torch.device(device)
    state_dict = read_state_dict(path, device)
    model = Sam3D(config or SamMed3DConfig(), fast_encoder=fast_encoder)
    check_state_dict(model, state_dict, source=os.fspath(path))
    # The tensors already sit on ``device`` (map_location): adopt them instead of
    # copying (assign=True); floating tensors are brought to float32 first.
    state_dict = {
        k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v
        for k, v in state_dict.items()
    }
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()
