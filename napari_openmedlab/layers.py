"""Volumes as napari layer data tuples, and back. Pure data: this module never imports napari.

A layer made here sits in physical LPS millimetres (world = physical point written z, y, x) and
carries its SimpleITK geometry in ``metadata["openmedlab"]``, so writers restore it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .io.geometry import Geometry
from .io.readers import is_label_volume
from .io.volume import Volume

META_KEY = "openmedlab"


def layer_metadata(volume: Volume) -> dict:
    """The ``metadata`` dict of a layer showing ``volume``."""
    return {META_KEY: {**volume.metadata, "geometry": volume.geometry.to_dict(), "shape": list(volume.shape)}}


def image_layer_data(volume: Volume, name: str | None = None) -> tuple:
    """``(data, kwargs, "image")`` for an intensity volume (CT gets a soft-tissue window)."""
    kwargs = {
        **volume.napari_kwargs(),
        "name": name or _name_of(volume),
        "metadata": layer_metadata(volume),
        "colormap": "gray",
    }
    if np.issubdtype(volume.array.dtype, np.number) and volume.array.min() < -500:
        kwargs["contrast_limits"] = (-160.0, 240.0)  # W400/L40: soft tissue
    return (volume.array, kwargs, "image")


def labels_layer_data(volume: Volume, names: dict[int, str] | None = None, name: str | None = None) -> tuple:
    """``(data, kwargs, "labels")`` for a label map; ``names`` (id -> organ) show on hover."""
    kwargs = {
        **volume.napari_kwargs(),
        "name": name or _name_of(volume),
        "metadata": layer_metadata(volume),
    }
    if names:
        ids = sorted({0, *names})
        kwargs["features"] = {"index": ids, "name": [names.get(i, "background") for i in ids]}
    return (volume.array, kwargs, "labels")


def volume_layer_data(volume: Volume, names: dict[int, str] | None = None) -> tuple:
    """An image or a labels tuple, as :func:`io.is_label_volume` decides."""
    if is_label_volume(volume, volume.metadata.get("source", "")):
        return labels_layer_data(volume, names or label_names_beside(volume.metadata.get("source")))
    return image_layer_data(volume)


def geometry_of_layer(metadata: dict, scale=None, affine=None) -> Geometry | None:
    """The SimpleITK geometry of a layer: from our metadata, else rebuilt from scale and affine.

    ``affine`` is the layer's 4x4 data-to-world affine *excluding* scale (napari's ``affine``
    property); ``scale`` is napari's per-axis scale. Returns None when neither is available.
    """
    info = (metadata or {}).get(META_KEY, {})
    if "geometry" in info:
        return Geometry.from_dict(info["geometry"])
    if scale is None:
        return None
    scale = np.asarray(scale, dtype=float)[-3:]
    matrix = np.eye(4) if affine is None else np.asarray(affine, dtype=float)[-4:, -4:]
    direction_zyx = matrix[:3, :3]
    flip = np.eye(3)[::-1]
    direction_xyz = flip @ direction_zyx @ flip
    return Geometry(tuple(scale[::-1]), tuple(matrix[:3, 3][::-1]), tuple(direction_xyz.ravel()))


def label_names_beside(source: str | None) -> dict[int, str] | None:
    """Organ names from ``<name>.labels.json`` or ``labels.json`` next to a label file.

    Both hold ``{"labels": {id: name}}``; the first is the class table that ``openmedlab autoseg``
    writes beside its label map, the second one table for a whole folder.
    """
    if not source:
        return None
    own = Path(source).parent / f"{file_stem(source)}.labels.json"
    candidate = own if own.is_file() else Path(source).parent / "labels.json"
    if not candidate.is_file():
        return None
    try:
        data = json.loads(candidate.read_text())
        table = data.get("labels", data)
        return {int(k): str(v) for k, v in table.items()}
    except (ValueError, AttributeError):
        return None


def file_stem(path: str) -> str:
    """A volume file's name without its (possibly double) suffix: ``ct.nii.gz`` -> ``ct``."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _name_of(volume: Volume) -> str:
    source = volume.metadata.get("source")
    return file_stem(source) if source else "volume"
