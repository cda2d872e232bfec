"""Reading checkpoints without running pickled code, checking them and loading them into a network.

Why: the official ``sam-med2d_b.pth`` is ``{"model": state_dict, "optimizer": <torch.optim.Adam
object>}``. The optimizer is a pickled Python object, so ``torch.load(weights_only=True)``
rejects the file, and ``weights_only=False`` would execute whatever the pickle names.

How: a torch ``.pth`` (zip) file is unpickled by :mod:`.safe_pickle`, whose unpickler never
imports anything (its docstring says what each name the pickle mentions becomes; unexpected
code stops the reader with :class:`UnsafeCheckpointError`). This module picks the state dict
out of the result (a bare state dict, or one of :data:`STATE_DICT_KEYS`), and only its tensors
are then read from the zip (the optimizer's moments are never loaded). The result can be
written once as a safetensors copy into a cache folder (:mod:`.converted_cache`) with a JSON
sidecar recording both files' SHA-256; later loads use that copy.

Bare state dicts (SAM's ``sam_vit_b_01ec64.pth``, MedSAM's ``medsam_vit_b.pth``) go through the
same reader. Files that are not zip archives (pre-1.6 torch format) are read with
``torch.load(weights_only=True)``; ``.safetensors`` files are read directly.

Layout: :mod:`.safe_pickle` (restricted unpickler, zip reader), :mod:`.converted_cache`
(safetensors copies), this module (state dict selection, checks, loading; it re-exports the
public names of the other two).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from .converted_cache import CONVERSION_FORMAT as CONVERSION_FORMAT  # re-exported
from .converted_cache import convert_cached, converted_paths, sha256_file
from .safe_pickle import LazyTensor, ZipCheckpoint

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "check_state_dict",
    "convert_to_safetensors",
    "converted_paths",
    "load_state_dict",
    "load_weights",
    "read_checkpoint_globals",
    "read_state_dict",
    "sha256_file",
]

STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "module")
"""Where a state dict may sit inside a training checkpoint, in the order we look."""


# ------------------------------------------------------------------ state dict extraction


def _is_state_dict(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, (LazyTensor, torch.Tensor)) for k, v in obj.items())
    )


def _select_state_dict(root, name: str) -> tuple[Mapping, str | None]:
    if _is_state_dict(root):
        return root, None
    if isinstance(root, Mapping):
        for key in STATE_DICT_KEYS:
            if key in root and _is_state_dict(root[key]):
                return root[key], key
        for key in STATE_DICT_KEYS:
            if key in root and isinstance(root[key], Mapping):
                bad = [k for k, v in root[key].items() if not isinstance(v, (LazyTensor, torch.Tensor))]
                raise UnsafeCheckpointError(
                    f"{name}: entries of {key!r} are not tensors: {', '.join(map(str, bad[:8]))}; refusing it",
                    [repr(root[key][k]) for k in bad[:8]],
                )
        keys = ", ".join(map(repr, list(root)[:10]))
        raise CheckpointError(f"{name}: no state dict found (top-level keys: {keys})")
    raise CheckpointError(f"{name}: no state dict found (top level is {type(root).__name__})")


def _strip_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _read(path: Path, allow_unknown_globals: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """State dict + facts about where it came from (``state_dict_key``, ``dropped_globals``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu"), {"state_dict_key": None, "dropped_globals": []}
    if not zipfile.is_zipfile(path):
        try:
            root = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"{path.name}: an old-format (non-zip) checkpoint holding more than weights; refusing it ({err})"
            ) from err
        except Exception as err:
            raise CheckpointError(f"{path.name}: cannot read as a torch checkpoint ({err})") from err
        sd, key = _select_state_dict(root, path.name)
        return _strip_module_prefix(dict(sd)), {"state_dict_key": key, "dropped_globals": []}
    ckpt = ZipCheckpoint(path, allow_unknown_globals)
    try:
        lazy, key = _select_state_dict(ckpt.root, path.name)
        ckpt.plan(lazy.values())
        sd = {k: ckpt.materialise(v) for k, v in lazy.items()}
    finally:
        ckpt.close()
    return _strip_module_prefix(sd), {"state_dict_key": key, "dropped_globals": ckpt.dropped}


def read_state_dict(
    path: str | os.PathLike, *, allow_unknown_globals: bool = False
) -> dict[str, torch.Tensor]:
    """The weights in ``path`` (a bare state dict or ``{"model": state_dict, ...}``), on the CPU.

    No pickled code runs. Raises :class:`UnsafeCheckpointError` when the pickle names code that
    is not expected training state (see the module docstring), :class:`CheckpointError` when it
    is not a readable checkpoint. A ``module.`` prefix on every key (DataParallel) is removed.
    """
    return _read(Path(path), allow_unknown_globals)[0]


def read_checkpoint_globals(path: str | os.PathLike) -> list[str]:
    """Names of the non-weight objects a zip checkpoint's pickle refers to (dropped, never built)."""
    ckpt = ZipCheckpoint(Path(path), allow_unknown_globals=True)
    try:
        return ckpt.dropped
    finally:
        ckpt.close()


# ------------------------------------------------------------------ conversion cache


def convert_to_safetensors(
    source: str | os.PathLike,
    cache_dir: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
    verify: bool = False,
) -> Path:
    """The safetensors copy of ``source``'s weights in ``cache_dir``, made on first use.

    The sidecar ``<name>.safetensors.json`` records the source's SHA-256, size and mtime, the
    copy's SHA-256 and size, which entry held the state dict and the dropped globals. A valid
    copy (same source size/mtime, or same hash after a touch) is reused without reading the
    source; ``verify`` re-hashes the copy as well. ``expected_sha256`` is checked against the
    source before converting (mismatch: :class:`CheckpointError`, nothing written).
    """
    return convert_cached(
        source,
        cache_dir,
        lambda path: _read(path, allow_unknown_globals),
        expected_sha256=expected_sha256,
        verify=verify,
    )


def load_state_dict(
    source: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
    verify: bool = False,
) -> dict[str, torch.Tensor]:
    """The weights of ``source``: through the safetensors cache when ``cache_dir`` is given.

    Without ``cache_dir`` the source is read directly each time (still without running code).
    """
    if cache_dir is None:
        if expected_sha256 and sha256_file(source) != expected_sha256.lower():
            raise CheckpointError(f"{Path(source).name} does not have SHA-256 {expected_sha256}")
        return read_state_dict(source, allow_unknown_globals=allow_unknown_globals)
    from safetensors.torch import load_file

    converted = convert_to_safetensors(
        source,
        cache_dir,
        expected_sha256=expected_sha256,
        allow_unknown_globals=allow_unknown_globals,
        verify=verify,
    )
    return load_file(str(converted), device="cpu")


# ------------------------------------------------------------------ into a network


def check_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointMismatchError` unless keys and shapes match ``model`` exactly."""
    own = model.state_dict()
    missing = set(own) - set(state_dict)
    unexpected = set(state_dict) - set(own)
    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, what=what)


def load_weights(
    model: nn.Module,
    source: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    *,
    expected_sha256: str | None = None,
    allow_unknown_globals: bool = False,
) -> nn.Module:
    """Read ``source`` safely, check it fits ``model`` exactly, and load it. Returns ``model``."""
    sd = load_state_dict(
        source, cache_dir, expected_sha256=expected_sha256, allow_unknown_globals=allow_unknown_globals
    )
    check_state_dict(model, sd, what=Path(source).name)
    model.load_state_dict(sd, strict=True)
    return model
