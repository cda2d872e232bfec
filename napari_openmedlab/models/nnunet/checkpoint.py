"""Reading nnU-Net v2 checkpoints (``fold_*/checkpoint_*.pth``) without running pickled code.

An nnU-Net checkpoint is a dict: ``network_weights`` (the state dict), ``init_args`` (plans,
configuration name, fold, dataset.json, device), ``trainer_name``,
``inference_allowed_mirroring_axes``, and training state that inference ignores
(``optimizer_state``, ``grad_scaler_state``, ``logging``, ``_best_ema``, ``current_epoch``).
The training state holds numpy scalars and arrays (losses, Dice curves) and ``init_args`` a
``torch.device``: these plain-data types are the only globals allowed beyond torch's own
weights-only set. Anything else (``os.system``, ``builtins.exec``, a class of the training code)
refuses the file with :class:`UnsafeCheckpointError` before any of it is used.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

import torch

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["read_nnunet_checkpoint", "allowed_globals"]


def allowed_globals() -> list:
    """The plain-data globals nnU-Net checkpoints need, beyond torch's weights-only defaults."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    allowed: list = [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, torch.device]
    allowed += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int8", "int16", "int32",
                                            "int64", "uint8", "bool")]
    return allowed


def read_nnunet_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``path`` with ``torch.load(weights_only=True)`` and the allow-list; check its fields.

    Raises:
        UnsafeCheckpointError: the pickle names a global outside the allow-list.
        CheckpointError: unreadable, or not an nnU-Net checkpoint (no ``network_weights`` ...).
    """
    path = os.fspath(path)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # a global or opcode beyond plain data: never run it
        raise UnsafeCheckpointError(
            f"{path}: refused, the checkpoint pickles Python objects beyond tensors and plain data "
            f"({_reason(err)}); only weights-only checkpoints are loaded",
            [_reason(err)],
        ) from err
    except Exception as err:  # torch raises many types for corrupt or truncated files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: "
                              f"{_reason(err)})") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("network_weights"), dict):
        raise CheckpointError(f"{path}: not an nnU-Net checkpoint (no 'network_weights' state dict)")
    if not isinstance(obj.get("trainer_name"), str):
        raise CheckpointError(f"{path}: not an nnU-Net checkpoint (no 'trainer_name')")
    init_args = obj.get("init_args")
    if not isinstance(init_args, dict) or not isinstance(init_args.get("configuration"), str):
        raise CheckpointError(f"{path}: not an nnU-Net checkpoint (no 'init_args' with a configuration)")
    bad = [k for k, v in obj["network_weights"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: 'network_weights' holds non-tensors, e.g. {bad[0]!r}")
    return obj


def _reason(err: BaseException) -> str:
    """The informative part of torch's message (without its advice to allow-list the global)."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    if found:
        return f"it names {found.group(1)}"
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Unsupported") or "Unsupported global" in ln:
            return ln
    return lines[0] if lines else type(err).__name__
