"""Where autosaved work lives: the recovery folder, one subfolder per image.

The recovery folder is ``$OPENMEDLAB_RECOVERY_DIR`` when set, else ``recovery/`` in the user's data
folder (``~/.local/share/napari-openmedlab/recovery`` on Linux). Each image has its own subfolder,
keyed by its source path and shape (:func:`image_key`); what is written there, in generations with
a fallback to the previous good one, is :mod:`.structure_autosave`'s business. Temporaries that a
killed process left anywhere below the root are removed at the next start
(:func:`clean_recovery_root`, called by :func:`napari_openmedlab.cleanup.remove_stale_temporaries`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..io.atomic import remove_stale_temporaries
from .structure_set import StructureSetError

RECOVERY_ENV = "OPENMEDLAB_RECOVERY_DIR"
MAX_LABEL_ID = int(np.iinfo(np.uint16).max)  # the largest id the label files of this project hold


class RecoveryError(StructureSetError):
    """No autosave of an image could be restored (each generation's fault is in the message)."""


def recovery_root() -> Path:
    """Where recovery folders live (not created here)."""
    env = os.environ.get(RECOVERY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-openmedlab")) / "recovery"


def clean_recovery_root(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove temporaries (files and half-written folders) left by killed processes."""
    return remove_stale_temporaries(root or recovery_root(), recursive=True)


def image_key(source: str | os.PathLike | None, shape) -> str:
    """A stable key for an image: hash of its absolute source path and its shape."""
    src = os.path.abspath(os.fspath(source)) if source else "<no source>"
    text = f"{src}|{tuple(int(s) for s in shape)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
