"""npe2 writer: a Labels layer to NIfTI, NRRD or MHA in the exact geometry of its source image."""

from __future__ import annotations

import numpy as np

from .io import Volume, VolumeWriteError, write_volume
from .layers import geometry_of_layer


def write_labels(path: str, data, meta: dict) -> list[str]:
    """Write one Labels layer; its geometry comes from our metadata or the layer's transform."""
    geometry = geometry_of_layer(meta.get("metadata", {}), meta.get("scale"), meta.get("affine"))
    if geometry is None:
        raise VolumeWriteError("the layer carries no geometry; cannot write it in physical space")
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeWriteError(f"only 3D label layers are written; this one has shape {array.shape}")
    return [str(write_volume(Volume(array, geometry), path, labels=True))]
