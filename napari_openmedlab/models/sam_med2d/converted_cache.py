"""The safetensors conversion cache: a checkpoint's weights converted once, reused after.

The copy ``<name>.safetensors`` sits in a cache folder beside a JSON sidecar
``<name>.safetensors.json`` recording both files' SHA-256 and sizes, the source's mtime, which
entry held the state dict and the dropped globals. A valid copy is reused without reading the
source. How the source is read (safely) is the caller's business: :func:`convert_cached` takes
a reader, and :func:`~napari_openmedlab.models.sam_med2d.checkpoint.convert_to_safetensors`
passes the restricted one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ...io.atomic import atomic_path, atomic_write_json
from ..errors import CheckpointError
from ..weights import sha256_of

__all__ = ["CONVERSION_FORMAT", "convert_cached", "converted_paths", "sha256_file"]

log = logging.getLogger(__name__)

CONVERSION_FORMAT = 1

Reader = Callable[[Path], tuple[dict[str, torch.Tensor], dict]]
"""``path -> (state dict, facts)``; facts hold ``state_dict_key`` and ``dropped_globals``."""


sha256_file = sha256_of  # one hashing helper for the whole weights cache (models/weights.py)


def converted_paths(source: str | os.PathLike, cache_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``(safetensors copy, JSON sidecar)`` for ``source`` in ``cache_dir``."""
    name = Path(source).name
    base = Path(cache_dir)
    return base / f"{name}.safetensors", base / f"{name}.safetensors.json"


def _read_sidecar(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == CONVERSION_FORMAT else None


def _check_safetensors(tmp: Path) -> None:
    """``verify`` for the converted copy: its header parses and every tensor's bytes are there."""
    from safetensors import safe_open

    with safe_open(str(tmp), framework="pt") as f:
        for key in f.keys():
            f.get_slice(key)


def _cache_is_valid(
    source: Path, converted: Path, meta: dict | None, expected_sha256: str | None, verify: bool
) -> bool:
    if meta is None or not converted.is_file() or converted.stat().st_size != meta.get("converted_size"):
        return False
    if expected_sha256 and meta.get("source_sha256") != expected_sha256.lower():
        return False
    if source.is_file():
        st = source.stat()
        if st.st_size != meta.get("source_size"):
            return False
        if st.st_mtime_ns != meta.get("source_mtime_ns") and sha256_file(source) != meta.get("source_sha256"):
            return False
    if verify and sha256_file(converted) != meta.get("converted_sha256"):
        return False
    return True


def convert_cached(
    source: str | os.PathLike,
    cache_dir: str | os.PathLike,
    read: Reader,
    *,
    expected_sha256: str | None = None,
    verify: bool = False,
) -> Path:
    """The safetensors copy of ``source``'s weights in ``cache_dir``, made with ``read`` on first use.

    See :func:`~napari_openmedlab.models.sam_med2d.checkpoint.convert_to_safetensors`.
    """
    source = Path(source)
    cache = Path(cache_dir)
    converted, sidecar = converted_paths(source, cache)
    meta = _read_sidecar(sidecar)
    if _cache_is_valid(source, converted, meta, expected_sha256, verify):
        return converted
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist")

    st = source.stat()
    source_sha = sha256_file(source)
    if expected_sha256 and source_sha != expected_sha256.lower():
        raise CheckpointError(
            f"{source.name} has SHA-256 {source_sha}, expected {expected_sha256}; not using it"
        )
    state_dict, facts = read(source)
    from safetensors.torch import save_file

    cache.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    with atomic_path(converted, suffix=".safetensors", verify=_check_safetensors) as tmp:
        save_file(tensors, str(tmp), metadata={"source_sha256": source_sha, "source_name": source.name})
    record = {
        "format": CONVERSION_FORMAT,
        "source_name": source.name,
        "source_path": str(source.resolve()),
        "source_size": st.st_size,
        "source_mtime_ns": st.st_mtime_ns,
        "source_sha256": source_sha,
        "converted_name": converted.name,
        "converted_size": converted.stat().st_size,
        "converted_sha256": sha256_file(converted),
        "state_dict_key": facts["state_dict_key"],
        "dropped_globals": facts["dropped_globals"],
        "num_tensors": len(tensors),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(sidecar, record, indent=2)
    log.info("converted %s to %s (sha256 %s)", source.name, converted, source_sha)
    return converted
