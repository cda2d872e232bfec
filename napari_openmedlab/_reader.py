"""npe2 reader: NIfTI, NRRD, MetaImage and DICOM folders as layers in physical millimetres.

Every layer keeps its own voxel grid and is placed in physical millimetres by its scale and affine,
so a segmentation stored on another grid (flipped, shifted) lines up with its image on screen.
The reader looks at nothing but the files (no viewer state): when label files are opened together
with an image, they are resampled onto it (nearest neighbour, in physical space); a label map
taken as the structures of an annotation is resampled onto the annotated image by the widget.
"""

from __future__ import annotations

import os

from .io import Volume, VolumeReadError, read_volume, resample_labels_to, supported_path
from .io.readers import is_label_volume
from .layers import label_names_beside, labels_layer_data, volume_layer_data


def get_reader(path: str | list[str]):
    """Return a reader function for ``path``, or None when we do not handle it (npe2 contract)."""
    if isinstance(path, list):
        if not path or not all(isinstance(p, str) and supported_path(p) for p in path):
            return None
        return read_layers
    if not isinstance(path, str) or not supported_path(path):
        return None
    if os.path.isdir(path) and not _has_files(path):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[tuple]:
    """Layer data tuples for one path or several; raises a readable error for a broken file."""
    paths = path if isinstance(path, list) else [path]
    layers = []
    reference = None
    for p in paths:
        volume = read_volume(p)
        if is_label_volume(volume, p):
            volume = _onto_reference(volume, reference)
            layers.append(labels_layer_data(volume, label_names_beside(p)))
        else:
            layers.append(volume_layer_data(volume))
            reference = reference or (volume.geometry, volume.shape)
            if os.path.isdir(p) and volume.metadata.get("format") == "dicom":  # RTSTRUCT/SEG files beside it
                from .rt_layers import add_problems, structure_layers

                structures, problems = structure_layers(p, volume)
                layers[-1] = add_problems(layers[-1], problems)
                layers.extend(structures)
    return layers


def _has_files(path: str) -> bool:
    try:
        return any(os.scandir(path))
    except OSError:
        return False


def _onto_reference(labels: Volume, reference) -> Volume:
    if reference is None:
        return labels
    geometry, shape = reference
    return resample_labels_to(labels, geometry, shape)  # returns ``labels`` itself on the same grid


__all__ = ["get_reader", "read_layers", "VolumeReadError"]
